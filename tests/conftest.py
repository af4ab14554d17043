"""Session fixtures: each real local service is started at most once per test session.

A service already running (from ``python -m dev.services start``) or pointed elsewhere by its
environment variable is reused and left running; one started here is stopped at session end.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from dev import services  # noqa: E402


def _service(name: str) -> Iterator[dict[str, str]]:
    svc = services.get(name)
    endpoint, started = svc.ensure()
    for key, value in endpoint.items():  # clients that read the environment (obstore's Azurite mode)
        os.environ.setdefault(key, value)
    try:
        yield endpoint
    finally:
        if started and not os.environ.get("KAFKA_BACKUP_KEEP_SERVICES"):
            svc.stop()


@pytest.fixture(scope="session")
def kafka_service() -> Iterator[dict[str, str]]:
    yield from _service("kafka")


@pytest.fixture(scope="session")
def bootstrap_servers(kafka_service: dict[str, str]) -> str:
    return kafka_service["KAFKA_BOOTSTRAP_SERVERS"]


@pytest.fixture(scope="session")
def localstack_service() -> Iterator[dict[str, str]]:
    yield from _service("localstack")


@pytest.fixture(scope="session")
def azurite_service() -> Iterator[dict[str, str]]:
    yield from _service("azurite")


@pytest.fixture(scope="session")
def gcs_service() -> Iterator[dict[str, str]]:
    yield from _service("gcs")


@pytest.fixture(scope="session")
def webdav_service() -> Iterator[dict[str, str]]:
    yield from _service("webdav")
