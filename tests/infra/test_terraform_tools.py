"""The tool cache (``dev/tools.py``) and the Terraform checks (``dev/terraform_check.py``).

Three groups:

- the cache's own logic, with cheap builds registered for the test (markers, interrupted builds,
  locking, parallel installs, the offline CLI config);
- the runner proven on throwaway modules: a clean module passes every check, and each check fails on
  the defect it exists for (formatting, an unpinned provider, an unused variable, an unencrypted
  bucket, an unknown argument), so a check that silently passes everything cannot go unnoticed;
- every module actually in ``infra/terraform/<cloud>/``, discovered at collection time.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from dev import terraform_check as tc
from dev import tools

ROOT = Path(__file__).resolve().parents[2]

VERSIONS_AZURERM = """
    terraform {
      required_version = ">= 1.6"
      required_providers {
        azurerm = {
          source  = "hashicorp/azurerm"
          version = ">= 4.0"
        }
      }
    }
"""

MAIN_AZURERM = """
    variable "name" {
      description = "Name of the resource group."
      type        = string
    }

    variable "location" {
      description = "Azure region."
      type        = string
      default     = "westeurope"
    }

    resource "azurerm_resource_group" "this" {
      name     = var.name
      location = var.location
    }

    output "id" {
      description = "Resource group id."
      value       = azurerm_resource_group.this.id
    }
"""

EXAMPLE_AZURERM = """
    provider "azurerm" {
      features {}
    }

    module "rg" {
      source = "../.."
      name   = "rg-example"
    }

    output "id" {
      description = "Resource group id."
      value       = module.rg.id
    }
"""

VERSIONS_AWS = """
    terraform {
      required_version = ">= 1.6"
      required_providers {
        aws = {
          source  = "hashicorp/aws"
          version = ">= 5.0"
        }
      }
    }
"""

S3_BUCKET = """
    variable "bucket" {
      description = "Bucket name."
      type        = string
    }

    resource "aws_s3_bucket" "this" {
      bucket = var.bucket
    }
"""


# -- the tool cache -----------------------------------------------------------------------------------


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "tools-cache"
    monkeypatch.setenv("KAFKA_BACKUP_TOOLS_CACHE", str(root))
    return root


def _script_builder(calls: list[str], *, seconds: float = 0.0, fail_after_partial: bool = False,
                    ) -> Callable[[tools.Tool, Path, Path], None]:
    """A real (cheap) build: writes an executable script at the tool's binary path."""

    def build(tool: tools.Tool, d: Path, buildlog: Path) -> None:
        calls.append(f"start {time.monotonic()}")
        (d / "partial-output").write_text("half done")
        time.sleep(seconds)
        if fail_after_partial:
            raise RuntimeError("simulated crash in the middle of a build")
        tool.path.parent.mkdir(parents=True, exist_ok=True)
        tool.path.write_text(f"#!/bin/sh\necho {tool.name} {tool.version}\n")
        tool.path.chmod(0o755)
        calls.append(f"end {time.monotonic()}")

    return build


def _register(monkeypatch: pytest.MonkeyPatch, name: str, build: Callable[[tools.Tool, Path, Path], None],
              **kw: object) -> tools.Tool:
    tool = tools.Tool(name, "v1.0.0", f"bin/{name}", build, 1, "test tool", **kw)  # type: ignore[arg-type]
    monkeypatch.setitem(tools.TOOLS, name, tool)
    return tool


def test_ensure_builds_once_and_writes_marker_last(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    tool = _register(monkeypatch, "fake", _script_builder(calls))
    assert not tool.built()
    with pytest.raises(tools.ToolError, match=r"python -m dev\.tools install fake"):
        tools.path("fake")

    path = tools.ensure("fake")
    assert path == cache / "fake" / "v1.0.0" / "bin" / "fake"
    assert subprocess.run([str(path)], capture_output=True, text=True).stdout == "fake v1.0.0\n"
    meta = json.loads((cache / "fake" / "v1.0.0" / tools.MARKER).read_text())
    assert meta["version"] == "v1.0.0" and meta["size_bytes"] > 0 and "build_seconds" in meta

    assert tools.ensure("fake") == path
    assert len([c for c in calls if c.startswith("start")]) == 1  # the warm call did not rebuild


def test_interrupted_build_is_redone(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    _register(monkeypatch, "fake", _script_builder(calls, fail_after_partial=True))
    with pytest.raises(RuntimeError, match="simulated crash"):
        tools.ensure("fake")
    d = cache / "fake" / "v1.0.0"
    assert (d / "partial-output").exists() and not (d / tools.MARKER).exists()
    assert "partial" in tools._status_line(tools.get("fake"))

    tool = _register(monkeypatch, "fake", _script_builder(calls))
    assert tools.ensure("fake") == tool.path
    assert tool.built()
    assert len([c for c in calls if c.startswith("start")]) == 2


def test_concurrent_ensure_builds_once(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    _register(monkeypatch, "fake", _script_builder(calls, seconds=0.5))
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(tools.ensure("fake"))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 3 and len(set(results)) == 1
    assert len([c for c in calls if c.startswith("start")]) == 1


def test_install_builds_two_at_once(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls_a: list[str] = []
    calls_b: list[str] = []
    _register(monkeypatch, "fake_a", _script_builder(calls_a, seconds=1.0))
    _register(monkeypatch, "fake_b", _script_builder(calls_b, seconds=1.0))
    t0 = time.monotonic()
    assert tools.install(["fake_a", "fake_b"], parallel=2) == []
    assert time.monotonic() - t0 < 1.9  # sequential would take 2 s
    start_b = float(calls_b[0].split()[1])
    end_a = float(calls_a[-1].split()[1])
    assert start_b < end_a  # the builds overlapped
    assert tools.install(["fake_a", "fake_b"]) == []  # warm: nothing to do


def test_install_reports_failures(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _register(monkeypatch, "fake", _script_builder([], fail_after_partial=True))
    failures = tools.install(["fake"])
    assert len(failures) == 1 and "simulated crash" in failures[0]


def test_cli_path_exits_1_when_not_built(cache: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "dev.tools", "path", "tofu"], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "KAFKA_BACKUP_TOOLS_CACHE": str(cache)})
    assert proc.returncode == 1
    assert "not built" in proc.stderr and "install tofu" in proc.stderr
    status = subprocess.run([sys.executable, "-m", "dev.tools", "status"], cwd=ROOT, capture_output=True,
                            text=True, env={**os.environ, "KAFKA_BACKUP_TOOLS_CACHE": str(cache)})
    assert status.returncode == 0
    assert re.search(r"^tofu\s+v1\.12\.6\s+missing$", status.stdout, re.M), status.stdout


def test_cli_rejects_unknown_tool(cache: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "dev.tools", "install", "terraform"], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, "KAFKA_BACKUP_TOOLS_CACHE": str(cache)})
    assert proc.returncode == 1 and "unknown tool 'terraform'" in proc.stderr
    assert not (cache / "terraform").exists()


def test_tofurc_lists_only_built_mirrors_and_no_direct(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tools, "TOOLS", {})
    prov = _register(monkeypatch, "fakeprov", _script_builder([]), provider=("example/fakeprov", "1.2.3"))
    _register(monkeypatch, "unbuilt", _script_builder([]), provider=("example/unbuilt", "0.1.0"))
    tools.ensure("fakeprov")
    monkeypatch.setenv("TF_PLUGIN_CACHE_DIR", "/somewhere/else")
    env = tools.tofu_env()
    assert "TF_PLUGIN_CACHE_DIR" not in env
    assert env["CHECKPOINT_DISABLE"] == "1"
    rc = Path(env["TF_CLI_CONFIG_FILE"]).read_text()
    assert f'path    = "{prov.dir / "mirror"}"' in rc
    assert '"registry.opentofu.org/example/fakeprov"' in rc
    assert "unbuilt" not in rc
    assert "direct" not in rc.replace("# Written", "")
    assert tools.mirrored_providers() == {"example/fakeprov": "1.2.3"}


def test_real_tools_report_their_versions(terraform_tools: dict[str, Path]) -> None:
    """The cached binaries run and are the pinned versions (a stale cache would show here)."""
    tofu = subprocess.run([str(terraform_tools["tofu"]), "version"], capture_output=True, text=True, check=True,
                          env=tools.tofu_env())
    assert tofu.stdout.startswith("OpenTofu v1.12.6\n"), tofu.stdout
    tflint = subprocess.run([str(terraform_tools["tflint"]), "--version"], capture_output=True, text=True,
                            check=True)
    assert "0.64.0" in tflint.stdout, tflint.stdout
    # `checkov --version` takes seconds to import; the build ran it and froze the venv's packages.
    assert "checkov==3.3.30" in (tools.get("checkov").dir / "requirements.lock").read_text().splitlines()
    azurerm = terraform_tools["azurerm"]
    assert azurerm.name == f"terraform-provider-azurerm_v{tools.AZURERM_SEMVER}"
    assert os.access(azurerm, os.X_OK)


# -- the runner on throwaway modules ------------------------------------------------------------------


def test_discover_finds_clouds_and_examples(tmp_path: Path) -> None:
    (tmp_path / "aws" / "examples" / "minimal").mkdir(parents=True)
    (tmp_path / "aws" / "main.tf").write_text("")
    (tmp_path / "aws" / "examples" / "minimal" / "main.tf").write_text("")
    (tmp_path / "aws" / "examples" / "notes").mkdir()  # no .tf: not an example
    (tmp_path / "gcp").mkdir()  # no .tf: not a module (yet)
    (tmp_path / ".terraform").mkdir()
    found = tc.discover(tmp_path)
    assert [(m.cloud, m.examples) for m in found] == [("aws", (tmp_path / "aws" / "examples" / "minimal",))]


def test_required_providers_follow_local_modules(write_module: Callable[..., Path]) -> None:
    root = write_module({
        "versions.tf": VERSIONS_AZURERM,
        "main.tf": """
            resource "random_id" "x" {
              byte_length = 4 # inline comment
            }
            resource "terraform_data" "y" {}
            data "archive_file" "z" {
              type = "zip"
            }
            module "child" {
              source = "./child"
            }
        """,
        "child/main.tf": """
            # Comments must not be read as provider names.
            terraform {
              required_providers {
                # the google provider, under another local name
                g = {
                  source = "registry.opentofu.org/hashicorp/google"
                }
              }
            }
            resource "g_thing" "t" {}
        """,
    })
    assert tc.required_providers(root) == {"hashicorp/azurerm", "hashicorp/random", "hashicorp/archive",
                                           "hashicorp/google"}


@pytest.mark.slow
def test_clean_module_passes_every_check(terraform_tools: dict[str, Path],
                                         write_module: Callable[..., Path]) -> None:
    root = write_module({"versions.tf": VERSIONS_AZURERM, "main.tf": MAIN_AZURERM,
                         "examples/minimal/versions.tf": VERSIONS_AZURERM,
                         "examples/minimal/main.tf": EXAMPLE_AZURERM}, name="azure")
    (module,) = tc.discover(root.parent)
    report = tc.check_module(module)
    summary = [(r.directory.relative_to(root.parent).as_posix(), r.check, r.status) for r in report.results]
    assert summary == [
        ("azure", "fmt", "pass"),
        ("azure", "tflint", "pass"),
        ("azure/examples/minimal", "tflint", "pass"),
        ("azure", "checkov", "pass"),
        ("azure", "validate", "pass"),
        ("azure/examples/minimal", "validate", "pass"),
    ], "\n".join(r.output for r in report.results)
    # OpenTofu worked in a copy: nothing was written next to the code.
    leftovers = [p.name for p in root.rglob("*") if p.name in {".terraform", ".terraform.lock.hcl"}]
    assert leftovers == []


def test_fmt_fails_on_badly_formatted_file(terraform_tools: dict[str, Path],
                                           write_module: Callable[..., Path]) -> None:
    root = write_module({"versions.tf": VERSIONS_AZURERM,
                         "examples/minimal/main.tf": 'variable "x" {\ntype=string\n  description = "x"\n}\n'})
    (module,) = tc.discover(root.parent)
    result = tc.check_fmt(module)
    assert result.status == "fail"
    assert "examples/minimal/main.tf" in result.output and "+  type        = string" in result.output


def test_tflint_fails_on_unpinned_provider(terraform_tools: dict[str, Path],
                                           write_module: Callable[..., Path]) -> None:
    root = write_module({"main.tf": """
        terraform {
          required_version = ">= 1.6"
          required_providers {
            azurerm = {
              source = "hashicorp/azurerm"
            }
          }
        }
        resource "azurerm_resource_group" "this" {
          name     = "rg"
          location = "westeurope"
        }
    """})
    result = tc.check_tflint(root)
    assert result.status == "fail"
    assert "terraform_required_providers" in result.output and "azurerm" in result.output


def test_tflint_fails_on_unused_variable(terraform_tools: dict[str, Path],
                                         write_module: Callable[..., Path]) -> None:
    root = write_module({"versions.tf": VERSIONS_AZURERM, "main.tf": MAIN_AZURERM + """
        variable "forgotten" {
          description = "Never used."
          type        = string
        }
    """})
    result = tc.check_tflint(root)
    assert result.status == "fail"
    assert "terraform_unused_declarations" in result.output and '"forgotten"' in result.output


@pytest.mark.slow
def test_checkov_flags_unencrypted_bucket_and_honours_skip_comments(
        terraform_tools: dict[str, Path], write_module: Callable[..., Path]) -> None:
    root = write_module({"versions.tf": VERSIONS_AWS, "main.tf": S3_BUCKET}, name="aws")
    (module,) = tc.discover(root.parent)
    result = tc.check_checkov(module)
    assert result.status == "fail"
    failed = sorted(set(re.findall(r"Check: (CKV2?_AWS_\d+)", result.output)))
    assert "CKV_AWS_145" in failed, result.output  # "Ensure that S3 buckets are encrypted with KMS by default"

    skips = "".join(f"  #checkov:skip={check_id}:accepted in this test\n" for check_id in failed)
    main = (root / "main.tf").read_text().replace("  bucket = var.bucket\n", skips + "  bucket = var.bucket\n")
    (root / "main.tf").write_text(main)
    result = tc.check_checkov(module)
    assert result.status == "pass", result.output


def test_validate_fails_on_unknown_argument(terraform_tools: dict[str, Path],
                                            write_module: Callable[..., Path]) -> None:
    root = write_module({"versions.tf": VERSIONS_AZURERM,
                         "main.tf": MAIN_AZURERM.replace("location = var.location",
                                                         "location = var.location\n  colour   = \"blue\"")})
    (module,) = tc.discover(root.parent)
    (result,) = tc.check_validate(module)
    assert result.status == "fail"
    assert 'An argument named "colour" is not expected here' in result.output


def test_validate_is_skipped_for_providers_not_mirrored(terraform_tools: dict[str, Path],
                                                        write_module: Callable[..., Path]) -> None:
    root = write_module({"versions.tf": VERSIONS_AWS, "main.tf": S3_BUCKET})
    (module,) = tc.discover(root.parent)
    (result,) = tc.check_validate(module)
    assert result.status == "skip"
    assert result.output == "providers not in the local mirror: hashicorp/aws"


def test_init_never_reaches_the_network_for_an_unmirrored_provider(
        terraform_tools: dict[str, Path], tmp_path: Path) -> None:
    """The CLI config has no ``direct`` source: init fails fast instead of trying a registry."""
    (tmp_path / "main.tf").write_text('terraform {\n  required_providers {\n    aws = {\n'
                                      '      source = "hashicorp/aws"\n    }\n  }\n}\n')
    env = {**tools.tofu_env(), "TF_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.run([str(terraform_tools["tofu"]), "init", "-backend=false", "-no-color"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "hashicorp/aws" in proc.stdout + proc.stderr
    assert "registry.opentofu.org/v1/providers" not in proc.stdout + proc.stderr


def test_cli_prints_table_and_fails_on_a_finding(terraform_tools: dict[str, Path],
                                                  write_module: Callable[..., Path]) -> None:
    good = write_module({"versions.tf": VERSIONS_AZURERM, "main.tf": MAIN_AZURERM}, name="good")
    write_module({"versions.tf": VERSIONS_AZURERM, "main.tf": MAIN_AZURERM.replace("  type        = string\n",
                                                                                     "  type = string\n", 1)},
                 name="bad")
    argv = [sys.executable, "-m", "dev.terraform_check", "--root", str(good.parent), "--only", "fmt", "--only",
            "tflint"]
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "=== " + str(good.parent / "bad") + ": fmt FAILED ===" in proc.stdout
    rows = {tuple(line.split()[:3]) for line in proc.stdout.splitlines()}
    assert {(str(good.parent / "bad"), "fmt", "FAIL"), (str(good), "fmt", "pass"), (str(good), "tflint", "pass"),
            (str(good.parent / "bad"), "tflint", "pass")} <= rows, proc.stdout
    assert "2 module(s), 4 checks, 1 failed" in proc.stdout

    only_good = subprocess.run([*argv, "good"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert only_good.returncode == 0, only_good.stdout + only_good.stderr
    unknown = subprocess.run([*argv, "nope"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert unknown.returncode == 2 and "no module" in unknown.stderr


# -- the modules in the repository --------------------------------------------------------------------

MODULES = tc.discover()


@pytest.fixture(scope="session")
def repository_reports(terraform_tools: dict[str, Path]) -> dict[str, tc.Report]:
    """All clouds checked once, two at a time (checkov dominates and uses one core each)."""
    return {rep.module.cloud: rep for rep in tc.check_all(MODULES)}


@pytest.mark.slow
@pytest.mark.parametrize("module", MODULES, ids=[m.cloud for m in MODULES])
def test_repository_module(module: tc.Module, repository_reports: dict[str, tc.Report]) -> None:
    report = repository_reports[module.cloud]
    failures = report.failures()
    assert not failures, "\n\n".join(
        f"--- {r.directory.relative_to(ROOT)}: {r.check} ---\n{r.output.strip()}" for r in failures)
    # Every module gets the three provider-independent checks on itself and each example.
    assert {r.check for r in report.results if r.status == "pass"} >= {"fmt", "tflint", "checkov"}
