"""Check every Terraform module under ``infra/terraform/`` offline: fmt, tflint, checkov, init + validate.

Usage (from the repository root, with the project's virtualenv; the tools come from ``dev/tools.py``):

    python -m dev.terraform_check [CLOUD ...]   # default: every infra/terraform/<cloud>/ that exists
    python -m dev.terraform_check --only fmt --only tflint aws   # a subset of the checks

A module is a directory ``infra/terraform/<cloud>/``; its examples are ``<cloud>/examples/*/``.  Checks:

- ``fmt``: ``tofu fmt -check -recursive -diff`` over the cloud directory (examples included);
- ``tflint``: the bundled ``terraform`` rules, recommended preset (``infra/terraform/.tflint.hcl``), on
  the module and on each example; no plugin is downloaded;
- ``checkov``: ``checkov -d <cloud> --framework terraform`` offline; any failed check fails.  Findings
  that are accepted are skipped where they arise, with ``#checkov:skip=ID:reason`` in the ``.tf`` file;
- ``validate``: ``tofu init -backend=false`` against the local provider mirror, then ``tofu validate``,
  on the module and each example, when every provider they need is mirrored (today: azurerm, random).
  The providers for aws and google are not obtainable here (see docs in dev/tools.py), so for those the
  check is reported as skipped, naming the missing providers.

Nothing is written into the repository: OpenTofu works in a temporary copy of the cloud directory (so
no ``.terraform/`` or ``.terraform.lock.hcl`` appears, and concurrent runs do not collide).  Lock files
are never committed: hashes computed from local provider builds would not match the registry's.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from dev import tools

ROOT = Path(__file__).resolve().parents[1]
TERRAFORM_ROOT = ROOT / "infra" / "terraform"
TFLINT_CONFIG = TERRAFORM_ROOT / ".tflint.hcl"
CHECK_TIMEOUT_S = 600
#: Clouds checked at once by :func:`check_all` (2 cores; each check is one process).
PARALLEL = 2
OPENTOFU_REGISTRY = "registry.opentofu.org/"

Status = Literal["pass", "fail", "skip"]


@dataclass(frozen=True)
class Module:
    """A cloud's root module directory and its example directories (each a root module of its own)."""

    cloud: str
    path: Path
    examples: tuple[Path, ...] = ()

    @property
    def roots(self) -> tuple[Path, ...]:
        return (self.path, *self.examples)


@dataclass
class CheckResult:
    directory: Path
    check: str
    status: Status
    seconds: float
    output: str = ""

    @property
    def ok(self) -> bool:
        return self.status != "fail"


@dataclass
class Report:
    module: Module
    results: list[CheckResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    def failures(self) -> list[CheckResult]:
        return [r for r in self.results if not r.ok]


# -- discovery ----------------------------------------------------------------------------------------


def _has_tf(directory: Path) -> bool:
    return any(p.is_file() for p in directory.glob("*.tf"))


def discover(root: Path = TERRAFORM_ROOT) -> list[Module]:
    """Every ``<root>/<cloud>/`` holding ``.tf`` files, with its ``examples/*/`` that hold some."""
    if not root.is_dir():
        return []
    modules = []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if not _has_tf(d):
            continue
        examples = tuple(sorted(e for e in (d / "examples").glob("*") if e.is_dir() and _has_tf(e)))
        modules.append(Module(d.name, d, examples))
    return modules


# -- provider requirements ----------------------------------------------------------------------------


def _load_hcl(path: Path) -> dict[str, Any]:
    import hcl2  # a dev dependency; imported here so `--help` works without it

    with open(path, encoding="utf-8") as fh:
        data: dict[str, Any] = hcl2.load(
            fh, serialization_options=hcl2.SerializationOptions(strip_string_quotes=True, explicit_blocks=False,
                                                                with_comments=False))
    return data


def _normalise(source: str) -> str:
    source = source.strip().lower()
    if source.startswith(OPENTOFU_REGISTRY):
        return source[len(OPENTOFU_REGISTRY):]
    return source if "/" in source else f"hashicorp/{source}"


def required_providers(directory: Path, _seen: set[Path] | None = None) -> set[str]:
    """Provider addresses a root module needs, following local module calls (``./``, ``../``).

    Declared ``required_providers`` sources, plus the implied ``hashicorp/<prefix>`` of resources,
    data sources and provider blocks whose local name is not declared (what OpenTofu itself does).
    A file that does not parse counts as needing nothing here; ``fmt`` and ``validate`` report it.
    """
    seen = _seen if _seen is not None else set()
    directory = directory.resolve()
    if directory in seen:
        return set()
    seen.add(directory)
    declared: dict[str, str] = {}
    used_local_names: set[str] = set()
    children: list[Path] = []
    for tf in sorted(directory.glob("*.tf")):
        try:
            doc = _load_hcl(tf)
        except Exception:  # syntax errors are for the fmt and validate checks to report
            continue
        for block in doc.get("terraform", []):
            for req in block.get("required_providers", []):
                for local, spec in req.items():
                    src = spec.get("source", local) if isinstance(spec, dict) else local
                    declared[local] = _normalise(src)
        for kind in ("resource", "data", "ephemeral"):
            for block in doc.get(kind, []):
                for rtype, instances in block.items():
                    explicit = {inst.get("provider", "") for inst in instances.values() if isinstance(inst, dict)}
                    names = {re.sub(r"^\$\{(\w+)(\..*)?\}$", r"\1", str(p)) for p in explicit if p}
                    used_local_names.update(names or {rtype.split("_", 1)[0]})
        for block in doc.get("provider", []):
            used_local_names.update(block)
        for block in doc.get("module", []):
            for call in block.values():
                src = str(call.get("source", "")) if isinstance(call, dict) else ""
                if src.startswith(("./", "../")):
                    children.append(directory / src)
    needed = set(declared.values())
    needed.update(_normalise(n) for n in used_local_names if n not in declared and n != "terraform")
    for child in children:
        needed |= required_providers(child, seen)
    return needed


# -- running the tools --------------------------------------------------------------------------------


def _run(check: str, directory: Path, argv: Sequence[str], *, cwd: Path | None = None,
         env: Mapping[str, str] | None = None) -> CheckResult:
    t0 = time.monotonic()
    try:
        proc = subprocess.run(list(argv), cwd=cwd, env=dict(env) if env is not None else None, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              timeout=CHECK_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return CheckResult(directory, check, "fail", time.monotonic() - t0,
                           f"timed out after {CHECK_TIMEOUT_S}s: {' '.join(argv)}\n{out}")
    status: Status = "pass" if proc.returncode == 0 else "fail"
    output = proc.stdout if status == "pass" else f"$ {' '.join(argv)}  (exit {proc.returncode})\n{proc.stdout}"
    return CheckResult(directory, check, status, time.monotonic() - t0, output)


def check_fmt(module: Module) -> CheckResult:
    # Run from the parent so the diff names files as "<cloud>/examples/x/main.tf".
    return _run("fmt", module.path, [str(tools.path("tofu")), "fmt", "-check", "-recursive", "-diff",
                                     "-no-color", module.path.name], cwd=module.path.parent, env=tools.tofu_env())


def check_tflint(directory: Path, config: Path = TFLINT_CONFIG) -> CheckResult:
    if not config.is_file():
        return CheckResult(directory, "tflint", "fail", 0.0, f"tflint config missing: {config}")
    env = dict(os.environ)
    env.pop("TFLINT_PLUGIN_DIR", None)  # only the bundled terraform ruleset, never a downloaded plugin
    argv = [str(tools.path("tflint")), f"--chdir={directory}", f"--config={config.resolve()}", "--format=compact",
            "--no-color"]
    return _run("tflint", directory, argv, cwd=directory, env=env)  # cwd: findings name "main.tf:5:15"


def check_checkov(module: Module) -> CheckResult:
    env = dict(os.environ, BC_SKIP_MAPPING="TRUE", CHECKOV_RUN_SCA_PACKAGE_SCAN_V2="false",
               PYTHONWARNINGS="ignore")
    for key in ("BC_API_KEY", "PRISMA_API_URL"):  # never talk to a platform
        env.pop(key, None)
    return _run("checkov", module.path, [str(tools.path("checkov")), "-d", str(module.path), "--framework",
                                         "terraform", "--skip-download", "--compact", "--quiet"], env=env)


def _copy_for_tofu(source: Path, dest: Path) -> None:
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns(".terraform", ".terraform.lock.hcl", "*.tfstate*"))


def check_validate(module: Module) -> list[CheckResult]:
    """``tofu init -backend=false`` + ``tofu validate`` per root, in a throwaway copy of the module.

    Why a copy: init writes ``.terraform/`` and ``.terraform.lock.hcl`` next to the code; the lock
    file's hashes would describe our local builds, and two runs at once would race on them.  The copy
    keeps the cloud directory's layout, so examples' ``source = "../.."`` still resolves.
    """
    mirrored = tools.mirrored_providers()
    results = []
    with tempfile.TemporaryDirectory(prefix=f"tfcheck-{module.cloud}-") as tmp:
        copy = Path(tmp) / module.cloud
        _copy_for_tofu(module.path, copy)
        env = tools.tofu_env()
        for root in module.roots:
            missing = sorted(required_providers(root) - set(mirrored))
            if missing:
                results.append(CheckResult(root, "validate", "skip", 0.0,
                                           f"providers not in the local mirror: {', '.join(missing)}"))
                continue
            workdir = copy / root.relative_to(module.path)
            env["TF_DATA_DIR"] = str(Path(tmp) / "data" / root.relative_to(module.path).as_posix().replace("/", "_"))
            t0 = time.monotonic()
            init = _run("validate", root, [str(tools.path("tofu")), "init", "-backend=false", "-input=false",
                                           "-no-color"], cwd=workdir, env=env)
            if init.ok:
                init = _run("validate", root, [str(tools.path("tofu")), "validate", "-no-color"], cwd=workdir,
                            env=env)
            init.seconds = time.monotonic() - t0
            results.append(init)
    return results


CHECKS = ("fmt", "tflint", "checkov", "validate")


def check_module(module: Module, *, checks: Iterable[str] = CHECKS, tflint_config: Path = TFLINT_CONFIG) -> Report:
    """Run the named checks on one cloud module and its examples; every check runs even after a failure."""
    report = Report(module)
    wanted = set(checks)
    if "fmt" in wanted:
        report.results.append(check_fmt(module))
    if "tflint" in wanted:
        report.results.extend(check_tflint(root, tflint_config) for root in module.roots)
    if "checkov" in wanted:
        report.results.append(check_checkov(module))
    if "validate" in wanted:
        report.results.extend(check_validate(module))
    return report


def check_all(modules: Sequence[Module], *, checks: Iterable[str] = CHECKS, parallel: int = PARALLEL) -> list[Report]:
    wanted = tuple(checks)
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        return list(pool.map(lambda m: check_module(m, checks=wanted), modules))


def ensure_tools() -> None:
    """Fail early, naming the command that builds what is missing."""
    missing = [n for n in ("tofu", "tflint", "checkov") if not tools.built(n)]
    if missing:
        raise tools.ToolError(f"not built: {', '.join(missing)}; run: python -m dev.tools install "
                              f"{' '.join(missing)} (or make tools)")


# -- CLI ----------------------------------------------------------------------------------------------


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def format_table(reports: Sequence[Report]) -> str:
    rows = [(_rel(r.directory), r.check, r.status.upper() if r.status == "fail" else r.status,
             f"{r.seconds:.1f}s", r.output.strip().splitlines()[0] if r.status == "skip" and r.output else "")
            for rep in reports for r in rep.results]
    header = ("DIRECTORY", "CHECK", "RESULT", "TIME", "NOTE")
    widths = [max(len(str(x[i])) for x in [header, *rows]) for i in range(4)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row[:4], widths, strict=True)) + "  " + row[4]
             for row in [header, *rows]]
    return "\n".join(line.rstrip() for line in lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dev.terraform_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("clouds", nargs="*", help="cloud directories under the root (default: all)")
    parser.add_argument("--only", action="append", choices=CHECKS, help="run only this check (repeatable)")
    parser.add_argument("--root", type=Path, default=TERRAFORM_ROOT, help="folder of <cloud>/ modules")
    args = parser.parse_args(argv)
    try:
        ensure_tools()
    except tools.ToolError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    modules = discover(args.root)
    if args.clouds:
        unknown = sorted(set(args.clouds) - {m.cloud for m in modules})
        if unknown:
            print(f"error: no module in {args.root}/ for: {', '.join(unknown)}", file=sys.stderr)
            return 2
        modules = [m for m in modules if m.cloud in args.clouds]
    if not modules:
        print(f"no Terraform modules under {_rel(args.root)}/")
        return 0
    t0 = time.monotonic()
    reports = check_all(modules, checks=args.only or CHECKS)
    for rep in reports:
        for r in rep.failures():
            print(f"\n=== {_rel(r.directory)}: {r.check} FAILED ===\n{r.output.rstrip()}")
    print()
    print(format_table(reports))
    failed = sum(len(rep.failures()) for rep in reports)
    print(f"\n{len(modules)} module(s), {sum(len(rep.results) for rep in reports)} checks, {failed} failed, "
          f"{time.monotonic() - t0:.1f}s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
