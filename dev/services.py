"""Install, start, stop and inspect the local services.

Usage (from the repository root, with the project's virtualenv):

    python -m dev.services install [NAME ...]
    python -m dev.services start   [NAME ...]   # prints KEY=VALUE endpoint lines
    python -m dev.services stop    [NAME ...]
    python -m dev.services status  [NAME ...]

NAME is one of: kafka, localstack, azurite, azurite-oauth, gcs, webdav, toxiproxy (default: all of them).
"""

from __future__ import annotations

import importlib
import sys

from dev._common import Service, ServiceError

NAMES = ("kafka", "localstack", "azurite", "azurite-oauth", "gcs", "webdav", "toxiproxy")
#: Services that are a second instance of another module's server: name -> (module, attribute).
_INSTANCES = {"azurite-oauth": ("azurite", "OAUTH_SERVICE")}


def get(name: str) -> Service:
    if name not in NAMES:
        raise SystemExit(f"unknown service {name!r}; choose from {', '.join(NAMES)}")
    module_name, attribute = _INSTANCES.get(name, (name, "SERVICE"))
    svc: Service = getattr(importlib.import_module(f"dev.{module_name}"), attribute)
    return svc


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"install", "start", "stop", "status"}:
        print(__doc__, file=sys.stderr)
        return 2
    action, names = argv[0], argv[1:] or list(NAMES)
    try:
        for name in names:
            svc = get(name)
            if action == "install":
                svc.install()
            elif action == "start":
                svc.install()
                svc.start()
                for key, value in svc.endpoint().items():
                    print(f"{key}={value}")
            elif action == "stop":
                svc.stop()
            else:
                state = "external" if svc.external() else ("ready" if svc.ready() else "stopped")
                print(f"{name}: {state}")
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
