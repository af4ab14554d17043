#!/usr/bin/env python3
"""Build the Lambda deployment package ``dist/kafka-backup-lambda-<arch>.zip`` (``make lambda-package``).

Why it is built this way:

* Lambda runs CPython 3.11 on Amazon Linux 2 (x86_64 or arm64, glibc 2.26), not on this machine, so
  pip installs wheels for that platform only (``--platform manylinux_2_26_<arch>`` down to
  ``manylinux2014_<arch>``, ``--only-binary=:all:``) and never compiles anything here.
* The engine goes in as a wheel built from a copy of the sources (``pip wheel --no-deps``), so the
  build leaves no ``build/`` or ``*.egg-info`` behind in the work tree.
* Reproducible: every version comes from ``constraints.txt``, including the setuptools that builds
  the engine wheel (a dependency it does not pin fails the build); entries are sorted and carry a
  fixed timestamp and mode; no bytecode is shipped (it embeds source timestamps); pip's note of where
  the engine wheel came from (``direct_url.json``, a temporary path) is dropped.  The same inputs
  give the same bytes, hence the same ``source_code_hash`` in Terraform and no spurious redeploys.
* Only what runs: the handler at the zip root, the engine, its runtime dependencies and
  ``functions/aws/requirements.txt``; no console scripts, no test or dev packages.
* Lambda refuses more than 250 MiB unzipped (262 144 000 bytes, layers included); that is checked
  before the zip is written.  Over 50 MiB zipped, the package cannot be uploaded directly (the
  Terraform module's ``filename``) and has to go through S3; the build says so.

Usage::

    python functions/aws/build.py [--arch x86_64|arm64] [--out DIR] [--max-unzipped-bytes N]
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
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
HANDLER = HERE / "handler.py"
REQUIREMENTS = HERE / "requirements.txt"
CONSTRAINTS = ROOT / "constraints.txt"
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
#: The earliest time a zip entry can carry; any fixed value makes the archive reproducible.
ZIP_TIME = (1980, 1, 1, 0, 0, 0)
#: Engine sources copied to build its wheel.
ENGINE_SOURCES = ("pyproject.toml", "README.md", "shared/kafka_backup")


class BuildError(RuntimeError):
    """The package could not be built; the message says which step and why."""


class PackageTooLarge(BuildError):
    """The unzipped package exceeds the limit (Lambda's, or the one given)."""


@dataclass(frozen=True)
class Package:
    path: Path
    zipped_bytes: int
    unzipped_bytes: int
    files: int
    sha256: str


def build(arch: str = "x86_64", out_dir: Path = ROOT / "dist", *, python_version: str = PYTHON_VERSION,
          max_unzipped: int = LAMBDA_UNZIPPED_LIMIT) -> Package:
    """Install everything for ``arch`` in a scratch directory; zip it as ``kafka-backup-lambda-<arch>.zip``."""
    tags = platforms(arch, python_version)
    with tempfile.TemporaryDirectory(prefix="kafka-backup-lambda-") as tmp:
        work = Path(tmp)
        wheel = _engine_wheel(work)
        site = work / "package"
        _pip(["install", "--quiet", "--no-compile", "--target", str(site), *(f"--platform={t}" for t in tags),
              "--implementation", "cp", "--python-version", python_version, "--only-binary=:all:",
              str(wheel), "-r", str(REQUIREMENTS)], f"install the {arch} dependencies")
        _tidy(site)
        _check_pinned(site)
        shutil.copy2(HANDLER, site / HANDLER.name)
        return zip_tree(site, Path(out_dir) / f"kafka-backup-lambda-{arch}.zip", max_unzipped=max_unzipped)


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


def _pip(args: list[str], what: str) -> None:
    # PIP_CONSTRAINT also reaches the isolated build environment of ``pip wheel``: the setuptools that
    # builds the engine wheel is the pinned one (it writes its version into the wheel).
    env = {**os.environ, "PIP_CONSTRAINT": str(CONSTRAINTS)}
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
    """Drop what Lambda never runs and what would make two builds differ."""
    shutil.rmtree(site / "bin", ignore_errors=True)  # console scripts, with this machine's interpreter path
    for cache in sorted(site.rglob("__pycache__"), reverse=True):
        shutil.rmtree(cache)
    for pyc in site.rglob("*.py[co]"):
        pyc.unlink()
    for direct_url in site.glob("*.dist-info/direct_url.json"):
        direct_url.unlink()
        record = direct_url.parent / "RECORD"
        if record.is_file():
            lines = record.read_text().splitlines(keepends=True)
            record.write_text("".join(line for line in lines if not line.startswith(f"{direct_url.parent.name}/"
                                                                                    "direct_url.json,")))


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _check_pinned(site: Path) -> None:
    """Every installed distribution must be pinned in constraints.txt, or rebuilds could differ."""
    pinned = {_normalise(m.group(1)) for line in CONSTRAINTS.read_text().splitlines()
              if (m := re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==", line))}
    unpinned = []
    for dist in sorted(site.glob("*.dist-info")):
        name = dist.name[: -len(".dist-info")].rsplit("-", 1)[0]
        if _normalise(name) not in pinned | {"kafka-backup"}:
            unpinned.append(name)
    if unpinned:
        raise BuildError(f"not pinned in {CONSTRAINTS.name}: {', '.join(unpinned)} (add NAME==VERSION lines, "
                         "so that rebuilding the package gives the same bytes)")


def zip_tree(src: Path, dest: Path, *, max_unzipped: int = LAMBDA_UNZIPPED_LIMIT) -> Package:
    """Zip ``src`` reproducibly (sorted entries, fixed time, 0644/0755 modes) after checking its size.

    Nothing is written when the unzipped size is over ``max_unzipped``.
    """
    files = sorted((p.relative_to(src).as_posix(), p) for p in src.rglob("*") if p.is_file())
    unzipped = sum(p.stat().st_size for _, p in files)
    if unzipped > max_unzipped:
        raise PackageTooLarge(f"{dest.name}: {_mib(unzipped)} unzipped ({unzipped} bytes) is over the limit of "
                              f"{_mib(max_unzipped)} ({max_unzipped} bytes; Lambda allows {LAMBDA_UNZIPPED_LIMIT} "
                              "including layers); drop dependencies or ship the function as a container image")
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    # Level 6 (zlib's default): level 9 took 2.5 times as long here for a zip 0.4 % smaller.
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for rel, path in files:
            info = zipfile.ZipInfo(rel, ZIP_TIME)
            info.create_system = 3  # Unix, so Lambda applies the mode below
            mode = 0o755 if path.stat().st_mode & 0o111 else 0o644
            info.external_attr = (stat.S_IFREG | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes())
    os.replace(partial, dest)
    digest = hashlib.sha256(dest.read_bytes()).hexdigest()
    return Package(dest, dest.stat().st_size, unzipped, len(files), digest)


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
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
    shown = pkg.path.relative_to(ROOT) if pkg.path.is_relative_to(ROOT) else pkg.path
    glibc = f"glibc <= 2.{RUNTIME_GLIBC_MINOR[args.python_version]}"
    print(f"{shown}: Python {args.python_version}, {args.arch} ({glibc}), {pkg.files} files\n"
          f"  zipped   {_mib(pkg.zipped_bytes):>10} ({pkg.zipped_bytes} bytes)\n"
          f"  unzipped {_mib(pkg.unzipped_bytes):>10} ({pkg.unzipped_bytes} bytes; Lambda's limit "
          f"{_mib(LAMBDA_UNZIPPED_LIMIT)})\n"
          f"  sha256   {pkg.sha256}")
    if pkg.zipped_bytes > DIRECT_UPLOAD_LIMIT:
        print(f"note: over {_mib(DIRECT_UPLOAD_LIMIT)} zipped: upload it through S3, not directly", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
