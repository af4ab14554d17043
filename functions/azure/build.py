#!/usr/bin/env python3
"""Build the function app's zip package ``dist/kafka-backup-azure-functions.zip``.

What is Azure's here (the rest, shared with the other clouds, is explained in ``functions/packaging.py``:
wheels for the target only, the engine as a wheel, every version pinned, reproducible bytes):

* The app runs CPython 3.11 on Linux x86-64 (Flex Consumption, Consumption, Premium alike), so pip
  installs wheels tagged ``manylinux2014_x86_64``.
* kafka-backup is not on PyPI, so a remote build (Oryx running ``pip install -r requirements.txt`` on
  the platform) could not install it.  Everything is installed here instead, where the Python worker
  looks for it: ``.python_packages/lib/site-packages`` at the package root, next to the app files.
  ``requirements.txt`` is not put in the zip, so no remote build is attempted over it.

Usage::

    python functions/azure/build.py [--out DIR]
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script: functions/packaging.py is found from the checkout's root
    sys.path.append(str(ROOT))
from functions import packaging  # noqa: E402  (functions/ is a namespace package: no __init__.py)
from functions.packaging import BuildError, Package  # noqa: E402

HERE = Path(__file__).resolve().parent
#: What goes at the package root, next to .python_packages.
APP_FILES = ("function_app.py", "entra_id.py", "host.json")
REQUIREMENTS = HERE / "requirements.txt"
PLATFORM = "manylinux2014_x86_64"
PYTHON_VERSION = "3.11"
SITE = ".python_packages/lib/site-packages"
ZIP_NAME = "kafka-backup-azure-functions.zip"


def build(out_dir: Path = ROOT / "dist") -> Package:
    """Install everything under ``SITE`` in a scratch directory, add the app files, zip it as ``ZIP_NAME``."""
    with packaging.stage(REQUIREMENTS, platforms=[PLATFORM], python_version=PYTHON_VERSION,
                         what="install the dependencies", prefix="kafka-backup-azure-", site_packages=SITE) as root:
        for name in APP_FILES:
            shutil.copy2(HERE / name, root / name)
        # Level 9 (the level 6 used for Lambda would change these bytes, hence every deployed app's hash).
        return packaging.write_zip(packaging.tree_files(root), Path(out_dir) / ZIP_NAME, compresslevel=9)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="output directory (default: dist/)")
    args = parser.parse_args(argv)
    try:
        pkg = build(args.out)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{packaging.shown(pkg.path)}: Python {PYTHON_VERSION}, {PLATFORM}, {pkg.files} files, "
          f"{packaging.mib(pkg.zipped_bytes)} zipped, {packaging.mib(pkg.unzipped_bytes)} unzipped\n"
          f"  sha256 {pkg.sha256}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
