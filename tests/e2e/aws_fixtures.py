"""The AWS function as Lambda runs it: its deployment zip, Lambda's runtime client, the emulator, an account.

* :func:`lambda_package` builds ``kafka-backup-lambda-x86_64.zip`` once per session with
  ``functions/aws/build.py`` (the same code as ``make lambda-package``), and :func:`lambda_task_root`
  unpacks it read-only, as ``/var/task`` is.
* :func:`lambda_runtime_dir` holds awslambdaric and its two dependencies only (Lambda's
  ``/var/runtime``), copied from the project venv.  With ``python -S`` and ``PYTHONPATH`` = task root +
  runtime dir, nothing else is importable, so a passing test proves the zip is self-contained.
* :class:`LambdaFunction` runs the AWS Lambda Runtime Interface Emulator (built by ``dev/tools.py``)
  around ``python -m awslambdaric handler.handler`` with Lambda's environment, invokes it over HTTP
  and keeps everything the runtime wrote (Lambda sends stdout and stderr to CloudWatch Logs, where
  the EMF lines become metrics).
* :func:`aws_account` is the LocalStack side: a bucket, an execution role created with IAM and its
  temporary credentials from STS ``AssumeRole`` (what Lambda puts in the environment).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import distribution
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from dev import tools

ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "functions" / "aws" / "build.py"
HOST = "127.0.0.1"
REGION = "us-east-1"
#: What /var/runtime would hold for this test: the runtime client and its dependencies.
RUNTIME_DISTRIBUTIONS = ("awslambdaric", "simplejson", "snapshot-restore-py")
INVOKE_PATH = "/2015-03-31/functions/function/invocations"


def load_build_module() -> ModuleType:
    """``functions/aws/build.py`` as a module (``functions/`` is not a package)."""
    spec = importlib.util.spec_from_file_location("kafka_backup_lambda_build", BUILD_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is created
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def lambda_build() -> ModuleType:
    return load_build_module()


@pytest.fixture(scope="session")
def lambda_package(lambda_build: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The deployment zip, built once per session (~30-45 s: pip installs manylinux wheels)."""
    return lambda_build.build("x86_64", tmp_path_factory.mktemp("lambda-dist"))


def unpack(zip_path: Path, dest: Path) -> Path:
    """Extract with the modes recorded in the zip (Lambda keeps them), then make the tree read-only."""
    with zipfile.ZipFile(zip_path) as zf:
        for info in zf.infolist():
            target = dest / info.filename
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(zf.read(info))
            target.chmod((info.external_attr >> 16) & 0o777)
    for dirpath, _, _ in os.walk(dest):
        os.chmod(dirpath, 0o555)
    return dest


@pytest.fixture(scope="session")
def lambda_task_root(lambda_package: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = unpack(lambda_package.path, tmp_path_factory.mktemp("var-task"))
    yield root
    for dirpath, _, _ in os.walk(root):  # writable again, so pytest can remove the temporary tree
        os.chmod(dirpath, 0o755)


@pytest.fixture(scope="session")
def lambda_runtime_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    runtime = tmp_path_factory.mktemp("var-runtime")
    for name in RUNTIME_DISTRIBUTIONS:
        dist = distribution(name)
        for rel in dist.files or ():
            if "__pycache__" in rel.parts or rel.parts[0] == "..":
                continue
            source = Path(str(dist.locate_file(rel)))
            (runtime / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, runtime / rel)
    return runtime


@pytest.fixture(scope="session")
def rie_binary() -> Path:
    """The emulator, built into the tools cache on first use (about a minute)."""
    return tools.ensure("rie")


# ------------------------------------------------------------------------------------------ the account
@dataclass(frozen=True)
class AwsAccount:
    endpoint: str
    bucket: str
    role_arn: str
    #: The role's temporary credentials: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN.
    credentials: dict[str, str]

    def client(self, service: str) -> Any:
        import boto3

        return boto3.client(service, endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id="test", aws_secret_access_key="test")

    def storage_url(self, prefix: str) -> str:
        """The function's storage URL: the endpoint comes from AWS_ENDPOINT_URL (obstore reads it).

        ``path_style`` and ``allow_http`` are LocalStack's needs; on AWS the URL is ``s3://bucket/prefix``.
        """
        return f"s3://{self.bucket}/{prefix}?path_style=true&allow_http=true"

    def env(self) -> dict[str, str]:
        """The credentials as Lambda exposes them, plus the endpoint that sends every SDK to LocalStack."""
        return {**self.credentials, "AWS_ENDPOINT_URL": self.endpoint}


@pytest.fixture(scope="session")
def aws_account(localstack_service: dict[str, str]) -> AwsAccount:
    endpoint = localstack_service.get("AWS_ENDPOINT_URL", f"http://{HOST}:4566")
    suffix = uuid.uuid4().hex[:10]
    bucket = f"kb-lambda-{suffix}"
    probe = AwsAccount(endpoint, bucket, "", {})
    probe.client("s3").create_bucket(Bucket=bucket)
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                     "Principal": {"Service": "lambda.amazonaws.com"}}]}
    role = probe.client("iam").create_role(RoleName=f"kafka-backup-fn-{suffix}",
                                           AssumeRolePolicyDocument=json.dumps(trust))["Role"]
    creds = probe.client("sts").assume_role(RoleArn=role["Arn"], RoleSessionName="kafka-backup-fn",
                                            DurationSeconds=3600)["Credentials"]
    return AwsAccount(endpoint, bucket, role["Arn"], {
        "AWS_ACCESS_KEY_ID": creds["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"],
        "AWS_SESSION_TOKEN": creds["SessionToken"]})


# ----------------------------------------------------------------------------------------- the function
def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def lambda_environment(name: str, *, timeout: int, task_root: Path, runtime_dir: Path,
                       memory_mb: int = 1024) -> dict[str, str]:
    """The variables Lambda sets for a python3.11 function (the Terraform module's JSON log format)."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "LAMBDA_TASK_ROOT": str(task_root),
        "LAMBDA_RUNTIME_DIR": str(runtime_dir),
        "PYTHONPATH": f"{task_root}:{runtime_dir}",
        # /var/task is read-only on Lambda, so no bytecode is ever cached there; file modes do not stop
        # root (these tests may run as root), so say it explicitly: every cold start compiles, as on Lambda.
        "PYTHONDONTWRITEBYTECODE": "1",
        "_HANDLER": "handler.handler",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.11",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_LAMBDA_FUNCTION_NAME": name,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb),
        "AWS_LAMBDA_FUNCTION_TIMEOUT": str(timeout),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": f"2026/12/03/[$LATEST]{uuid.uuid4().hex}",
        "AWS_LAMBDA_LOG_FORMAT": "JSON",
        "AWS_LAMBDA_LOG_LEVEL": "INFO",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        # What the Terraform module sets (infra/terraform/aws/main.tf).
        "POWERTOOLS_SERVICE_NAME": name,
        "POWERTOOLS_METRICS_NAMESPACE": "KafkaBackup",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }


@dataclass(frozen=True)
class Invocation:
    status: int
    body: Any
    seconds: float
    #: The function's output while this invocation ran ([start, end) offsets): Lambda's runtime writes
    #: the invocation's lines, and the emulator its END and REPORT lines, before it answers.
    output_from: int
    output_to: int


@dataclass
class LambdaFunction:
    """One function instance under the emulator: cold on the first invoke, warm afterwards."""

    rie: Path
    task_root: Path
    env: dict[str, str]
    logfile: Path
    timeout: int
    api_port: int = field(default_factory=_free_port)
    runtime_port: int = field(default_factory=_free_port)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> LambdaFunction:
        python = getattr(sys, "_base_executable", sys.executable)
        argv = [str(self.rie), "--runtime-interface-emulator-address", f"{HOST}:{self.api_port}",
                "--runtime-api-address", f"{HOST}:{self.runtime_port}",
                python, "-S", "-m", "awslambdaric", "handler.handler"]
        with open(self.logfile, "ab") as out:
            self.proc = subprocess.Popen(argv, cwd=self.task_root, env=self.env, stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the emulator exited with {self.proc.returncode}:\n{self.output()}")
            try:
                with socket.create_connection((HOST, self.api_port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"the emulator did not listen on {self.api_port} within 15 s:\n{self.output()}")

    def invoke(self, event: Any, *, headers: dict[str, str] | None = None) -> Invocation:
        """POST the event as Lambda's Invoke API would; the body is JSON (or the emulator's plain text)."""
        start = len(self.output())
        req = urllib.request.Request(f"http://{HOST}:{self.api_port}{INVOKE_PATH}", data=json.dumps(event).encode(),
                                     method="POST", headers={"Content-Type": "application/json", **(headers or {})})
        t0 = time.monotonic()
        try:
            with urllib.request.urlopen(req, timeout=self.timeout + 30) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        seconds = time.monotonic() - t0
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw.decode(errors="replace")
        return Invocation(status, body, seconds, start, len(self.output()))

    def output(self) -> str:
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""

    def text(self, inv: Invocation | None = None) -> str:
        """Everything written, or only while ``inv`` ran."""
        out = self.output()
        return out[inv.output_from:inv.output_to] if inv is not None else out

    def records(self, inv: Invocation | None = None) -> list[dict[str, Any]]:
        """Every JSON object line the function (and the emulator) wrote, or only while ``inv`` ran."""
        out = []
        for line in self.text(inv).splitlines():
            line = line.strip()
            if line.startswith("{"):
                try:
                    doc = json.loads(line)
                except ValueError:
                    continue
                if isinstance(doc, dict):
                    out.append(doc)
        return out

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()


@pytest.fixture
def start_lambda(rie_binary: Path, lambda_task_root: Path, lambda_runtime_dir: Path, aws_account: AwsAccount,
                 tmp_path: Path) -> Iterator[Callable[..., LambdaFunction]]:
    """``start_lambda(settings_env, timeout=60, name=...)``: a running function with Lambda's environment,
    the role's credentials, LocalStack's endpoint and the given ``KAFKA_BACKUP_*`` variables."""
    started: list[LambdaFunction] = []

    def start(settings_env: dict[str, str], *, timeout: int = 60, name: str | None = None) -> LambdaFunction:
        name = name or f"kafka-backup-{uuid.uuid4().hex[:8]}"
        env = {**lambda_environment(name, timeout=timeout, task_root=lambda_task_root,
                                    runtime_dir=lambda_runtime_dir),
               **aws_account.env(), **settings_env}
        fn = LambdaFunction(rie_binary, lambda_task_root, env, tmp_path / f"{name}.log", timeout).start()
        started.append(fn)
        return fn

    yield start
    for fn in started:
        fn.stop()


def emf_lines(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """CloudWatch embedded-metric-format documents (what CloudWatch Logs turns into metrics)."""
    return [r for r in records if isinstance(r.get("_aws"), dict) and "CloudWatchMetrics" in r["_aws"]]


def metric_units(emf: dict[str, Any]) -> dict[str, str]:
    return {m["Name"]: m["Unit"] for d in emf["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}


def metric_dimensions(emf: dict[str, Any]) -> list[list[str]]:
    return [sorted(dims) for d in emf["_aws"]["CloudWatchMetrics"] for dims in d["Dimensions"]]


def read_only(path: Path) -> bool:
    return not (path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
