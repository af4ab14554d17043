"""Build and cache the infrastructure tools (OpenTofu, tflint, providers, Lambda emulator, checkov).

Usage (from the repository root, with the project's virtualenv):

    python -m dev.tools install [NAME ...]   # build what is missing (default: all)
    python -m dev.tools path NAME            # print the binary; exit 1 if it is not built
    python -m dev.tools status               # one line per tool
    python -m dev.tools env                  # the environment that runs tofu offline (KEY=VALUE)

NAME is one of: tofu, tflint, rie, azurerm, random, checkov.

Why build from source: the machine (and CI) reaches only package registries, so release binaries from
GitHub or the Terraform registry are out of reach, while the Go module proxy and PyPI serve the
sources.  Builds are slow (OpenTofu ~10 min, the azurerm provider ~15 min and 3.7 GB peak), so each
tool is built once per version into a cache OUTSIDE the repository, shared by every clone:

    ${KAFKA_BACKUP_TOOLS_CACHE:-~/.cache/kafka-backup/tools}/<name>/<version>/

A ``.complete`` marker is written last; a directory without it (a build killed midway) is wiped and
rebuilt.  Concurrent invocations serialise on ``<name>/<version>.lock`` (flock), so two test sessions
starting at once build a tool once.  Go's own module and build caches stay at their defaults
(outside the repository); the copied source trees that ``go build`` needs are deleted afterwards.

Providers are laid out as a filesystem mirror (``<version>/mirror/registry.opentofu.org/...``) and
:func:`tofu_env` returns an environment whose CLI config installs providers from those mirrors only,
never from the network.  Only azurerm and random can be built: the Go proxy serves the aws and google
providers only in 2018-2019 versions (plugin protocol 4, which OpenTofu cannot load), so modules
using them get fmt, tflint and checkov but no ``validate`` (see dev/terraform_check.py).

A cold ``install`` builds two tools at a time, longest first.  Measured 2026-12-03 on 2 cores shared
with other work (load 7-12): 39 min of wall time, azurerm (38 min) being the critical path; alone on
one core, tofu and azurerm were earlier measured at ~10 and ~15 min.  A warm ``install`` only stats
the markers (~0.1 s).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import fcntl
import json
import os
import platform
import shutil
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

MARKER = ".complete"
#: Parallel compile jobs per build (the machine and the CI runner have 2 cores).
GO_JOBS = "2"
#: Tools built at once by one ``install``; each is mostly one ``go build`` process.
PARALLEL_BUILDS = 2


class ToolError(RuntimeError):
    """A tool could not be built, or was asked for before being built."""


def log(msg: str) -> None:
    sys.stderr.write(f"[tools] {msg}\n")  # one write per line: two builds log at once
    sys.stderr.flush()


def cache_root() -> Path:
    env = os.environ.get("KAFKA_BACKUP_TOOLS_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "kafka-backup" / "tools"


def _platform() -> str:
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)
    return f"{platform.system().lower()}_{arch}"


@dataclass(frozen=True)
class Tool:
    """One cached tool: ``version`` keys the cache directory; ``binary`` is relative to it."""

    name: str
    version: str
    binary: str
    build: Callable[[Tool, Path, Path], None]  # (tool, version dir, build log)
    #: Rough single-core build minutes, used to start the longest builds first.
    estimate_minutes: float
    summary: str
    #: For providers: (registry namespace/type, semver reported to OpenTofu).
    provider: tuple[str, str] | None = None

    @property
    def dir(self) -> Path:
        return cache_root() / self.name / self.version

    @property
    def path(self) -> Path:
        return self.dir / self.binary

    def built(self) -> bool:
        return (self.dir / MARKER).is_file() and self.path.is_file()


# -- build steps --------------------------------------------------------------------------------------


def _go_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("CGO_ENABLED", "0")
    env.update(extra or {})
    return env


def _run(argv: Sequence[str], buildlog: Path, *, cwd: Path | None = None,
         env: Mapping[str, str] | None = None) -> str:
    """Run one build step, appending its output to ``buildlog``; raise with the tail on failure."""
    with open(buildlog, "a", encoding="utf-8") as out:
        out.write(f"$ {' '.join(argv)}{f'  (in {cwd})' if cwd else ''}\n")
        out.flush()
        proc = subprocess.run(list(argv), cwd=cwd, env=dict(env) if env is not None else None, text=True,
                              stdout=subprocess.PIPE, stderr=out, stdin=subprocess.DEVNULL)
        out.write(proc.stdout)
    if proc.returncode != 0:
        tail = "\n".join(buildlog.read_text(errors="replace").splitlines()[-40:])
        raise ToolError(f"{argv[0]} failed ({proc.returncode}): {' '.join(argv)}\n--- {buildlog} ---\n{tail}")
    return proc.stdout


def _writable_copy(src: Path, dst: Path) -> None:
    """Copy a read-only module from GOMODCACHE and make it writable (``go build`` may edit go.sum)."""
    shutil.copytree(src, dst, symlinks=True)
    for dirpath, dirnames, filenames in os.walk(dst):
        for name in [*dirnames, *filenames]:
            p = os.path.join(dirpath, name)
            if not os.path.islink(p):
                os.chmod(p, os.stat(p).st_mode | stat.S_IWUSR)
    os.chmod(dst, os.stat(dst).st_mode | stat.S_IWUSR)


@contextlib.contextmanager
def _module_source(module: str, version: str, workdir: Path, buildlog: Path) -> Iterator[Path]:
    """Yield a writable copy of ``module@version``, deleted afterwards (they are hundreds of MB)."""
    info = json.loads(_run(["go", "mod", "download", "-json", f"{module}@{version}"], buildlog, env=_go_env()))
    if info.get("Error") or not info.get("Dir"):
        raise ToolError(f"go mod download {module}@{version}: {info.get('Error', 'no Dir in output')}")
    src = workdir / "src"
    shutil.rmtree(src, ignore_errors=True)
    _writable_copy(Path(info["Dir"]), src)
    try:
        yield src
    finally:
        shutil.rmtree(src, ignore_errors=True)


def _go_build_module(module: str, version: str, package: str, ldflags: str, out: Path, workdir: Path,
                     buildlog: Path) -> None:
    """``go build`` inside a copy of a module: the way for modules whose go.mod has ``replace`` lines."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with _module_source(module, version, workdir, buildlog) as src:
        env = _go_env({"GOFLAGS": f"{os.environ.get('GOFLAGS', '')} -mod=mod".strip()})
        _run(["go", "build", "-p", GO_JOBS, "-trimpath", f"-ldflags={ldflags}", "-o", str(out), package],
             buildlog, cwd=src, env=env)


def _go_install(target: str, out: Path, buildlog: Path) -> None:
    gobin = out.parent
    gobin.mkdir(parents=True, exist_ok=True)
    _run(["go", "install", "-p", GO_JOBS, "-trimpath", "-ldflags=-s -w", target], buildlog,
         env=_go_env({"GOBIN": str(gobin)}))
    if not out.is_file():
        raise ToolError(f"go install {target} did not produce {out}")


def _build_tofu(tool: Tool, d: Path, buildlog: Path) -> None:
    _go_build_module("github.com/opentofu/opentofu", tool.version, "./cmd/tofu",
                     "-s -w -X github.com/opentofu/opentofu/version.dev=no", tool.path, d, buildlog)


def _build_tflint(tool: Tool, d: Path, buildlog: Path) -> None:
    _go_install(f"github.com/terraform-linters/tflint@{tool.version}", tool.path, buildlog)


def _build_rie(tool: Tool, d: Path, buildlog: Path) -> None:
    _go_install(f"github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie@{tool.version}",
                tool.path, buildlog)


def _provider_builder(module: str, version_var: str | None) -> Callable[[Tool, Path, Path], None]:
    def build(tool: Tool, d: Path, buildlog: Path) -> None:
        assert tool.provider is not None
        ldflags = "-s -w"
        if version_var:  # so the provider reports the semver it is mirrored under
            ldflags += f" -X {version_var}={tool.provider[1]}"
        _go_build_module(module, tool.version, ".", ldflags, tool.path, d, buildlog)

    return build


def _build_checkov(tool: Tool, d: Path, buildlog: Path) -> None:
    """checkov in its own venv: it and python-hcl2 (a dev dependency) both install ``hcl2``."""
    venv = d / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], buildlog)
    _run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
          f"checkov=={tool.version}"], buildlog)
    freeze = _run([str(venv / "bin" / "python"), "-m", "pip", "freeze", "--disable-pip-version-check"], buildlog)
    (d / "requirements.lock").write_text(freeze)
    _run([str(tool.path), "--version"], buildlog)


def _mirror_binary(namespace_type: str, semver: str) -> str:
    name = namespace_type.rsplit("/", 1)[1]
    return f"mirror/registry.opentofu.org/{namespace_type}/{semver}/{_platform()}/terraform-provider-{name}_v{semver}"


# The Go proxy serves the providers only as pseudo-versions of untagged commits (their release tags are
# not Go-module versions).  Each is mirrored under the newest release at the top of its own CHANGELOG.md
# at that commit: azurerm's 2026-08-24 commit heads "## 5.2.0 (August 20, 2026)" and random's
# 2026-08-24 commit heads "## 3.9.0 (May 12, 2026)".  So these are 5.2.0/3.9.0 plus a few days of
# unreleased commits; a prerelease suffix would be more exact but OpenTofu's `>= 4.0` style
# constraints never match prereleases.  azurerm is told the version via -ldflags (it reports it).
AZURERM_GO_VERSION = "v1.44.1-0.20260824201233-fae580791926"
AZURERM_SEMVER = "5.2.0"
RANDOM_GO_VERSION = "v1.3.2-0.20260824155315-e1092b0cfc07"
RANDOM_SEMVER = "3.9.0"

TOOLS: dict[str, Tool] = {
    t.name: t
    for t in (
        Tool("tofu", "v1.12.6", "bin/tofu", _build_tofu, 10, "OpenTofu CLI"),
        Tool("tflint", "v0.64.0", "bin/tflint", _build_tflint, 3, "tflint (bundled terraform rules only)"),
        Tool("rie", "v0.0.0-20261030222936-bef5c4ba774d", "bin/aws-lambda-rie", _build_rie, 2,
             "AWS Lambda runtime interface emulator"),
        Tool("azurerm", AZURERM_GO_VERSION, _mirror_binary("hashicorp/azurerm", AZURERM_SEMVER),
             _provider_builder("github.com/hashicorp/terraform-provider-azurerm",
                               "github.com/hashicorp/terraform-provider-azurerm/version.ProviderVersion"),
             15, "azurerm provider (filesystem mirror)", provider=("hashicorp/azurerm", AZURERM_SEMVER)),
        Tool("random", RANDOM_GO_VERSION, _mirror_binary("hashicorp/random", RANDOM_SEMVER),
             _provider_builder("github.com/terraform-providers/terraform-provider-random", None),
             2, "random provider (filesystem mirror)", provider=("hashicorp/random", RANDOM_SEMVER)),
        Tool("checkov", "3.3.30", "venv/bin/checkov", _build_checkov, 1, "checkov (own venv)"),
    )
}


def get(name: str) -> Tool:
    try:
        return TOOLS[name]
    except KeyError:
        raise ToolError(f"unknown tool {name!r}; choose from {', '.join(TOOLS)}") from None


# -- cache management ---------------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(tool: Tool) -> Iterator[None]:
    lockfile = tool.dir.parent / f"{tool.version}.lock"
    lockfile.parent.mkdir(parents=True, exist_ok=True)
    with open(lockfile, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"{tool.name}: another process is building {tool.version}; waiting for it")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _du(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def ensure(name: str) -> Path:
    """Build ``name`` unless its complete build is cached; return the binary's path."""
    tool = get(name)
    if tool.built():  # the warm path: two stat calls, no lock
        return tool.path
    with _locked(tool):
        if tool.built():  # built by whoever held the lock before us
            return tool.path
        if tool.dir.exists():
            log(f"{tool.name}: removing incomplete build in {tool.dir}")
            _rmtree(tool.dir)
        tool.dir.mkdir(parents=True)
        buildlog = tool.dir / "build.log"
        log(f"{tool.name} {tool.version}: building into {tool.dir} (log {buildlog})")
        t0 = time.monotonic()
        tool.build(tool, tool.dir, buildlog)
        seconds = time.monotonic() - t0
        if not tool.path.is_file():
            raise ToolError(f"{tool.name}: build finished without producing {tool.path}")
        size = _du(tool.dir)
        meta = {"name": tool.name, "version": tool.version, "binary": str(tool.path), "build_seconds": round(seconds),
                "size_bytes": size, "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        if tool.provider:
            meta["provider"] = f"registry.opentofu.org/{tool.provider[0]}"
            meta["provider_version"] = tool.provider[1]
        (tool.dir / MARKER).write_text(json.dumps(meta, indent=2) + "\n")
        log(f"{tool.name} {tool.version}: built in {_minutes(seconds)} ({size / 1e6:.0f} MB)")
        return tool.path


def _rmtree(path: Path) -> None:
    """Remove a tree that may hold read-only directories (a copy from GOMODCACHE cut short)."""
    for dirpath, dirnames, _ in os.walk(path):
        for name in dirnames:
            p = os.path.join(dirpath, name)
            if not os.path.islink(p):
                os.chmod(p, stat.S_IRWXU)
    shutil.rmtree(path)


def _minutes(seconds: float) -> str:
    return f"{seconds:.1f}s" if seconds < 90 else f"{seconds / 60:.1f} min"


def install(names: Sequence[str] = (), *, parallel: int = PARALLEL_BUILDS) -> list[str]:
    """Build the missing tools, longest first, ``parallel`` at a time; return the failures' messages.

    Why threads: every build is one or two child processes (``go build``, ``pip``); the threads only
    wait on them, so two workers keep both cores busy.
    """
    tools = [get(n) for n in (names or TOOLS)]
    missing = sorted((t for t in tools if not t.built()), key=lambda t: -t.estimate_minutes)
    if not missing:
        return []
    t0 = time.monotonic()
    failures: list[str] = []  # appended on this thread only (as_completed)
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        futures = {pool.submit(ensure, t.name): t for t in missing}
        for fut in concurrent.futures.as_completed(futures):
            exc = fut.exception()
            if exc is not None:
                failures.append(f"{futures[fut].name}: {exc}")
                log(f"{futures[fut].name}: FAILED: {exc}")
    log(f"install: {len(missing) - len(failures)}/{len(missing)} built in {_minutes(time.monotonic() - t0)}")
    return failures


def path(name: str) -> Path:
    """The cached binary of ``name``; :class:`ToolError` if it has not been built."""
    tool = get(name)
    if not tool.built():
        raise ToolError(f"{name} {tool.version} is not built; run: python -m dev.tools install {name}")
    return tool.path


def built(name: str) -> bool:
    return get(name).built()


# -- running OpenTofu offline -------------------------------------------------------------------------


def providers() -> list[Tool]:
    """The provider tools that are built, i.e. the ones OpenTofu can install offline."""
    return [t for t in TOOLS.values() if t.provider and t.built()]


def tofurc() -> Path:
    """Write (atomically) and return a CLI config that installs providers only from the local mirrors.

    One ``filesystem_mirror`` per built provider, each restricted to its own provider address, and no
    ``direct`` block: a provider that is not mirrored fails ``tofu init`` instead of being fetched.
    """
    blocks = []
    for t in providers():
        assert t.provider is not None
        blocks.append(
            "  filesystem_mirror {\n"
            f"    path    = {json.dumps(str(t.dir / 'mirror'))}\n"
            f"    include = [{json.dumps('registry.opentofu.org/' + t.provider[0])}]\n"
            "  }\n"
        )
    text = "# Written by dev/tools.py: providers come from the local build cache only.\n"
    text += "provider_installation {\n" + "".join(blocks) + "}\n"
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    target = root / "tofurc"
    if not target.is_file() or target.read_text() != text:
        tmp = root / f".tofurc.{os.getpid()}.{threading.get_ident()}"
        tmp.write_text(text)
        os.replace(tmp, target)
    return target


def tofu_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment that runs ``tofu`` offline against the local provider mirrors.

    ``TF_PLUGIN_CACHE_DIR`` is dropped (a shared plugin cache would hold other builds of the same
    version), the update check is disabled, and prompts are off so a missing input fails at once.
    """
    env = dict(os.environ if base is None else base)
    env.pop("TF_PLUGIN_CACHE_DIR", None)
    env.update({"TF_CLI_CONFIG_FILE": str(tofurc()), "CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1",
                "TF_INPUT": "0"})
    return env


def mirrored_providers() -> dict[str, str]:
    """``{"hashicorp/azurerm": "5.2.0", ...}`` for the providers in the local mirror."""
    return {t.provider[0]: t.provider[1] for t in providers() if t.provider}


# -- CLI ----------------------------------------------------------------------------------------------


def _status_line(tool: Tool) -> str:
    marker = tool.dir / MARKER
    if tool.built():
        meta = json.loads(marker.read_text())
        return (f"{tool.name:8} {tool.version:40} built   {meta['size_bytes'] / 1e6:6.0f} MB  "
                f"{_minutes(meta['build_seconds']):>9}  {tool.path}")
    state = "partial" if tool.dir.exists() else "missing"
    return f"{tool.name:8} {tool.version:40} {state}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dev.tools", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_install = sub.add_parser("install", help="build missing tools (default: all)")
    p_install.add_argument("names", nargs="*", metavar="NAME")
    p_install.add_argument("-j", "--parallel", type=int, default=PARALLEL_BUILDS, help="builds at once")
    p_path = sub.add_parser("path", help="print a tool's binary (exit 1 if not built)")
    p_path.add_argument("name", choices=list(TOOLS))
    sub.add_parser("status", help="show what is built")
    sub.add_parser("env", help="print the environment that runs tofu offline")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "install":
            for name in args.names:
                get(name)  # unknown names fail before any build starts
            failures = install(args.names, parallel=args.parallel)
            if failures:
                print("\n".join(f"error: {f}" for f in failures), file=sys.stderr)
                return 1
        elif args.cmd == "path":
            print(path(args.name))
        elif args.cmd == "status":
            print(f"cache: {cache_root()}")
            for tool in TOOLS.values():
                print(_status_line(tool))
        else:
            env = tofu_env({})
            for key in ("TF_CLI_CONFIG_FILE", "CHECKPOINT_DISABLE", "TF_IN_AUTOMATION", "TF_INPUT"):
                print(f"{key}={env[key]}")
    except ToolError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
