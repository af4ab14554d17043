"""Shared plumbing for the local service scripts in ``dev/``.

Every local stand-in (Kafka, LocalStack, Azurite, fake-gcs-server, WebDAV) is a :class:`Service`:
it installs itself into the git-ignored ``.cache/`` folder, starts detached with a pidfile and a
log under ``.cache/run/``, answers a readiness probe, and stops cleanly.  A service that is already
running (started by an earlier command or another test session) is reused, and one that the user
points elsewhere through its environment variable (``KAFKA_BOOTSTRAP_SERVERS`` …) is never started.

Why processes are detached in their own session: pytest fixtures and ``make`` targets start them
once and later stop the whole process group (LocalStack and npx spawn children).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("KAFKA_BACKUP_CACHE", ROOT / ".cache"))
RUN = CACHE / "run"
HOST = "127.0.0.1"


class ServiceError(RuntimeError):
    """A local service could not be installed, started or reached."""


def log(msg: str) -> None:
    print(f"[dev] {msg}", file=sys.stderr, flush=True)


def port_open(port: int, host: str = HOST, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """True when ``url`` answers with any HTTP status below 500 (the server is up)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return bool(resp.status < 500)
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except (OSError, ValueError):
        return False


def wait_until(pred: Callable[[], bool], *, timeout_s: float, what: str, logfile: Path | None = None,
               pid: int | None = None) -> None:
    """Poll ``pred`` until it holds; fail fast if the process we started has already died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return
        if pid is not None and not pid_alive(pid):
            raise ServiceError(f"{what}: process exited during start-up{_tail(logfile)}")
        time.sleep(0.2)
    raise ServiceError(f"{what}: not ready after {timeout_s:.0f}s{_tail(logfile)}")


def _tail(logfile: Path | None, lines: int = 30) -> str:
    if logfile is None or not logfile.exists():
        return ""
    text = logfile.read_text(errors="replace").splitlines()[-lines:]
    return f"\n--- last lines of {logfile} ---\n" + "\n".join(text)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours still answers kill(0); reap it if it is ours.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def run(argv: Sequence[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None,
        what: str) -> str:
    """Run a short install/setup command; raise with its output when it fails."""
    proc = subprocess.run(list(argv), cwd=cwd, env=_merged_env(env), capture_output=True, text=True)
    if proc.returncode != 0:
        raise ServiceError(f"{what} failed ({proc.returncode}): {' '.join(argv)}\n{proc.stdout[-4000:]}"
                           f"\n{proc.stderr[-4000:]}")
    return proc.stdout


def _merged_env(extra: Mapping[str, str] | None) -> dict[str, str]:
    env = dict(os.environ)
    if extra:
        env.update(extra)
    return env


class Service:
    """Base class: subclasses set ``name``/``env_var`` and implement the hooks below."""

    name: str = ""
    #: Environment variable that points at an already running instance (then nothing is started).
    env_var: str = ""
    start_timeout_s: float = 90.0

    # -- hooks ---------------------------------------------------------------------------------
    def install(self) -> None:
        """Fetch what the service needs into ``CACHE`` (idempotent, fast when cached)."""

    def command(self) -> tuple[list[str], dict[str, str], Path | None]:
        """argv, extra environment and working directory of the server process."""
        raise NotImplementedError

    def ready(self) -> bool:
        """A cheap probe that the service answers requests."""
        raise NotImplementedError

    def prepare(self) -> None:
        """Run before start (e.g. format Kafka's storage)."""

    def after_start(self) -> None:
        """Run once after readiness (e.g. create buckets, log the version)."""

    def endpoint(self) -> dict[str, str]:
        """Environment variables that tell clients where the running service is."""
        raise NotImplementedError

    # -- lifecycle -----------------------------------------------------------------------------
    @property
    def pidfile(self) -> Path:
        return RUN / f"{self.name}.pid"

    @property
    def logfile(self) -> Path:
        return RUN / f"{self.name}.log"

    @property
    def datadir(self) -> Path:
        return RUN / f"{self.name}-data"

    def external(self) -> bool:
        return bool(self.env_var and os.environ.get(self.env_var))

    def running_pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def ensure(self) -> tuple[dict[str, str], bool]:
        """Return (endpoint env, started_by_us); reuse a running or external instance."""
        if self.external():
            return {self.env_var: os.environ[self.env_var]}, False
        if self.ready():
            return self.endpoint(), False
        self.install()
        self.start()
        return self.endpoint(), True

    def start(self) -> None:
        if self.external():
            log(f"{self.name}: using external instance {os.environ[self.env_var]}")
            return
        if self.ready():
            log(f"{self.name}: already running")
            return
        RUN.mkdir(parents=True, exist_ok=True)
        self.prepare()
        argv, env, cwd = self.command()
        t0 = time.monotonic()
        with open(self.logfile, "ab") as out:
            proc = subprocess.Popen(argv, cwd=cwd, env=_merged_env(env), stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        self.pidfile.write_text(str(proc.pid))
        wait_until(self.ready, timeout_s=self.start_timeout_s, what=self.name, logfile=self.logfile,
                   pid=proc.pid)
        self.after_start()
        log(f"{self.name}: ready in {time.monotonic() - t0:.1f}s (pid {proc.pid}, log {self.logfile})")

    def stop(self) -> None:
        pid = self.running_pid()
        if pid is None:
            self.pidfile.unlink(missing_ok=True)
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and pid_alive(pid):
            time.sleep(0.2)
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        self.pidfile.unlink(missing_ok=True)
        log(f"{self.name}: stopped")
