#!/usr/bin/env python3
"""Build the Lambda deployment package ``dist/kafka-backup-lambda-<arch>.zip`` (``make lambda-package``).

What is Lambda's here (the rest, shared with the other clouds, is explained in ``functions/packaging.py``:
wheels for the target only, the engine as a wheel, every version pinned, reproducible bytes):

* Lambda runs CPython 3.11 on Amazon Linux 2 (x86_64 or arm64, glibc 2.26), so pip installs wheels
  tagged ``manylinux_2_26_<arch>`` down to ``manylinux2014_<arch>``.
* The handler sits at the zip root (handler ``handler.handler``) next to the engine, its runtime
  dependencies and ``functions/aws/requirements.txt``.
* Lambda refuses more than 250 MiB unzipped (262 144 000 bytes, layers included); that is checked
  before the zip is written.  Over 50 MiB zipped, the package cannot be uploaded directly (the
  Terraform module's ``filename``) and has to go through S3; the build says so.

Usage::

    python functions/aws/build.py [--arch x86_64|arm64] [--out DIR] [--max-unzipped-bytes N]
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
HANDLER = HERE / "handler.py"
REQUIREMENTS = HERE / "requirements.txt"
#: Lambda architecture -> machine name in wheel platform tags.
MACHINES = {"x86_64": "x86_64", "arm64": "aarch64"}
#: glibc minor version of the runtime's OS: python3.9-3.11 run on Amazon Linux 2 (glibc 2.26),
#: python3.12+ on Amazon Linux 2023 (glibc 2.34).
RUNTIME_GLIBC_MINOR = {"3.9": 26, "3.10": 26, "3.11": 26, "3.12": 34, "3.13": 34}
PYTHON_VERSION = "3.11"
#: Lambda's limit on a function's unzipped code (its own error message names this number).
LAMBDA_UNZIPPED_LIMIT = 262_144_000
#: Larger zips must be uploaded through S3 rather than in the CreateFunction/UpdateFunctionCode call.
DIRECT_UPLOAD_LIMIT = 50 * 1024 * 1024


class PackageTooLarge(BuildError):
    """The unzipped package exceeds the limit (Lambda's, or the one given)."""


def build(arch: str = "x86_64", out_dir: Path = ROOT / "dist", *, python_version: str = PYTHON_VERSION,
          max_unzipped: int = LAMBDA_UNZIPPED_LIMIT) -> Package:
    """Install everything for ``arch`` in a scratch directory; zip it as ``kafka-backup-lambda-<arch>.zip``."""
    tags = platforms(arch, python_version)
    with packaging.stage(REQUIREMENTS, platforms=tags, python_version=python_version,
                         what=f"install the {arch} dependencies", prefix="kafka-backup-lambda-") as root:
        shutil.copy2(HANDLER, root / HANDLER.name)
        return zip_tree(root, Path(out_dir) / f"kafka-backup-lambda-{arch}.zip", max_unzipped=max_unzipped)


def platforms(arch: str, python_version: str) -> list[str]:
    """Wheel platform tags the runtime can load, newest glibc first: ``manylinux_2_<N>`` down to
    2_17 (= manylinux2014; pip adds manylinux2010/1 for x86_64).  Some wheels exist only for a newer
    glibc on one architecture (obstore 0.12.1 on aarch64: manylinux_2_24), so manylinux2014 alone is
    not enough."""
    if arch not in MACHINES:
        raise BuildError(f"--arch {arch!r}: Lambda architectures are {', '.join(MACHINES)}")
    if python_version not in RUNTIME_GLIBC_MINOR:
        raise BuildError(f"--python-version {python_version!r}: known Lambda runtimes are "
                         f"{', '.join(RUNTIME_GLIBC_MINOR)}")
    machine = MACHINES[arch]
    top = RUNTIME_GLIBC_MINOR[python_version]
    return [*(f"manylinux_2_{minor}_{machine}" for minor in range(top, 16, -1)), f"manylinux2014_{machine}"]


def zip_tree(src: Path, dest: Path, *, max_unzipped: int = LAMBDA_UNZIPPED_LIMIT) -> Package:
    """Zip ``src`` reproducibly (sorted entries, fixed time, 0644/0755 modes) after checking its size.

    Nothing is written when the unzipped size is over ``max_unzipped``.
    """
    files = packaging.tree_files(src)
    unzipped = packaging.unzipped_bytes(files)
    if unzipped > max_unzipped:
        mib = packaging.mib
        raise PackageTooLarge(f"{dest.name}: {mib(unzipped)} unzipped ({unzipped} bytes) is over the limit of "
                              f"{mib(max_unzipped)} ({max_unzipped} bytes; Lambda allows {LAMBDA_UNZIPPED_LIMIT} "
                              "including layers); drop dependencies or ship the function as a container image")
    return packaging.write_zip(files, dest, compresslevel=6)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--arch", choices=sorted(MACHINES), default="x86_64", help="Lambda architecture")
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="output directory (default: dist/)")
    parser.add_argument("--python-version", default=PYTHON_VERSION, help="the Lambda runtime's Python (3.11)")
    parser.add_argument("--max-unzipped-bytes", type=int, default=LAMBDA_UNZIPPED_LIMIT,
                        help=f"fail above this unzipped size (default: Lambda's {LAMBDA_UNZIPPED_LIMIT})")
    args = parser.parse_args(argv)
    try:
        pkg = build(args.arch, args.out, python_version=args.python_version, max_unzipped=args.max_unzipped_bytes)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    mib = packaging.mib
    glibc = f"glibc <= 2.{RUNTIME_GLIBC_MINOR[args.python_version]}"
    print(f"{packaging.shown(pkg.path)}: Python {args.python_version}, {args.arch} ({glibc}), {pkg.files} files\n"
          f"  zipped   {mib(pkg.zipped_bytes):>10} ({pkg.zipped_bytes} bytes)\n"
          f"  unzipped {mib(pkg.unzipped_bytes):>10} ({pkg.unzipped_bytes} bytes; Lambda's limit "
          f"{mib(LAMBDA_UNZIPPED_LIMIT)})\n"
          f"  sha256   {pkg.sha256}")
    if pkg.zipped_bytes > DIRECT_UPLOAD_LIMIT:
        print(f"note: over {mib(DIRECT_UPLOAD_LIMIT)} zipped: upload it through S3, not directly", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
