"""Local stand-ins for the Google side of the Cloud Run function, and a functions-framework runner.

* :class:`GoogleStandIn`: a small HTTP server on 127.0.0.1 answering the GCE metadata endpoints
  google-auth (and obstore) call on Cloud Run, requiring ``Metadata-Flavor: Google`` as the real one
  does, plus Secret Manager's ``versions/V:access``, which requires the token it handed out.  It
  records every request, so a test can show where the function got its identity and what it sent.
  The function finds it through ``GCE_METADATA_HOST``/``GCE_METADATA_IP`` (google-auth's own
  variables) and ``CLOUDSDK_API_ENDPOINT_OVERRIDES_SECRETMANAGER``.
* :class:`FunctionServer`: ``functions-framework --target=... --source functions/gcp/main.py`` as a
  real subprocess with its own ``HOME`` (gunicorn keeps a control socket under ``$HOME/.gunicorn``,
  so two servers with one HOME collide) and a clean environment, its stdout/stderr kept for the
  log assertions.

These are stand-ins for the *protocol* only: the tokens are random strings, nothing is signed, and
no IAM decision is made.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from dev.http_standin import LocalStandIn

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "functions" / "gcp" / "main.py"
HOST = "127.0.0.1"
METADATA = "/computeMetadata/v1/"


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    #: lower-cased names
    headers: dict[str, str]


class GoogleStandIn(LocalStandIn["Seen"]):
    """GCE metadata server + Secret Manager ``:access`` on one local port; a context manager."""

    def __init__(self, *, email: str = "kb-backup@kb-test-project.iam.gserviceaccount.com",
                 project: str = "kb-test-project", token_lifetime_seconds: int = 3599) -> None:
        self.email = email
        self.project = project
        self.token_lifetime_seconds = token_lifetime_seconds
        #: What the token endpoint hands out; random per instance so a test can look for it in logs.
        self.access_token = f"ya29.standin-{secrets.token_urlsafe(24)}"
        #: Secret Manager contents: "projects/P/secrets/S/versions/V" -> value.
        self.secrets: dict[str, str] = {}
        super().__init__("google-standin", self._handler())

    def env(self) -> dict[str, str]:
        """Variables that point google-auth, obstore and the function's Secret Manager client here."""
        return {"GCE_METADATA_HOST": self.host, "GCE_METADATA_IP": self.host,
                "CLOUDSDK_API_ENDPOINT_OVERRIDES_SECRETMANAGER": self.url}

    def token_requests(self) -> list[Seen]:
        return [s for s in self.seen if s.path.startswith(METADATA) and s.path.endswith("/token")]


    # -- answers --------------------------------------------------------------------------------
    def _metadata(self, path: str, query: dict[str, list[str]]) -> tuple[int, str, bytes]:
        rest = path[len(METADATA):]
        account = "instance/service-accounts/{}/"
        for alias in ("default", self.email):
            base = account.format(alias)
            if rest == base and query.get("recursive") == ["true"]:
                return _json({"aliases": ["default"], "email": self.email,
                              "scopes": ["https://www.googleapis.com/auth/cloud-platform"]})
            if rest == base + "email":
                return 200, "application/text", self.email.encode()
            if rest == base + "token":
                return _json({"access_token": self.access_token, "expires_in": self.token_lifetime_seconds,
                              "token_type": "Bearer"})
        if rest == "project/project-id":
            return 200, "application/text", self.project.encode()
        if rest == "universe/universe-domain":
            return 200, "application/text", b"googleapis.com"
        return 404, "text/plain", b"not found"

    def _secret(self, path: str, authorization: str) -> tuple[int, str, bytes]:
        if authorization != f"Bearer {self.access_token}":
            return _json({"error": {"code": 401, "status": "UNAUTHENTICATED"}}, 401)
        name = path[len("/v1/"):].removesuffix(":access")
        if name not in self.secrets:
            return _json({"error": {"code": 404, "status": "NOT_FOUND"}}, 404)
        data = base64.b64encode(self.secrets[name].encode()).decode()
        return _json({"name": name, "payload": {"data": data}})

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                split = urlsplit(self.path)
                headers = {k.lower(): v for k, v in self.headers.items()}
                standin.record(Seen(self.command, split.path, parse_qs(split.query), headers))
                if split.path.startswith("/v1/") and split.path.endswith(":access"):
                    status, ctype, body = standin._secret(split.path, headers.get("authorization", ""))
                elif headers.get("metadata-flavor") != "Google":
                    status, ctype, body = 403, "text/plain", b"Missing Metadata-Flavor: Google header"
                elif split.path == "/":
                    status, ctype, body = 200, "application/text", b"computeMetadata/\n"
                elif split.path.startswith(METADATA):
                    status, ctype, body = standin._metadata(split.path, parse_qs(split.query))
                else:
                    status, ctype, body = 404, "text/plain", b"not found"
                self.send_response(status)
                self.send_header("Metadata-Flavor", "Google")
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET

        return Handler


def _json(doc: Any, status: int = 200) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps(doc).encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float

    def json(self) -> Any:
        return json.loads(self.body)


class FunctionServer:
    """One ``functions-framework`` process serving ``target``; a context manager."""

    def __init__(self, target: str, signature_type: str, env: dict[str, str], workdir: Path) -> None:
        self.target = target
        self.port = free_port()
        self.workdir = workdir
        home = workdir / "home"
        home.mkdir(parents=True, exist_ok=True)
        # A clean environment: nothing of the caller's Google or kafka-backup settings leaks in.
        base = {k: v for k, v in os.environ.items()
                if not k.startswith(("KAFKA_BACKUP_", "GOOGLE_", "GCE_", "CLOUDSDK_", "K_"))}
        self.env = {**base, "HOME": str(home), "PYTHONUNBUFFERED": "1", **env}
        self.argv = [str(Path(sys.executable).with_name("functions-framework")), f"--target={target}",
                     f"--signature-type={signature_type}", f"--host={HOST}", f"--port={self.port}",
                     "--source", str(SOURCE)]
        self.stdout_path = workdir / "stdout.log"
        self.stderr_path = workdir / "stderr.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/"

    def __enter__(self) -> FunctionServer:
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self._proc = subprocess.Popen(self.argv, env=self.env, stdout=out, stderr=err, cwd=self.workdir)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"functions-framework exited with {self._proc.returncode}: {self.output()}")
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"functions-framework did not listen on {self.port} within 60 s: {self.output()}")

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()  # Cloud Run too sends SIGTERM, then kills 10 s later
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=5)

    def output(self) -> str:
        return self.stdout_path.read_text(errors="replace") + self.stderr_path.read_text(errors="replace")

    def stdout_lines(self) -> list[str]:
        return [line for line in self.stdout_path.read_text(errors="replace").splitlines() if line.strip()]

    def log_records(self) -> list[dict[str, Any]]:
        """Every stdout line, parsed: the function writes nothing else there (a non-JSON line fails)."""
        return [json.loads(line) for line in self.stdout_lines()]

    def post(self, body: bytes, headers: dict[str, str], *, timeout: float = 120) -> Reply:
        request = urllib.request.Request(self.url, data=body, method="POST", headers=headers)
        started = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=timeout) as resp:
                return Reply(resp.status, dict(resp.headers.items()), resp.read(), time.monotonic() - started)
        except urllib.error.HTTPError as exc:
            return Reply(exc.code, dict(exc.headers.items()), exc.read(), time.monotonic() - started)


def scheduler_headers(job: str) -> dict[str, str]:
    """What a Cloud Scheduler HTTP target with an OIDC token sends (the token is Cloud Run's to check)."""
    fake_oidc = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzY2hlZHVsZXIifQ.c2NoZWR1bGVyLW9pZGMtdG9rZW4"
    return {"Content-Type": "application/json", "User-Agent": "Google-Cloud-Scheduler", "X-CloudScheduler": "true",
            "X-CloudScheduler-JobName": job, "X-CloudScheduler-ScheduleTime": "2026-12-03T07:00:00Z",
            "Authorization": f"Bearer {fake_oidc}"}


def pubsub_cloudevent(payload: dict[str, Any], *, topic: str = "projects/kb-test-project/topics/kafka-backup"
                      ) -> tuple[dict[str, str], bytes]:
    """A binary-mode CloudEvent as Eventarc delivers a Pub/Sub message (data = the schedule payload)."""
    message_id = str(int(time.time() * 1000))
    headers = {"Content-Type": "application/json", "ce-id": message_id, "ce-specversion": "1.0",
               "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
               "ce-source": f"//pubsub.googleapis.com/{topic}", "ce-time": "2026-12-03T07:00:00Z"}
    body = {"message": {"data": base64.b64encode(json.dumps(payload).encode()).decode(), "messageId": message_id,
                        "publishTime": "2026-12-03T07:00:00Z", "attributes": {}},
            "subscription": "projects/kb-test-project/subscriptions/eventarc-kafka-backup"}
    return headers, json.dumps(body).encode()
