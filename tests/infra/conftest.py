"""Fixtures for the Terraform checks: the cached tools (built by ``make tools``) and scratch modules.

The tools take ~20 minutes to build cold, far beyond a test's timeout, so a missing tool fails the
test at once with the command that builds it rather than building inside the session.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from dev import tools

REQUIRED = ("tofu", "tflint", "checkov", "azurerm")


@pytest.fixture(scope="session")
def terraform_tools() -> dict[str, Path]:
    missing = [name for name in REQUIRED if not tools.built(name)]
    if missing:
        pytest.fail(f"tools not built: {', '.join(missing)} (cache {tools.cache_root()}); "
                    f"run `make tools` or `python -m dev.tools install {' '.join(missing)}`", pytrace=False)
    return {name: tools.path(name) for name in REQUIRED}


@pytest.fixture
def write_module(tmp_path: Path) -> Callable[..., Path]:
    """Write ``{relative path: HCL}`` under ``tmp_path/<name>`` and return that directory."""

    def write(files: dict[str, str], name: str = "mod") -> Path:
        root = tmp_path / name
        for rel, text in files.items():
            target = root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(textwrap.dedent(text).lstrip())
        return root

    return write
