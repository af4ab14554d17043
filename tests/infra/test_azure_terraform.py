"""Security posture of the Azure Terraform module, read from python-hcl2's parse of its files.

``tofu validate`` proves the module matches the provider's schema; it cannot tell a container scope
from an account scope, or notice a shared key switched back on. These checks pin the choices that
make the deployment least-privilege. Each check runs on the real module and on a deliberately bad
snippet, so a check that can no longer fail is caught too.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hcl2  # python-hcl2 8.x (dev dependency); kept out of checkov's venv, which ships its own hcl2
import pytest

MODULE = Path(__file__).resolve().parents[2] / "infra" / "terraform" / "azure"
BROAD_ROLES = {"Owner", "Contributor", "User Access Administrator", "Role Based Access Control Administrator"}
BROAD_ROLE_IDS = {  # built-in role definition GUIDs of the roles above
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
    "b24988ac-6180-42a0-ab88-20f7382dd24c",
    "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
    "f58310d9-a9f6-439a-9e8d-f62e7b41a168",
}
REF = re.compile(r"^\$\{(.*)\}$", re.S)


class Config:
    """The merged top-level blocks of one Terraform module (all its .tf files)."""

    def __init__(self, docs: list[dict[str, Any]]) -> None:
        self.resources: dict[str, dict[str, dict[str, Any]]] = {}
        self.variables: dict[str, dict[str, Any]] = {}
        self.locals: dict[str, Any] = {}
        for doc in docs:
            for entry in doc.get("resource", []):
                for rtype, named in entry.items():
                    self.resources.setdefault(rtype, {}).update(named)
            for entry in doc.get("variable", []):
                self.variables.update(entry)
            for entry in doc.get("locals", []):
                self.locals.update({k: v for k, v in entry.items() if k != "__comments__"})

    @classmethod
    def from_dir(cls, path: Path) -> Config:
        docs = []
        for tf in sorted(path.glob("*.tf")):
            with tf.open() as fh:
                docs.append(hcl2.load(fh, serialization_options=_OPTIONS))
        return cls(docs)

    @classmethod
    def from_text(cls, text: str) -> Config:
        return cls([hcl2.loads(text, serialization_options=_OPTIONS)])

    def of_type(self, rtype: str) -> dict[str, dict[str, Any]]:
        return self.resources.get(rtype, {})

    def expand(self, value: Any, depth: int = 4) -> str:
        """An expression's text with ``local.X`` references replaced by their own expressions."""
        text = str(value)
        for _ in range(depth):
            text = re.sub(r"local\.([A-Za-z_][A-Za-z0-9_]*)",
                          lambda m: _unwrap(self.locals.get(m.group(1), m.group(0))), text)
        return text

    def variable_default(self, expr: Any) -> Any:
        """The default of the variable an expression is exactly (``${var.x}``), else the value itself."""
        match = REF.match(str(expr))
        if match and re.fullmatch(r"var\.([A-Za-z0-9_]+)", match.group(1).strip()):
            return self.variables[match.group(1).strip()[4:]].get("default")
        return expr


_OPTIONS = hcl2.SerializationOptions(strip_string_quotes=True, explicit_blocks=False)


def _unwrap(value: Any) -> str:
    match = REF.match(str(value))
    return match.group(1) if match else str(value)


def _block(body: dict[str, Any], name: str) -> dict[str, Any] | None:
    blocks = body.get(name) or []
    return blocks[0] if blocks else None


@pytest.fixture(scope="module")
def module() -> Config:
    return Config.from_dir(MODULE)


# ------------------------------------------------------------------------------------------ checks
def check_storage_accounts_hardened(cfg: Config) -> None:
    accounts = cfg.of_type("azurerm_storage_account")
    assert accounts, "no azurerm_storage_account"
    for name, acct in accounts.items():
        assert acct.get("shared_access_key_enabled") is False, f"{name}: shared keys must be disabled"
        assert acct.get("min_tls_version") == "TLS1_2", f"{name}: min_tls_version must be TLS1_2"
        assert acct.get("allow_nested_items_to_be_public") is False, f"{name}: public nested items must be off"
        assert acct.get("https_traffic_only_enabled", True) is True, f"{name}: HTTPS only"


def check_backup_versioning_and_soft_delete(cfg: Config) -> None:
    acct = cfg.of_type("azurerm_storage_account").get("backup")
    assert acct is not None, "no azurerm_storage_account.backup"
    props = _block(acct, "blob_properties")
    assert props is not None, "backup account has no blob_properties"
    assert props.get("versioning_enabled") is True, "versioning must be on"
    for policy in ("delete_retention_policy", "container_delete_retention_policy"):
        block = _block(props, policy)
        assert block is not None, f"{policy} (soft delete) missing"
        days = cfg.variable_default(block.get("days"))
        assert isinstance(days, int) and days >= 1, f"{policy}.days must default to >= 1, got {days!r}"


def _role_assignments(cfg: Config) -> list[tuple[str, str, dict[str, Any]]]:
    """(resource name, role name, body) for each assignment; for_each over a variable expands its default."""
    out = []
    for name, body in cfg.of_type("azurerm_role_assignment").items():
        role = body.get("role_definition_name", "")
        if role == "${each.value}":
            for item in cfg.variable_default(body.get("for_each")) or []:
                out.append((name, item, body))
        else:
            out.append((name, role, body))
    return out


def check_blob_contributor_scoped_to_container(cfg: Config) -> None:
    found = [(n, b) for n, r, b in _role_assignments(cfg) if r == "Storage Blob Data Contributor"]
    assert found, "no Storage Blob Data Contributor assignment"
    for name, body in found:
        scope = _unwrap(body.get("scope", ""))
        assert re.fullmatch(r"azurerm_storage_container\.\w+(\[\d+\])?\.id", scope), (
            f"{name}: Storage Blob Data Contributor must be scoped to a container, not {scope!r}")


def check_secrets_user_scoped_to_secret(cfg: Config) -> None:
    found = [(n, b) for n, r, b in _role_assignments(cfg) if r == "Key Vault Secrets User"]
    assert found, "no Key Vault Secrets User assignment"
    for name, body in found:
        scope = _unwrap(body.get("scope", ""))
        assert re.fullmatch(r"azurerm_key_vault_secret\.\w+(\[\d+\])?\.resource_versionless_id", scope), (
            f"{name}: Key Vault Secrets User must be scoped to the secret, not {scope!r}")


def check_no_broad_roles(cfg: Config) -> None:
    for name, role, body in _role_assignments(cfg):
        assert role not in BROAD_ROLES, f"{name}: broad role {role!r}"
        role_id = str(body.get("role_definition_id", "")).lower()
        assert not any(guid in role_id for guid in BROAD_ROLE_IDS), f"{name}: broad role id {role_id!r}"


def check_schedule_setting(cfg: Config) -> None:
    apps = cfg.of_type("azurerm_function_app_flex_consumption")
    assert apps, "no azurerm_function_app_flex_consumption"
    for name, app in apps.items():
        settings = cfg.expand(app.get("app_settings", ""))
        match = re.search(r'"KAFKA_BACKUP_SCHEDULE"\s*=\s*var\.(\w+)', settings)
        assert match, f"{name}: app setting KAFKA_BACKUP_SCHEDULE (from a variable) missing"
        default = cfg.variables[match.group(1)].get("default")
        assert isinstance(default, str) and len(default.split()) == 6, (
            f"{name}: the schedule must default to a six-field NCRONTAB, got {default!r}")


def check_system_assigned_identity(cfg: Config) -> None:
    apps = cfg.of_type("azurerm_function_app_flex_consumption")
    assert apps, "no azurerm_function_app_flex_consumption"
    for name, app in apps.items():
        identity = _block(app, "identity")
        assert identity is not None and identity.get("type") == "SystemAssigned", (
            f"{name}: identity must be SystemAssigned")
        assert app.get("storage_authentication_type") == "SystemAssignedIdentity", (
            f"{name}: deployment storage must use the managed identity")
        assert "storage_access_key" not in app, f"{name}: no storage access key"


def check_host_storage_by_identity(cfg: Config) -> None:
    for name, app in cfg.of_type("azurerm_function_app_flex_consumption").items():
        settings = cfg.expand(app.get("app_settings", ""))
        assert re.search(r'"AzureWebJobsStorage__accountName"\s*=\s*azurerm_storage_account\.\w+\.name', settings), (
            f"{name}: AzureWebJobsStorage__accountName must name the host account")
        assert '"AzureWebJobsStorage__credential" = "managedidentity"' in settings, (
            f"{name}: AzureWebJobsStorage__credential must be managedidentity")
        assert not re.search(r"AccountKey|primary_access_key|primary_connection_string", settings), (
            f"{name}: no key-based storage connection")


def check_timeout_matches(cfg: Config) -> None:
    for name, app in cfg.of_type("azurerm_function_app_flex_consumption").items():
        settings = cfg.expand(app.get("app_settings", ""))
        ours = re.search(r'"KAFKA_BACKUP_TIMEOUT_SECONDS"\s*=\s*tostring\(var\.(\w+)\)', settings)
        host = re.search(r'"AzureFunctionsJobHost__functionTimeout"\s*=\s*(.+?),\s*"', settings)
        assert ours and host, f"{name}: both KAFKA_BACKUP_TIMEOUT_SECONDS and the host functionTimeout must be set"
        assert f"var.{ours.group(1)}" in host.group(1), (
            f"{name}: host functionTimeout must derive from var.{ours.group(1)}, got {host.group(1)!r}")


def check_write_policy_settings(cfg: Config) -> None:
    """Every run gets the write policy from typed, validated variables with the cost model's defaults:
    without it a scheduled deployment pays a segment and a commit per partition per run."""
    for name, app in cfg.of_type("azurerm_function_app_flex_consumption").items():
        settings = cfg.expand(app.get("app_settings", ""))
        for key, default in (("KAFKA_BACKUP_BACKUP__SEGMENT_MIN_BYTES", 8388608),
                             ("KAFKA_BACKUP_BACKUP__MAX_LAG_SECONDS", 3600)):
            match = re.search(rf'"{key}"\s*=\s*tostring\(var\.(\w+)\)', settings)
            assert match, f"{name}: app setting {key} (from a variable) missing"
            var = cfg.variables.get(match.group(1), {})
            assert var.get("type") == "number" and var.get("default") == default, (
                f"{name}: {key} comes from var.{match.group(1)} with type {var.get('type')!r}, default "
                f"{var.get('default')!r} (want number, {default})")
            assert var.get("description") and var.get("validation"), (
                f"{name}: var.{match.group(1)} has no description or validation")


def check_kafka_password_is_key_vault_reference(cfg: Config) -> None:
    for name, app in cfg.of_type("azurerm_function_app_flex_consumption").items():
        settings = cfg.expand(app.get("app_settings", ""))
        match = re.search(r'"KAFKA_BACKUP_KAFKA__SASL__PASSWORD"\s*=\s*(.+?)\}', settings)
        assert match, f"{name}: KAFKA_BACKUP_KAFKA__SASL__PASSWORD missing"
        assert "@Microsoft.KeyVault(SecretUri=" in match.group(1) and "azurerm_key_vault_secret" in match.group(1), (
            f"{name}: the Kafka password must be a Key Vault reference, got {match.group(1)!r}")


def check_key_vault_hardened(cfg: Config) -> None:
    vaults = cfg.of_type("azurerm_key_vault")
    assert vaults, "no azurerm_key_vault"
    for name, kv in vaults.items():
        assert kv.get("rbac_authorization_enabled") is True, f"{name}: RBAC authorization must be on"
        assert kv.get("purge_protection_enabled") is True, f"{name}: purge protection must be on"
        assert "access_policy" not in kv, f"{name}: no access policies with RBAC"


# ----------------------------------------------------------------------------- deliberately bad HCL
_APP = """
resource "azurerm_function_app_flex_consumption" "this" {
  storage_authentication_type = "SystemAssignedIdentity"
  identity { type = "SystemAssigned" }
  app_settings = local.settings
}
variable "schedule" { default = "0 */15 * * * *" }
variable "timeout" { default = 600 }
"""

# The write policy's variables as the module declares them, with segment_min_bytes' default left open.
_POLICY_VARS = """
variable "backup_segment_min_bytes" {
  description = "Write policy."
  type        = number
  default     = DEFAULT
  validation {
    condition     = var.backup_segment_min_bytes >= 0
    error_message = "backup_segment_min_bytes must be >= 0."
  }
}
variable "backup_max_lag_seconds" {
  description = "RPO."
  type        = number
  default     = 3600
  validation {
    condition     = var.backup_max_lag_seconds > 0
    error_message = "backup_max_lag_seconds must be > 0."
  }
}
"""

BAD: dict[str, tuple[Callable[[Config], None], str]] = {
    "shared_keys_on": (check_storage_accounts_hardened, """
        resource "azurerm_storage_account" "backup" {
          shared_access_key_enabled = true
          min_tls_version = "TLS1_2"
          allow_nested_items_to_be_public = false
        }"""),
    "old_tls": (check_storage_accounts_hardened, """
        resource "azurerm_storage_account" "backup" {
          shared_access_key_enabled = false
          min_tls_version = "TLS1_0"
          allow_nested_items_to_be_public = false
        }"""),
    "public_nested_items": (check_storage_accounts_hardened, """
        resource "azurerm_storage_account" "backup" {
          shared_access_key_enabled = false
          min_tls_version = "TLS1_2"
          allow_nested_items_to_be_public = true
        }"""),
    "no_versioning": (check_backup_versioning_and_soft_delete, """
        resource "azurerm_storage_account" "backup" {
          blob_properties {
            versioning_enabled = false
            delete_retention_policy { days = 7 }
            container_delete_retention_policy { days = 7 }
          }
        }"""),
    "no_container_soft_delete": (check_backup_versioning_and_soft_delete, """
        resource "azurerm_storage_account" "backup" {
          blob_properties {
            versioning_enabled = true
            delete_retention_policy { days = 7 }
          }
        }"""),
    "contributor_on_account": (check_blob_contributor_scoped_to_container, """
        resource "azurerm_role_assignment" "backup" {
          scope                = azurerm_storage_account.backup.id
          role_definition_name = "Storage Blob Data Contributor"
        }"""),
    "contributor_on_resource_group": (check_blob_contributor_scoped_to_container, """
        resource "azurerm_role_assignment" "backup" {
          scope                = data.azurerm_resource_group.this.id
          role_definition_name = "Storage Blob Data Contributor"
        }"""),
    "secrets_user_on_vault": (check_secrets_user_scoped_to_secret, """
        resource "azurerm_role_assignment" "kv" {
          scope                = azurerm_key_vault.this[0].id
          role_definition_name = "Key Vault Secrets User"
        }"""),
    "owner_role": (check_no_broad_roles, """
        resource "azurerm_role_assignment" "x" {
          scope                = azurerm_storage_container.backup.id
          role_definition_name = "Owner"
        }"""),
    "contributor_from_variable": (check_no_broad_roles, """
        variable "roles" { default = ["Storage Blob Data Owner", "Contributor"] }
        resource "azurerm_role_assignment" "x" {
          for_each             = var.roles
          scope                = azurerm_storage_account.host.id
          role_definition_name = each.value
        }"""),
    "contributor_by_id": (check_no_broad_roles, """
        resource "azurerm_role_assignment" "x" {
          scope              = azurerm_storage_account.host.id
          role_definition_id = "/providers/Microsoft.Authorization/roleDefinitions/b24988ac-6180-42a0-ab88-20f7382dd24c"
        }"""),
    "no_schedule": (check_schedule_setting, _APP + """
        locals { settings = { "KAFKA_BACKUP_TIMEOUT_SECONDS" = tostring(var.timeout) } }"""),
    "hard_coded_schedule": (check_schedule_setting, _APP + """
        locals { settings = { "KAFKA_BACKUP_SCHEDULE" = "0 0 * * * *" } }"""),
    "user_assigned": (check_system_assigned_identity, """
        resource "azurerm_function_app_flex_consumption" "this" {
          storage_authentication_type = "SystemAssignedIdentity"
          identity { type = "UserAssigned" }
        }"""),
    "deployment_by_key": (check_system_assigned_identity, """
        resource "azurerm_function_app_flex_consumption" "this" {
          storage_authentication_type = "StorageAccountConnectionString"
          storage_access_key          = azurerm_storage_account.host.primary_access_key
          identity { type = "SystemAssigned" }
        }"""),
    "host_storage_by_key": (check_host_storage_by_identity, _APP + """
        locals { settings = {
          "AzureWebJobsStorage__accountName" = azurerm_storage_account.host.name
          "AzureWebJobsStorage__credential" = "managedidentity"
          "AzureWebJobsStorage" = azurerm_storage_account.host.primary_connection_string
        } }"""),
    "timeouts_differ": (check_timeout_matches, _APP + """
        locals { settings = {
          "AzureFunctionsJobHost__functionTimeout" = "00:30:00",
          "KAFKA_BACKUP_TIMEOUT_SECONDS" = tostring(var.timeout),
        } }"""),
    "write_policy_missing": (check_write_policy_settings, _APP + _POLICY_VARS.replace("DEFAULT", "8388608") + """
        locals { settings = merge({
          "KAFKA_BACKUP_BACKUP__MAX_LAG_SECONDS" = tostring(var.backup_max_lag_seconds)
        }) }"""),
    "max_lag_hard_coded": (check_write_policy_settings, _APP + _POLICY_VARS.replace("DEFAULT", "8388608") + """
        locals { settings = merge({
          "KAFKA_BACKUP_BACKUP__SEGMENT_MIN_BYTES" = tostring(var.backup_segment_min_bytes)
          "KAFKA_BACKUP_BACKUP__MAX_LAG_SECONDS"   = "3600"
        }) }"""),
    "writes_every_run_by_default": (check_write_policy_settings, _APP + _POLICY_VARS.replace("DEFAULT", "0") + """
        locals { settings = merge({
          "KAFKA_BACKUP_BACKUP__SEGMENT_MIN_BYTES" = tostring(var.backup_segment_min_bytes)
          "KAFKA_BACKUP_BACKUP__MAX_LAG_SECONDS"   = tostring(var.backup_max_lag_seconds)
        }) }"""),
    "password_in_clear": (check_kafka_password_is_key_vault_reference, _APP + """
        locals { settings = { "KAFKA_BACKUP_KAFKA__SASL__PASSWORD" = var.password } }"""),
    "vault_with_access_policies": (check_key_vault_hardened, """
        resource "azurerm_key_vault" "this" {
          rbac_authorization_enabled = false
          purge_protection_enabled   = true
        }"""),
}

CHECKS = sorted({check for check, _ in BAD.values()}, key=lambda f: f.__name__)


@pytest.mark.parametrize("check", CHECKS, ids=lambda f: f.__name__)
def test_module_passes(module: Config, check: Callable[[Config], None]) -> None:
    check(module)


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_snippet_fails(case: str) -> None:
    check, text = BAD[case]
    with pytest.raises(AssertionError):
        check(Config.from_text(text))


@pytest.mark.slow  # ~20 s: init copies the 225 MB provider into a fresh data directory
def test_plan_with_mocked_provider(terraform_tools: dict[str, Path], tmp_path: Path) -> None:
    """``tofu test`` (tests/plan.tftest.hcl): the module's expressions, validations and preconditions
    evaluated against the real azurerm schema with a mocked provider (no Azure account needed)."""
    from dev import tools

    work = tmp_path / "azure"
    shutil.copytree(MODULE, work, ignore=shutil.ignore_patterns(".terraform", ".terraform.lock.hcl", "*.tfstate*"))
    env = tools.tofu_env()
    env["TF_DATA_DIR"] = str(tmp_path / "data")
    tofu = str(terraform_tools["tofu"])
    for args in (["init", "-backend=false", "-input=false", "-no-color"], ["test", "-no-color"]):
        done = subprocess.run([tofu, *args], cwd=work, env=env, capture_output=True, text=True, timeout=240)
        assert done.returncode == 0, f"tofu {args[0]} failed:\n{done.stdout}\n{done.stderr}"
    assert re.search(r"Success! (\d+) passed, 0 failed", done.stdout), done.stdout
    assert int(re.search(r"(\d+) passed", done.stdout).group(1)) >= 8, done.stdout


def test_every_check_has_a_bad_snippet() -> None:
    defined = {name for name, obj in globals().items() if name.startswith("check_") and callable(obj)}
    assert defined == {check.__name__ for check in CHECKS}
