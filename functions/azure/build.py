#!/usr/bin/env python3
"""Build the function app's zip package ``dist/kafka-backup-azure-functions.zip``.

Why it is built this way:

* The app runs CPython 3.11 on Linux x86-64 (Flex Consumption, Consumption, Premium alike), not on
  this machine, so pip installs wheels for that platform (``--platform manylinux2014_x86_64
  --only-binary=:all:``) and never compiles anything here.
* kafka-backup is not on PyPI, so a remote build (Oryx running ``pip install -r requirements.txt`` on
  the platform) could not install it.  Everything is installed here instead, where the Python worker
  looks for it: ``.python_packages/lib/site-packages`` at the package root.  ``requirements.txt`` is
  not put in the zip, so no remote build is attempted over it.
* The engine goes in as a wheel built from a copy of the sources (``pip wheel --no-deps``), so the
  build leaves nothing behind in the work tree.
* Reproducible: every version comes from ``constraints.txt`` (a dependency it does not pin fails the
  build); entries are sorted with a fixed timestamp and mode; no bytecode; pip's ``direct_url.json``
  (a temporary path) is dropped.  The same inputs give the same bytes.

Usage::

    python functions/azure/build.py [--out DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
#: What goes at the package root, next to .python_packages.
APP_FILES = ("function_app.py", "entra_id.py", "host.json")
REQUIREMENTS = HERE / "requirements.txt"
CONSTRAINTS = ROOT / "constraints.txt"
PLATFORM = "manylinux2014_x86_64"
PYTHON_VERSION = "3.11"
SITE = ".python_packages/lib/site-packages"
ZIP_NAME = "kafka-backup-azure-functions.zip"
ZIP_TIME = (1980, 1, 1, 0, 0, 0)
ENGINE_SOURCES = ("pyproject.toml", "README.md", "shared/kafka_backup")


class BuildError(RuntimeError):
    """The package could not be built; the message says which step and why."""


def build(out_dir: Path = ROOT / "dist") -> Path:
    with tempfile.TemporaryDirectory(prefix="kafka-backup-azure-") as tmp:
        work = Path(tmp)
        wheel = _engine_wheel(work)
        root = work / "package"
        site = root / SITE
        _pip(["install", "--quiet", "--no-compile", "--target", str(site), "--platform", PLATFORM,
              "--implementation", "cp", "--python-version", PYTHON_VERSION, "--only-binary=:all:",
              str(wheel), "-r", str(REQUIREMENTS)], "install the dependencies")
        _tidy(site)
        _check_pinned(site)
        for name in APP_FILES:
            shutil.copy2(HERE / name, root / name)
        return _zip(root, Path(out_dir) / ZIP_NAME)


def _pip(args: list[str], what: str) -> None:
    env = {**os.environ, "PIP_CONSTRAINT": str(CONSTRAINTS)}  # also pins the wheel's build environment
    proc = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, env=env)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-25:])
        raise BuildError(f"pip could not {what} (exit {proc.returncode}):\n{tail}")


def _engine_wheel(work: Path) -> Path:
    src, out = work / "src", work / "wheel"
    for rel in ENGINE_SOURCES:
        source = ROOT / rel
        if source.is_dir():
            shutil.copytree(source, src / rel, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
        else:
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, src / rel)
    _pip(["wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), str(src)], "build the kafka-backup wheel")
    wheels = sorted(out.glob("kafka_backup-*.whl"))
    if len(wheels) != 1:
        raise BuildError(f"expected one kafka_backup wheel in {out}, found {[w.name for w in wheels]}")
    return wheels[0]


def _tidy(site: Path) -> None:
    """Drop what the worker never runs and what would make two builds differ."""
    shutil.rmtree(site / "bin", ignore_errors=True)  # console scripts name this machine's interpreter
    for cache in sorted(site.rglob("__pycache__"), reverse=True):
        shutil.rmtree(cache)
    for pyc in site.rglob("*.py[co]"):
        pyc.unlink()
    for direct_url in site.glob("*.dist-info/direct_url.json"):
        direct_url.unlink()
        record = direct_url.parent / "RECORD"
        if record.is_file():
            prefix = f"{direct_url.parent.name}/direct_url.json,"
            record.write_text("".join(line for line in record.read_text().splitlines(keepends=True)
                                      if not line.startswith(prefix)))


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _check_pinned(site: Path) -> None:
    pinned = {_normalise(m.group(1)) for line in CONSTRAINTS.read_text().splitlines()
              if (m := re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==", line))}
    unpinned = [d.name[: -len(".dist-info")].rsplit("-", 1)[0] for d in sorted(site.glob("*.dist-info"))]
    unpinned = [n for n in unpinned if _normalise(n) not in pinned | {"kafka-backup"}]
    if unpinned:
        raise BuildError(f"not pinned in {CONSTRAINTS.name}: {', '.join(unpinned)} (add NAME==VERSION lines, "
                         "so that rebuilding the package gives the same bytes)")


def _zip(src: Path, dest: Path) -> Path:
    files = sorted((p.relative_to(src).as_posix(), p) for p in src.rglob("*") if p.is_file())
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for rel, path in files:
            info = zipfile.ZipInfo(rel, ZIP_TIME)
            info.create_system = 3  # Unix, so the modes below apply
            info.external_attr = (stat.S_IFREG | (0o755 if path.stat().st_mode & 0o111 else 0o644)) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes())
    os.replace(partial, dest)
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="output directory (default: dist/)")
    args = parser.parse_args(argv)
    try:
        path = build(args.out)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    with zipfile.ZipFile(path) as zf:
        unzipped = sum(i.file_size for i in zf.infolist())
        count = len(zf.infolist())
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    print(f"{shown}: Python {PYTHON_VERSION}, {PLATFORM}, {count} files, {path.stat().st_size / (1 << 20):.1f} MiB "
          f"zipped, {unzipped / (1 << 20):.1f} MiB unzipped\n  sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
