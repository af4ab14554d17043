"""Least-privilege and wiring properties of ``infra/terraform/gcp``, read from its HCL.

The google provider cannot be obtained here, so ``tofu validate``/``plan`` cannot run on this module;
these checks read the parsed source instead (python-hcl2) and follow references between resources,
locals and variables by name.  Each property is one ``check_*`` function that raises
``AssertionError``.  Every test runs its check twice: on the module as it is (must pass) and on the
module with one deliberately bad snippet swapped in (must fail), so no check can pass vacuously.
"""

from __future__ import annotations

import copy
import io
import re
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2
import pytest

MODULE_DIR = Path(__file__).resolve().parents[2] / "infra" / "terraform" / "gcp"

IAM_GRANT = re.compile(r"^google_\w+_iam_(member|binding|policy)$")
PRIMITIVE_ROLE = re.compile(r"roles/(owner|editor|viewer)(?![\w.])")
#: What the engine may do to bucket objects: objects read/write/list/delete plus multipart uploads.
ALLOWED_STORAGE_PERMISSIONS = {
    "storage.objects.create", "storage.objects.delete", "storage.objects.get", "storage.objects.list",
    "storage.multipartUploads.create", "storage.multipartUploads.abort",
}
PREDEFINED_OBJECT_ROLE = "roles/storage.objectUser"


# -- loading ------------------------------------------------------------------------------------------


def _parse(text: str) -> dict[str, Any]:
    options = hcl2.SerializationOptions(strip_string_quotes=True, explicit_blocks=False)
    return hcl2.load(io.StringIO(text), serialization_options=options)


@dataclass
class Module:
    """The parts of a module the checks need, keyed by Terraform address."""

    resources: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, doc: dict[str, Any]) -> None:
        # python-hcl2 keeps comments as "__comments__" / "__inline_comments__" entries: not HCL names.
        for block in doc.get("resource", []):
            for rtype, instances in _named(block).items():
                for name, body in _named(instances).items():
                    self.resources[(rtype, name)] = body
        for block in doc.get("locals", []):
            self.locals.update(_named(block))
        for block in doc.get("variable", []):
            self.variables.update(_named(block))

    def with_snippet(self, hcl: str) -> Module:
        """A copy with the snippet's resources, locals and variables added or replacing same-named ones."""
        other = copy.deepcopy(self)
        other.add(_parse(textwrap.dedent(hcl)))
        return other

    def of_type(self, rtype: str) -> dict[str, dict[str, Any]]:
        return {name: body for (t, name), body in self.resources.items() if t == rtype}

    def grants(self) -> Iterator[tuple[str, str, dict[str, Any]]]:
        for (rtype, name), body in self.resources.items():
            if IAM_GRANT.match(rtype):
                yield rtype, name, body

    def resolve(self, value: Any, depth: int = 0) -> str:
        """The expression with every ``local.X`` replaced by its definition (recursively), as text."""
        text = _text(value)
        if depth > 10:
            return text

        def repl(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in self.locals:
                return m.group(0)
            return f"({self.resolve(self.locals[name], depth + 1)})"
        return re.sub(r"\blocal\.(\w+)\b", repl, text)


def load_module(directory: Path = MODULE_DIR) -> Module:
    module = Module()
    for tf in sorted(directory.glob("*.tf")):
        module.add(_parse(tf.read_text(encoding="utf-8")))
    return module


def _named(block: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in block.items() if not k.startswith("__")}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for k, v in node.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from _strings(v)


def _entry(text: str, key: str) -> str | None:
    """The expression assigned to ``key`` in an object literal inside ``text`` (bracket-balanced)."""
    m = re.search(rf"\b{re.escape(key)}\s*=\s*", text)
    if not m:
        return None
    depth, out = 0, []
    for ch in text[m.end():]:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            if depth == 0:
                break
            depth -= 1
        elif ch == "," and depth == 0:
            break
        out.append(ch)
    return "".join(out).strip()


def _bare(expression: str) -> str:
    """An expression without interpolation wrappers, grouping parentheses and blanks, for comparing."""
    return re.sub(r"[\s()]|\$\{|\}", "", expression)


def function_env(module: Module, key: str) -> str:
    env = module.resolve(_block(function_body(module), "service_config")["environment_variables"])
    value = _entry(env, key)
    assert value is not None, f"the function's environment has no {key}"
    return value


def _block(body: dict[str, Any], name: str) -> dict[str, Any]:
    blocks = body.get(name) or []
    assert len(blocks) == 1, f"expected one {name} block, found {len(blocks)}"
    return blocks[0]  # type: ignore[no-any-return]


# -- who is who -----------------------------------------------------------------------------------------


def function_body(module: Module) -> dict[str, Any]:
    functions = module.of_type("google_cloudfunctions2_function")
    assert len(functions) == 1, f"expected one google_cloudfunctions2_function, found {sorted(functions)}"
    return next(iter(functions.values()))


def function_address(module: Module) -> str:
    return "google_cloudfunctions2_function." + next(iter(module.of_type("google_cloudfunctions2_function")))


def account_of(module: Module, expression: Any) -> str:
    """The ``google_service_account`` name an email/member expression points at."""
    m = re.search(r"google_service_account\.(\w+)\.(email|member)", module.resolve(expression))
    assert m, f"{expression!r} does not name a google_service_account of this module"
    return m.group(1)


def function_account(module: Module) -> str:
    return account_of(module, _block(function_body(module), "service_config")["service_account_email"])


def invoker_account(module: Module) -> str:
    jobs = module.of_type("google_cloud_scheduler_job")
    assert jobs, "no google_cloud_scheduler_job"
    accounts = {account_of(module, _block(_block(job, "http_target"), "oidc_token")["service_account_email"])
                for job in jobs.values()}
    assert len(accounts) == 1, f"scheduler jobs use several identities: {accounts}"
    return accounts.pop()


def grants_to(module: Module, account: str) -> list[tuple[str, str, dict[str, Any]]]:
    pattern = re.compile(rf"google_service_account\.{account}\.(member|email)\b")
    return [(t, n, b) for t, n, b in module.grants()
            if pattern.search(module.resolve(b.get("member", b.get("members", ""))))]


def backup_bucket(module: Module) -> tuple[str, dict[str, Any]]:
    """The bucket the function stores to: the one KAFKA_BACKUP_STORAGE__URL is built from."""
    names = set(re.findall(r"google_storage_bucket\.(\w+)\b", function_env(module, "KAFKA_BACKUP_STORAGE__URL")))
    assert len(names) == 1, f"the storage URL does not name exactly one module bucket: {names}"
    name = names.pop()
    return name, module.resources[("google_storage_bucket", name)]


# -- the checks -----------------------------------------------------------------------------------------


def check_no_primitive_roles(module: Module) -> None:
    for (rtype, name), body in module.resources.items():
        for s in _strings(body):
            assert not PRIMITIVE_ROLE.search(s), f"{rtype}.{name} uses a primitive role: {s!r}"
    for name, value in module.locals.items():
        for s in _strings(value):
            assert not PRIMITIVE_ROLE.search(s), f"local.{name} holds a primitive role: {s!r}"


def _storage_role(module: Module, expression: Any) -> bool:
    text = module.resolve(expression)
    return "roles/storage." in text or "google_project_iam_custom_role" in text


def check_storage_access_is_bucket_level(module: Module) -> None:
    """The function holds object permissions through one binding on its backup bucket, nowhere else."""
    account = function_account(module)
    bucket, _ = backup_bucket(module)
    for rtype, name, body in module.grants():
        if rtype.startswith(("google_project_iam_", "google_folder_iam_", "google_organization_iam_")):
            assert not _storage_role(module, body.get("role", "")), \
                f"{rtype}.{name} grants a storage role above the bucket: {body.get('role')!r}"
    storage_grants = [(t, n, b) for t, n, b in grants_to(module, account) if _storage_role(module, b.get("role", ""))]
    assert len(storage_grants) == 1, f"expected one storage grant to the function, found {storage_grants}"
    rtype, name, body = storage_grants[0]
    assert rtype == "google_storage_bucket_iam_member", f"{rtype}.{name}: storage access must be a bucket-level member"
    target = module.resolve(body["bucket"])
    named = set(re.findall(r"google_storage_bucket\.(\w+)\b", target))
    assert named == {bucket}, f"{rtype}.{name} is on {named or target!r}, not on the backup bucket {bucket!r}"
    role = module.resolve(body["role"])
    assert PREDEFINED_OBJECT_ROLE in role or "google_project_iam_custom_role" in role, f"unexpected role {role!r}"
    for m in re.finditer(r"roles/storage\.\w+", role):
        assert m.group(0) == PREDEFINED_OBJECT_ROLE, f"{rtype}.{name} may bind {m.group(0)}"
    for custom in re.findall(r"google_project_iam_custom_role\.(\w+)", role):
        perms = module.resolve(module.resources[("google_project_iam_custom_role", custom)]["permissions"])
        listed = set(re.findall(r"storage\.[\w.]+", perms))
        assert listed, f"custom role {custom} lists no storage permission"
        extra = listed - ALLOWED_STORAGE_PERMISSIONS
        assert not extra, f"custom role {custom} holds more than object access: {sorted(extra)}"


def check_bucket_hardening(module: Module) -> None:
    """Every bucket: public access prevention enforced, uniform access; the backup bucket versioned by default."""
    buckets = module.of_type("google_storage_bucket")
    assert buckets, "no google_storage_bucket"
    for name, body in buckets.items():
        assert body.get("public_access_prevention") == "enforced", \
            f"bucket {name}: public_access_prevention not enforced"
        assert body.get("uniform_bucket_level_access") is True, f"bucket {name}: uniform_bucket_level_access not true"
    name, body = backup_bucket(module)
    enabled = _block(body, "versioning").get("enabled")
    if enabled is True:
        return
    # Versioning may only be traded for a retention policy (GCS allows one or the other), and only
    # when the caller asks for one: with the variable's default (null) versioning must be on.
    resolved = module.resolve(enabled).replace("(", "").replace(")", "").replace("${", "").replace("}", "").strip()
    m = re.fullmatch(r"var\.(\w+)\s*==\s*null", resolved)
    assert m, f"bucket {name}: versioning is {enabled!r}, neither true nor 'var.X == null'"
    variable = module.variables.get(m.group(1), {})
    assert "default" in variable and variable["default"] is None, \
        f"bucket {name}: versioning depends on var.{m.group(1)} whose default is not null"
    assert "retention" in m.group(1), f"bucket {name}: versioning may only give way to a retention policy"


def check_one_job_per_shard(module: Module) -> None:
    jobs = module.of_type("google_cloud_scheduler_job")
    assert len(jobs) == 1, f"expected one google_cloud_scheduler_job resource (counted), found {sorted(jobs)}"
    name, job = next(iter(jobs.items()))
    count = _text(job.get("count", ""))
    for_each = _text(job.get("for_each", ""))
    if count:
        assert re.fullmatch(r"\$\{var\.shards\}", count), f"job {name}: count is {count!r}, not var.shards"
        index = r"count\.index"
    else:
        assert re.search(r"range\(var\.shards\)", for_each), f"job {name}: neither count nor for_each over var.shards"
        index = r"each\.(key|value)"
    body = module.resolve(_block(job, "http_target").get("body", ""))
    shard = re.search(r"shard\s*=\s*\{([^}]*)\}", body)
    assert shard, f"job {name}: the body carries no shard object: {body!r}"
    assert re.search(rf"\bindex\s*=\s*(tonumber\()?{index}\b", shard.group(1)), \
        f"job {name}: shard.index is not the job's index"
    assert re.search(r"\bcount\s*=\s*var\.shards\b", shard.group(1)), f"job {name}: shard.count is not var.shards"
    assert re.search(r"base64encode\(\s*jsonencode\(", body), f"job {name}: the body is not base64(json)"


def check_scheduler_uses_oidc_to_the_function(module: Module) -> None:
    uri_ref = f"{function_address(module)}.service_config[0].uri"
    for name, job in module.of_type("google_cloud_scheduler_job").items():
        target = _block(job, "http_target")
        assert not target.get("oauth_token"), f"job {name}: an OAuth token is for Google APIs, not Cloud Run"
        oidc = _block(target, "oidc_token")
        assert oidc.get("service_account_email"), f"job {name}: OIDC token without an identity"
        for field_name, value in (("uri", target.get("uri")), ("audience", oidc.get("audience"))):
            assert uri_ref in module.resolve(value), f"job {name}: {field_name} is {value!r}, not the function's URL"


def check_invoker_can_only_invoke_this_function(module: Module) -> None:
    account = invoker_account(module)
    assert account != function_account(module), "the scheduler must not use the function's own identity"
    grants = grants_to(module, account)
    assert len(grants) == 1, \
        f"the invoker {account} should hold exactly one grant, holds {[(t, n) for t, n, _ in grants]}"
    rtype, name, body = grants[0]
    assert rtype in {"google_cloud_run_v2_service_iam_member", "google_cloud_run_service_iam_member"}, \
        f"{rtype}.{name}: the invoker's grant must be on the Cloud Run service"
    assert body.get("role") == "roles/run.invoker", f"{rtype}.{name}: role {body.get('role')!r}"
    target = module.resolve(body.get("name", body.get("service", "")))
    assert function_address(module) in target, f"{rtype}.{name}: service {target!r} is not this function's"


def check_secret_accessor_on_one_secret(module: Module) -> None:
    accessors = [(t, n, b) for t, n, b in module.grants() if "secretmanager" in _text(b.get("role", ""))]
    assert accessors, "no Secret Manager grant"
    assert len(accessors) == 1, f"expected one Secret Manager grant, found {[(t, n) for t, n, _ in accessors]}"
    rtype, name, body = accessors[0]
    assert rtype == "google_secret_manager_secret_iam_member", f"{rtype}.{name}: secret access must be on the secret"
    assert body.get("role") == "roles/secretmanager.secretAccessor", f"{rtype}.{name}: role {body.get('role')!r}"
    assert "for_each" not in body, f"{rtype}.{name}: one secret, not a set of them"
    assert account_of(module, body["member"]) == function_account(module), \
        f"{rtype}.{name}: not the function's identity"
    granted = module.resolve(body["secret_id"])
    password = function_env(module, "KAFKA_BACKUP_KAFKA__SASL__PASSWORD")
    assert "secretref:gcp-secretmanager:" in password, f"the password is not a secretref: {password!r}"
    assert granted in password, f"{rtype}.{name}: grants {granted!r}, the function reads another secret"


def check_function_wiring(module: Module) -> None:
    """Internal-only ingress, and the run budget told to the function is the jobs' attempt deadline."""
    service = _block(function_body(module), "service_config")
    assert service.get("ingress_settings") == "ALLOW_INTERNAL_ONLY", f"ingress is {service.get('ingress_settings')!r}"
    budget = _bare(function_env(module, "KAFKA_BACKUP_TIMEOUT_SECONDS"))
    assert budget.startswith("tostring"), f"KAFKA_BACKUP_TIMEOUT_SECONDS is {budget!r}"
    budget = budget[len("tostring"):]
    assert re.fullmatch(r"min(var\.timeout_seconds,1800|1800,var\.timeout_seconds)", budget), \
        f"the run budget {budget!r} is not min(timeout_seconds, Scheduler's 1800 s)"
    for name, job in module.of_type("google_cloud_scheduler_job").items():
        deadline = _bare(module.resolve(job.get("attempt_deadline", "")))
        assert deadline == f"{budget}s", f"job {name}: attempt_deadline {deadline!r} is not the run budget {budget!r}s"


#: The write policy's settings, the variables they come from and the cost model's defaults.
WRITE_POLICY = (("KAFKA_BACKUP_BACKUP__SEGMENT_MIN_BYTES", "backup_segment_min_bytes", 8388608),
                ("KAFKA_BACKUP_BACKUP__MAX_LAG_SECONDS", "backup_max_lag_seconds", 3600))


def check_write_policy_environment(module: Module) -> None:
    """Every run gets the write policy from typed, validated variables with the cost model's defaults:
    without it a scheduled deployment pays a segment and a commit per partition per run."""
    for key, var, default in WRITE_POLICY:
        value = _bare(function_env(module, key))
        assert value == f"tostringvar.{var}", f"{key} is {value!r}, not tostring(var.{var})"
        body = module.variables.get(var)
        assert body is not None, f"variable {var} is missing"
        assert body.get("type") == "number" and body.get("default") == default, \
            f"variable {var}: type {body.get('type')!r}, default {body.get('default')!r} (want number, {default})"
        assert body.get("description") and body.get("validation"), f"variable {var}: no description or validation"


# -- tests: each check passes on the module and fails on a bad snippet ----------------------------------


@pytest.fixture(scope="module")
def module() -> Module:
    return load_module()


def _passes_and_catches(module: Module, check: Callable[[Module], None], bad_snippet: str, match: str) -> None:
    check(module)
    with pytest.raises(AssertionError, match=match):
        check(module.with_snippet(bad_snippet))


def test_module_parses_with_every_file(module: Module) -> None:
    assert len(list(MODULE_DIR.glob("*.tf"))) >= 8
    assert ("google_cloudfunctions2_function", "backup") in module.resources
    for example in ("minimal", "complete"):
        parsed = load_module(MODULE_DIR / "examples" / example)
        assert parsed.variables, f"examples/{example} has no variables"


def test_no_primitive_roles_anywhere(module: Module) -> None:
    _passes_and_catches(module, check_no_primitive_roles, """
        resource "google_project_iam_member" "oops" {
          project = var.project_id
          role    = "roles/editor"
          member  = google_service_account.function.member
        }
    """, "primitive role")


@pytest.mark.parametrize(("bad", "match"), [
    pytest.param("""
        resource "google_project_iam_member" "objects" {
          project = var.project_id
          role    = "roles/storage.objectAdmin"
          member  = google_service_account.function.member
        }
    """, "above the bucket", id="project-level-storage-role"),
    pytest.param("""
        resource "google_storage_bucket_iam_member" "function_objects" {
          bucket = google_storage_bucket.source[0].name
          role   = local.storage_role
          member = google_service_account.function.member
        }
    """, "not on the backup bucket", id="wrong-bucket"),
    pytest.param("""
        locals {
          storage_role = "roles/storage.admin"
        }
    """, "unexpected role", id="admin-role"),
    pytest.param("""
        locals {
          storage_role = (var.create_storage_custom_role ? google_project_iam_custom_role.storage[0].id
                          : "roles/storage.admin")
        }
    """, "may bind roles/storage.admin", id="admin-role-as-fallback"),
    pytest.param("""
        locals {
          storage_permissions = ["storage.objects.get", "storage.buckets.setIamPolicy"]
        }
    """, "more than object access", id="custom-role-too-wide"),
])
def test_function_storage_access_is_bucket_level(module: Module, bad: str, match: str) -> None:
    _passes_and_catches(module, check_storage_access_is_bucket_level, bad, match)


@pytest.mark.parametrize(("bad", "match"), [
    pytest.param("""
        resource "google_storage_bucket" "source" {
          name                        = "x"
          location                    = "EU"
          uniform_bucket_level_access = true
          public_access_prevention    = "inherited"
        }
    """, "public_access_prevention", id="pap-inherited"),
    pytest.param("""
        resource "google_storage_bucket" "backup" {
          name                     = "x"
          location                 = "EU"
          public_access_prevention = "enforced"
          versioning {
            enabled = true
          }
        }
    """, "uniform_bucket_level_access", id="no-uniform-access"),
    pytest.param("""
        locals {
          versioning_enabled = false
        }
    """, "versioning is", id="versioning-off"),
    pytest.param("""
        variable "retention_period_days" {
          type    = number
          default = 30
        }
    """, "default is not null", id="versioning-off-by-default"),
])
def test_buckets_are_private_uniform_and_versioned(module: Module, bad: str, match: str) -> None:
    _passes_and_catches(module, check_bucket_hardening, bad, match)


@pytest.mark.parametrize(("bad", "match"), [
    pytest.param("""
        resource "google_cloud_scheduler_job" "backup" {
          name     = "one-job"
          schedule = "*/15 * * * *"
          http_target {
            uri  = local.function_uri
            body = base64encode(jsonencode({ backup = { shard = { index = 0, count = var.shards } } }))
            oidc_token {
              service_account_email = google_service_account.invoker.email
              audience              = local.function_uri
            }
          }
        }
    """, "count is|neither count", id="not-counted"),
    pytest.param("""
        resource "google_cloud_scheduler_job" "backup" {
          count    = var.shards
          name     = "job-${count.index}"
          schedule = "*/15 * * * *"
          http_target {
            uri  = local.function_uri
            body = base64encode(jsonencode({ backup = { shard = { index = 0, count = var.shards } } }))
            oidc_token {
              service_account_email = google_service_account.invoker.email
              audience              = local.function_uri
            }
          }
        }
    """, "shard.index", id="same-shard-everywhere"),
])
def test_one_scheduler_job_per_shard(module: Module, bad: str, match: str) -> None:
    _passes_and_catches(module, check_one_job_per_shard, bad, match)


@pytest.mark.parametrize(("bad", "match"), [
    pytest.param("""
        resource "google_cloud_scheduler_job" "backup" {
          count = var.shards
          name  = "job-${count.index}"
          http_target {
            uri = local.function_uri
            oauth_token {
              service_account_email = google_service_account.invoker.email
            }
          }
        }
    """, "OAuth token", id="oauth-not-oidc"),
    pytest.param("""
        resource "google_cloud_scheduler_job" "backup" {
          count = var.shards
          name  = "job-${count.index}"
          http_target {
            uri = local.function_uri
            oidc_token {
              service_account_email = google_service_account.invoker.email
              audience              = "https://example.com"
            }
          }
        }
    """, "audience", id="foreign-audience"),
])
def test_scheduler_sends_oidc_token_for_the_function(module: Module, bad: str, match: str) -> None:
    _passes_and_catches(module, check_scheduler_uses_oidc_to_the_function, bad, match)


@pytest.mark.parametrize(("bad", "match"), [
    pytest.param("""
        resource "google_project_iam_member" "invoker_everywhere" {
          project = var.project_id
          role    = "roles/run.invoker"
          member  = google_service_account.invoker.member
        }
    """, "exactly one grant", id="project-level-invoker"),
    pytest.param("""
        resource "google_cloud_run_v2_service_iam_member" "invoker" {
          project  = var.project_id
          location = var.region
          name     = "some-other-service"
          role     = "roles/run.invoker"
          member   = google_service_account.invoker.member
        }
    """, "not this function", id="other-service"),
    pytest.param("""
        resource "google_cloud_run_v2_service_iam_member" "invoker" {
          project  = var.project_id
          location = var.region
          name     = local.service_name
          role     = "roles/run.developer"
          member   = google_service_account.invoker.member
        }
    """, "role", id="wider-role"),
])
def test_invoker_can_only_invoke_this_function(module: Module, bad: str, match: str) -> None:
    _passes_and_catches(module, check_invoker_can_only_invoke_this_function, bad, match)


@pytest.mark.parametrize(("bad", "match"), [
    pytest.param("""
        resource "google_project_iam_member" "all_secrets" {
          project = var.project_id
          role    = "roles/secretmanager.secretAccessor"
          member  = google_service_account.function.member
        }
    """, "one Secret Manager grant", id="project-level-accessor"),
    pytest.param("""
        resource "google_secret_manager_secret_iam_member" "function_password" {
          project   = var.project_id
          secret_id = "some-other-secret"
          role      = "roles/secretmanager.secretAccessor"
          member    = google_service_account.function.member
        }
    """, "reads another secret", id="other-secret"),
])
def test_secret_accessor_only_on_the_password_secret(module: Module, bad: str, match: str) -> None:
    _passes_and_catches(module, check_secret_accessor_on_one_secret, bad, match)


@pytest.mark.parametrize(("bad", "match"), [
    pytest.param("""
        locals {
          run_budget_seconds = var.timeout_seconds
        }
    """, "run budget", id="budget-ignores-scheduler-limit"),
    pytest.param("""
        resource "google_cloud_scheduler_job" "backup" {
          count            = var.shards
          attempt_deadline = "1800s"
        }
    """, "attempt_deadline", id="deadline-not-the-budget"),
])
def test_function_is_internal_and_told_the_scheduler_deadline(module: Module, bad: str, match: str) -> None:
    _passes_and_catches(module, check_function_wiring, bad, match)


@pytest.mark.parametrize(("bad", "match"), [
    pytest.param("""
        locals {
          contract_environment = {
            for key, value in {
              KAFKA_BACKUP_STORAGE__URL            = local.storage_url
              KAFKA_BACKUP_BACKUP__MAX_LAG_SECONDS = tostring(var.backup_max_lag_seconds)
            } : key => value if value != null
          }
        }
    """, "no KAFKA_BACKUP_BACKUP__SEGMENT_MIN_BYTES", id="segment-min-bytes-missing"),
    pytest.param("""
        locals {
          contract_environment = {
            for key, value in {
              KAFKA_BACKUP_BACKUP__SEGMENT_MIN_BYTES = tostring(var.backup_segment_min_bytes)
              KAFKA_BACKUP_BACKUP__MAX_LAG_SECONDS   = "3600"
            } : key => value if value != null
          }
        }
    """, "not tostring", id="max-lag-hard-coded"),
    pytest.param("""
        variable "backup_segment_min_bytes" {
          description = "Write policy."
          type        = number
          default     = 0
        }
    """, "default 0", id="writes-every-run-by-default"),
    pytest.param("""
        variable "backup_max_lag_seconds" {
          description = "RPO."
          type        = number
          default     = 3600
        }
    """, "no description or validation", id="max-lag-unvalidated"),
])
def test_function_gets_the_write_policy(module: Module, bad: str, match: str) -> None:
    _passes_and_catches(module, check_write_policy_environment, bad, match)
