"""What the AWS module (``infra/terraform/aws/``) promises, read from its HCL with python-hcl2.

The aws provider cannot be built here (the Go module proxy serves only 2018-2019 versions), so
``tofu validate`` and a plan are out of reach for this module. These checks read the source instead
and hold it to its security claims: least-privilege IAM written out statement by statement,
encryption, TLS-only access, one schedule per shard, logs and alarms.

Each check is a function that raises ``AssertionError`` naming the offending block. It runs on the
real module, and on mutants of it, each with one planted defect (``s3:*``, a secret wildcard, a
schedule without its shard index, ...) that it must reject: since the unmutated module passes, the
mutant fails for that defect, and a check that silently passes everything cannot go unnoticed.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2
import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULE_DIR = ROOT / "infra" / "terraform" / "aws"
EXAMPLES = ("minimal", "complete")

_OPTIONS = hcl2.SerializationOptions(strip_string_quotes=True, explicit_blocks=False)
_DOC_REF = re.compile(r"^\$\{data\.aws_iam_policy_document\.([A-Za-z0-9_]+)(?:\[0\])?\.json\}$")
_ACTION = re.compile(r"^[a-z0-9-]+:[A-Za-z0-9]+$")
# Actions that support no resource-level permissions, so "*" is their only possible resource.
_RESOURCE_LESS_ACTIONS = {
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSubnets",
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
}


# ----------------------------------------------------------------------------------------- model
@dataclass
class Module:
    """The blocks of one Terraform module, merged across its files."""

    resources: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    data: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)
    modules: dict[str, dict[str, Any]] = field(default_factory=dict)
    terraform: list[dict[str, Any]] = field(default_factory=list)
    text: str = ""

    def add(self, parsed: dict[str, Any], text: str) -> None:
        self.text += text + "\n"
        for kind, target in (("resource", self.resources), ("data", self.data)):
            for item in parsed.get(kind, []):
                for rtype, named in item.items():
                    for name, body in named.items():
                        assert name not in target.setdefault(rtype, {}), f"{kind} {rtype}.{name} defined twice"
                        target[rtype][name] = body
        for kind, target in (("variable", self.variables), ("output", self.outputs), ("module", self.modules)):
            for item in parsed.get(kind, []):
                target.update(item)
        for item in parsed.get("locals", []):
            self.locals.update(item)
        self.terraform.extend(parsed.get("terraform", []))

    def resource(self, rtype: str, name: str) -> dict[str, Any]:
        assert name in self.resources.get(rtype, {}), f"resource {rtype}.{name} is missing"
        return self.resources[rtype][name]

    def resolve(self, expr: Any) -> Any:
        """Expand every ``${local.X}`` in a string into the local's own expression (recursively)."""
        for _ in range(20):
            if not isinstance(expr, str):
                return expr
            expanded = re.sub(r"\$\{local\.([A-Za-z0-9_]+)\}", self._local, expr)
            if expanded == expr:
                return expr
            expr = expanded
        raise AssertionError(f"locals refer to each other in a cycle: {expr}")

    def _local(self, match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in self.locals, f"local.{name} is not defined"
        value = self.locals[name]
        return value if isinstance(value, str) else match.group(0)


def _strip_comments(value: Any) -> Any:
    """Drop python-hcl2's ``__comments__`` / ``__inline_comments__`` keys."""
    if isinstance(value, dict):
        return {k: _strip_comments(v) for k, v in value.items() if not k.startswith("__")}
    if isinstance(value, list):
        return [_strip_comments(v) for v in value]
    return value


@functools.lru_cache(maxsize=256)
def _parse(text: str) -> dict[str, Any]:
    """Parse one file's text (cached: mutants re-parse only the file they change)."""
    parsed: dict[str, Any] = _strip_comments(hcl2.loads(text, serialization_options=_OPTIONS))
    return parsed


def load_texts(texts: list[str]) -> Module:
    module = Module()
    for text in texts:
        module.add(_parse(text), text)
    return module


def read_texts(path: Path) -> list[str]:
    files = sorted(path.glob("*.tf"))
    assert files, f"no .tf files in {path}"
    return [tf.read_text() for tf in files]


def load_dir(path: Path) -> Module:
    return load_texts(read_texts(path))


@dataclass
class Statement:
    doc: str
    body: dict[str, Any]

    @property
    def label(self) -> str:
        return f"aws_iam_policy_document.{self.doc} statement {self.body.get('sid', '(no sid)')}"

    @property
    def effect(self) -> str:
        return str(self.body.get("effect", "Allow"))

    @property
    def actions(self) -> list[str]:
        actions = self.body.get("actions")
        assert isinstance(actions, list) and actions, f"{self.label}: actions must be a literal, non-empty list"
        assert all(isinstance(a, str) for a in actions), f"{self.label}: every action must be a literal string"
        return actions

    @property
    def resources(self) -> list[str]:
        res = self.body.get("resources")
        assert res, f"{self.label}: resources are missing"
        return res if isinstance(res, list) else [res]

    def conditions(self) -> dict[str, dict[str, Any]]:
        return {c["variable"]: c for c in self.body.get("condition", [])}


def statements(module: Module, doc: str) -> list[Statement]:
    """A policy document's statements, dynamic ones included (``statement.value`` replaced by
    the ``for_each`` expression it iterates over, so that checks see where resources come from)."""
    assert doc in module.data.get("aws_iam_policy_document", {}), f"aws_iam_policy_document.{doc} is missing"
    body = module.data["aws_iam_policy_document"][doc]
    out = [Statement(doc, s) for s in body.get("statement", [])]
    for dyn in body.get("dynamic", []):
        if "statement" in dyn:
            source = dyn["statement"]["for_each"]
            for content in dyn["statement"]["content"]:
                fixed = {k: _substitute(v, "${statement.value}", source) for k, v in content.items()}
                out.append(Statement(doc, fixed))
    return out


def _substitute(value: Any, old: str, new: str) -> Any:
    if isinstance(value, str):
        return new if value == old else value
    if isinstance(value, list):
        return [_substitute(v, old, new) for v in value]
    return value


def references(expr: str) -> set[str]:
    """The variables and locals an expression refers to."""
    return set(re.findall(r"\b(?:var|local)\.[A-Za-z0-9_]+", expr))


def role_policies(module: Module) -> Iterator[tuple[str, str, list[Statement]]]:
    """(role reference, document name, statements) of every inline role policy."""
    for name, body in module.resources.get("aws_iam_role_policy", {}).items():
        m = _DOC_REF.match(str(body.get("policy", "")))
        assert m, f"aws_iam_role_policy.{name}: policy must come from an aws_iam_policy_document (checkable)"
        yield str(body["role"]), m.group(1), statements(module, m.group(1))


def identity_statements(module: Module) -> list[Statement]:
    return [s for _, _, stmts in role_policies(module) for s in stmts]


def key_policy_docs(module: Module) -> set[str]:
    docs = set()
    for name, body in module.resources.get("aws_kms_key", {}).items():
        m = _DOC_REF.match(str(body.get("policy", "")))
        assert m, f"aws_kms_key.{name}: key policy must come from an aws_iam_policy_document"
        docs.add(m.group(1))
    return docs


# ----------------------------------------------------------------------------------------- checks
def check_no_managed_or_inline_json_policies(m: Module) -> None:
    """Every permission is a checkable policy document: no managed-policy attachments, no jsonencode."""
    for rtype in ("aws_iam_role_policy_attachment", "aws_iam_policy_attachment", "aws_iam_policy"):
        assert rtype not in m.resources, f"{rtype} is used: write the permissions out as role policy documents"
    for name, body in m.resources.get("aws_iam_role", {}).items():
        assert "managed_policy_arns" not in body, f"aws_iam_role.{name} attaches managed policies"
        assert _DOC_REF.match(str(body.get("assume_role_policy", ""))), \
            f"aws_iam_role.{name}: trust policy must come from an aws_iam_policy_document"
    list(role_policies(m))
    assert m.resources.get("aws_iam_role_policy"), "no role policies found"


def check_identity_actions_explicit(m: Module) -> None:
    """Allowed actions are named one by one: no "*", no "s3:*", no "Get*"."""
    for s in identity_statements(m):
        assert s.effect == "Allow", f"{s.label}: identity policies here only allow"
        for action in s.actions:
            assert _ACTION.match(action), f"{s.label}: action {action!r} is not one explicit action"


def check_no_wildcard_action_on_wildcard_resource(m: Module) -> None:
    """No allow of a wildcard action on "*" (key policies, where "*" means the key, are checked apart)."""
    keys = key_policy_docs(m)
    for doc in m.data.get("aws_iam_policy_document", {}):
        if doc in keys:
            continue
        for s in statements(m, doc):
            if s.effect != "Allow":
                continue
            wild = [a for a in s.actions if "*" in a]
            assert not (wild and "*" in s.resources), f"{s.label}: {wild} allowed on every resource"


def check_star_resources_only_where_unavoidable(m: Module) -> None:
    for s in identity_statements(m):
        if "*" in s.resources:
            extra = set(s.actions) - _RESOURCE_LESS_ACTIONS
            assert not extra, f"{s.label}: {sorted(extra)} support resource ARNs, yet the resource is '*'"


def check_key_policy(m: Module) -> None:
    """Only the account root (the default key policy, which defers to IAM) gets kms:*; services get
    explicit actions under a condition."""
    docs = key_policy_docs(m)
    assert docs, "no KMS key policy found"
    for doc in docs:
        for s in statements(m, doc):
            principals = s.body.get("principals", [])
            assert principals, f"{s.label}: a key policy statement needs principals"
            if any("*" in a for a in s.actions):
                assert s.actions == ["kms:*"], f"{s.label}: wildcard actions other than the root delegation"
                ids = [i for p in principals for i in p["identifiers"]]
                assert len(principals) == 1 and principals[0]["type"] == "AWS" and len(ids) == 1 \
                    and re.fullmatch(r"arn:\$\{local\.partition\}:iam::\$\{local\.account_id\}:root", ids[0]), \
                    f"{s.label}: kms:* may go to this account's root only, not {ids}"
            else:
                for action in s.actions:
                    assert _ACTION.match(action), f"{s.label}: action {action!r} is not explicit"
                assert s.body.get("condition"), f"{s.label}: a service principal's grant needs a condition"


def check_s3_statements(m: Module) -> None:
    """S3 access is to the bucket (listing, under the prefix only) or to objects under the prefix."""
    assert m.resolve("${local.bucket_arn}") == "${aws_s3_bucket.this.arn}", "local.bucket_arn is not the bucket"
    assert m.resolve("${local.s3_prefix_arn}") == "${aws_s3_bucket.this.arn}/${var.storage_prefix}/*", \
        "local.s3_prefix_arn is not bucket/prefix/*"
    found = 0
    for s in identity_statements(m):
        s3 = [a for a in s.actions if a.startswith("s3:")]
        if not s3:
            continue
        found += 1
        assert s3 == s.actions, f"{s.label}: mixes S3 with other services"
        resolved = [m.resolve(r) for r in s.resources]
        if "s3:ListBucket" in s3:
            assert s3 == ["s3:ListBucket"] and resolved == ["${aws_s3_bucket.this.arn}"], \
                f"{s.label}: ListBucket must stand alone, on the bucket"
            prefix = s.conditions().get("s3:prefix")
            assert prefix and prefix["test"] == "StringLike" and prefix["values"] == \
                ["${var.storage_prefix}", "${var.storage_prefix}/*"], f"{s.label}: listing not limited to the prefix"
        else:
            assert resolved == ["${aws_s3_bucket.this.arn}/${var.storage_prefix}/*"], \
                f"{s.label}: object actions on {resolved}, not on bucket/prefix/*"
            assert not {"s3:PutBucketPolicy", "s3:DeleteBucket", "s3:PutObjectAcl"} & set(s3), f"{s.label}"
    assert found >= 2, "expected a listing and an object statement for S3"


def check_kms_statements(m: Module) -> None:
    """KMS use is on the bucket key or the secret's key only, and only through S3 / Secrets Manager."""
    expected = {"s3": {"local.kms_key_arn"}, "secretsmanager": {"var.sasl_password_secret_kms_key_arn"}}
    found = 0
    for s in identity_statements(m):
        if not any(a.startswith("kms:") for a in s.actions):
            continue
        found += 1
        assert set(s.actions) <= {"kms:Decrypt", "kms:GenerateDataKey", "kms:Encrypt"}, f"{s.label}: {s.actions}"
        via = s.conditions().get("kms:ViaService")
        assert via and via["test"] == "StringEquals" and len(via["values"]) == 1, f"{s.label}: no kms:ViaService"
        service = via["values"][0].split(".")[0]
        assert service in expected, f"{s.label}: KMS through unexpected service {service}"
        assert via["values"][0] == f"{service}.${{local.region}}.${{local.dns_suffix}}", f"{s.label}: {via['values']}"
        refs = {r for res in s.resources for r in references(res)}
        assert refs == expected[service] and all(res.startswith("${") for res in s.resources), \
            f"{s.label}: KMS through {service} on {s.resources}, not the one key"
    assert found, "no KMS statement for the bucket key"


def check_secret_statements(m: Module) -> None:
    """The function may read the one SASL secret, nothing else in Secrets Manager."""
    found = 0
    for s in identity_statements(m):
        sm = [a for a in s.actions if a.startswith("secretsmanager:")]
        if not sm:
            continue
        found += 1
        assert sm == s.actions == ["secretsmanager:GetSecretValue"], f"{s.label}: {s.actions}"
        assert s.resources == ["${var.sasl_password_secret_arn}"], f"{s.label}: secret resources {s.resources}"
    assert found == 1, f"expected one Secrets Manager statement, found {found}"


def check_kafka_statements(m: Module) -> None:
    """MSK IAM: connect to the cluster, read topics, describe groups; nothing that writes."""
    allowed = {
        "${var.msk_cluster_arn}": {"kafka-cluster:Connect", "kafka-cluster:DescribeCluster"},
        "local.msk_topic_arns": {"kafka-cluster:DescribeTopic", "kafka-cluster:ReadData",
                                 "kafka-cluster:DescribeTopicDynamicConfiguration"},
        "local.msk_group_arns": {"kafka-cluster:DescribeGroup"},
    }
    # Topic ARNs: cluster ARN with :topic/, then each topic name or IAM pattern; groups likewise.
    loops = (("msk_topic_arns", "topic", "t in distinct(concat(var.topics, var.msk_topic_iam_patterns))"),
             ("msk_group_arns", "group", "g in var.msk_group_iam_patterns"))
    for name, kind, loop in loops:
        expr = str(m.locals.get(name, ""))
        prefix = str(m.locals.get(f"msk_{kind}_arn_prefix", ""))
        var = loop[0]
        assert f"for {loop} : \"${{local.msk_{kind}_arn_prefix}}/${{{var}}}\"" in expr, \
            f"local.{name} is not the cluster's {kind} ARN + each name: {expr}"
        assert f'replace(var.msk_cluster_arn, ":cluster/", ":{kind}/")' in prefix, \
            f"local.msk_{kind}_arn_prefix is not derived from var.msk_cluster_arn"
    covered: set[str] = set()
    for s in identity_statements(m):
        kc = [a for a in s.actions if a.startswith("kafka-cluster:")]
        if not kc:
            continue
        assert kc == s.actions, f"{s.label}: mixes kafka-cluster with other services"
        for res in s.resources:
            keys = [k for k in allowed if k in res]
            assert len(keys) == 1, f"{s.label}: resource {res!r} is not the cluster, its topics or its groups"
            extra = set(kc) - allowed[keys[0]]
            assert not extra, f"{s.label}: {sorted(extra)} not allowed on {keys[0]}"
            covered.add(keys[0])
    assert covered == set(allowed), f"kafka-cluster statements cover only {sorted(covered)}"


def check_bucket_encryption_and_public_access(m: Module) -> None:
    sse = m.resource("aws_s3_bucket_server_side_encryption_configuration", "this")
    default = sse["rule"][0]["apply_server_side_encryption_by_default"][0]
    assert default["sse_algorithm"] == "aws:kms", f"SSE algorithm is {default['sse_algorithm']}"
    assert m.resolve(default.get("kms_master_key_id")), "SSE-KMS without a key"
    pab = m.resource("aws_s3_bucket_public_access_block", "this")
    for flag in ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets"):
        assert pab.get(flag) is True, f"aws_s3_bucket_public_access_block.this: {flag} is not true"
    own = m.resource("aws_s3_bucket_ownership_controls", "this")
    assert own["rule"][0]["object_ownership"] == "BucketOwnerEnforced", "ACLs are not disabled"
    ver = m.resource("aws_s3_bucket_versioning", "this")
    assert ver["versioning_configuration"][0]["status"] == "Enabled", "versioning is off"


def check_tls_only_bucket_policy(m: Module) -> None:
    policy = m.resource("aws_s3_bucket_policy", "this")
    ref = _DOC_REF.match(str(policy["policy"]))
    assert ref, "aws_s3_bucket_policy.this: policy must come from a policy document"
    for s in statements(m, ref.group(1)):
        cond = s.conditions().get("aws:SecureTransport")
        if s.effect == "Deny" and cond and cond["test"] == "Bool" and cond["values"] == ["false"]:
            assert s.actions == ["s3:*"], f"{s.label}: must deny every S3 action over plain HTTP"
            covered = [m.resolve(r) for r in s.resources]
            assert covered == ["${aws_s3_bucket.this.arn}", "${aws_s3_bucket.this.arn}/*"], \
                f"{s.label}: must cover the bucket and every object"
            assert s.body["principals"] == [{"type": "*", "identifiers": ["*"]}], f"{s.label}: must apply to anyone"
            return
    raise AssertionError("no Deny statement on aws:SecureTransport = false in the bucket policy")


def check_lifecycle(m: Module) -> None:
    lc = m.resource("aws_s3_bucket_lifecycle_configuration", "this")
    rules = lc.get("rule", [])
    assert any("abort_incomplete_multipart_upload" in r for r in rules), "no rule aborts incomplete multipart uploads"


def check_schedule_per_shard(m: Module) -> None:
    """One schedule per shard, each telling the function its shard index and the shard count."""
    schedules = m.resources.get("aws_scheduler_schedule", {})
    assert len(schedules) == 1, f"expected one aws_scheduler_schedule block, found {sorted(schedules)}"
    (name, body), = schedules.items()
    label = f"aws_scheduler_schedule.{name}"
    if "count" in body:
        assert body["count"] == "${var.shards}", f"{label}: count is {body['count']!r}, not var.shards"
        index = "count.index"
    else:
        assert body.get("for_each") in ("${range(var.shards)}", "${toset(range(var.shards))}"), \
            f"{label}: neither count nor for_each over var.shards"
        index = "each.value"
    target = body["target"][0]
    payload = re.sub(r"\s+", "", str(target["input"]))
    assert payload.startswith("${jsonencode("), f"{label}: input must be jsonencode(...)"
    assert f"shard={{index={index},count=var.shards}}" in payload, \
        f"{label}: input does not carry backup.shard.index/count: {target['input']}"
    assert body["flexible_time_window"][0]["mode"] == "OFF", f"{label}: flexible time window is on"
    assert target["arn"] == "${aws_lambda_function.this.arn}", f"{label}: target is not this module's function"
    assert "retry_policy" in target and "dead_letter_config" in target, f"{label}: no retry policy or DLQ"


def check_scheduler_role_invokes_only_function(m: Module) -> None:
    schedules = m.resources.get("aws_scheduler_schedule", {})
    roles = {str(b["target"][0]["role_arn"]) for b in schedules.values()}
    assert len(roles) == 1, f"schedules use roles {roles}"
    role = re.fullmatch(r"\$\{aws_iam_role\.([A-Za-z0-9_]+)\.arn\}", roles.pop())
    assert role, "the schedule's role is not a role of this module"
    invoke = False
    for role_ref, _, stmts in role_policies(m):
        if role_ref != f"${{aws_iam_role.{role.group(1)}.id}}":
            continue
        for s in stmts:
            for action in s.actions:
                if action.startswith("lambda:"):
                    assert action == "lambda:InvokeFunction", f"{s.label}: {action}"
                    assert s.resources == ["${aws_lambda_function.this.arn}"], \
                        f"{s.label}: may invoke {s.resources}, not only this function"
                    invoke = True
                else:
                    assert action == "sqs:SendMessage" and s.resources == ["${aws_sqs_queue.dlq.arn}"], \
                        f"{s.label}: the scheduler role may only invoke and dead-letter, not {action}"
    assert invoke, "the scheduler role cannot invoke the function"


def check_log_group(m: Module) -> None:
    lg = m.resource("aws_cloudwatch_log_group", "this")
    retention = lg.get("retention_in_days")
    assert retention, "log retention is not set (logs would be kept forever)"
    if isinstance(retention, str):
        var = re.fullmatch(r"\$\{var\.([a-z0-9_]+)\}", retention)
        assert var and isinstance(m.variables[var.group(1)].get("default"), int), "retention has no default"
    fn = m.resource("aws_lambda_function", "this")
    logging = fn["logging_config"][0]
    assert logging["log_format"] == "JSON", "function logs are not JSON"
    assert logging["log_group"] == "${aws_cloudwatch_log_group.this.name}", "function logs to another group"


def check_alarms(m: Module) -> None:
    alarms = m.resources.get("aws_cloudwatch_metric_alarm", {})
    by_metric = {b.get("metric_name"): (n, b) for n, b in alarms.items() if "metric_name" in b}
    for metric, namespace in (("Errors", "AWS/Lambda"), ("GapOffsets", "${var.metrics_namespace}"),
                              ("LagRecords", "${var.metrics_namespace}"), ("RpoSeconds", "${var.metrics_namespace}")):
        assert metric in by_metric, f"no alarm on {metric}"
        name, body = by_metric[metric]
        assert body["namespace"] == namespace, f"aws_cloudwatch_metric_alarm.{name}: namespace {body['namespace']}"
        assert body["comparison_operator"] == "GreaterThanThreshold", f"aws_cloudwatch_metric_alarm.{name}"
    assert by_metric["Errors"][1]["threshold"] == 0 and by_metric["GapOffsets"][1]["threshold"] == 0, \
        "errors and gaps must alarm on any occurrence"
    assert by_metric["LagRecords"][1]["threshold"] == "${var.lag_alarm_threshold_records}", "lag threshold"
    assert by_metric["RpoSeconds"][1]["threshold"] == "${2 * var.max_lag_seconds}", \
        f"RPO threshold {by_metric['RpoSeconds'][1]['threshold']!r} is not twice var.max_lag_seconds"
    for metric in ("GapOffsets", "LagRecords", "RpoSeconds"):
        dims = by_metric[metric][1]["dimensions"]
        assert set(dims) == {"service", "shard"}, f"{metric} alarm dimensions {sorted(dims)} != service, shard"
    breaching = [n for n, b in alarms.items() if b.get("treat_missing_data") == "breaching"]
    assert breaching, "no alarm fires when runs stop (treat_missing_data = breaching)"


def check_variables_and_outputs_documented(m: Module) -> None:
    for name, body in m.variables.items():
        assert body.get("description"), f"variable {name} has no description"
        assert body.get("type"), f"variable {name} has no type"
        keys = [k for k in body if k in ("description", "type", "default")]
        assert keys == sorted(keys, key=("description", "type", "default").index), \
            f"variable {name}: order is {keys}, not description, type, default"
    for name, body in m.outputs.items():
        assert body.get("description"), f"output {name} has no description"


def check_versions(m: Module) -> None:
    assert m.terraform, "no terraform block"
    tf = m.terraform[0]
    assert str(tf.get("required_version", "")).startswith(">="), "required_version is not a lower bound"
    providers = {k: v for p in tf["required_providers"] for k, v in p.items()}
    for name, spec in providers.items():
        assert re.fullmatch(r">= ?[0-9.]+", spec["version"]), \
            f"provider {name}: {spec['version']!r} is not a lower bound"


def check_nothing_hardcoded(m: Module) -> None:
    code = "\n".join(line.split("#", 1)[0] for line in m.text.splitlines())
    assert not re.search(r"arn:aws(-cn|-us-gov)?:", code), "hard-coded partition in an ARN (use data.aws_partition)"
    region = re.search(r"\b(us|eu|ap|sa|ca|me|af|il|mx|cn)-(north|south|east|west|central|northeast|southeast|"
                        r"northwest|southwest)-\d\b", code)
    assert not region, f"hard-coded region {region.group(0) if region else ''}"
    assert not re.search(r"\b\d{12}\b", code), "hard-coded account id"


def check_function_environment(m: Module) -> None:
    """The function contract's settings, built from typed variables, secrets as references."""
    env = str(m.resolve(m.resource("aws_lambda_function", "this")["environment"][0]["variables"]))
    for key, source in (
        ("KAFKA_BACKUP_KAFKA__BOOTSTRAP_SERVERS", "var.bootstrap_servers"),
        ("KAFKA_BACKUP_KAFKA__SECURITY_PROTOCOL", "var.security_protocol"),
        ("KAFKA_BACKUP_STORAGE__URL", "local.storage_url"),
        ("KAFKA_BACKUP_BACKUP__TOPICS", "var.topics"),
        ("KAFKA_BACKUP_BACKUP__TOPIC_PATTERNS", "var.topic_patterns"),
        ("KAFKA_BACKUP_KAFKA__SASL__MECHANISM", "var.sasl_mechanism"),
        ("KAFKA_BACKUP_KAFKA__SASL__USERNAME", "var.sasl_username"),
        ("KAFKA_BACKUP_KAFKA__SASL__PASSWORD", "local.secret_ref"),
        ("KAFKA_BACKUP_DEADLINE_MARGIN_SECONDS", "var.deadline_margin_seconds"),
    ):
        value = re.search(rf"\b{key} = (.+?)(?:, [A-Z_]+ = |\}})", env)
        assert value and source in value.group(1), f"environment lacks {key} from {source}"
    ref = str(m.locals.get("secret_ref", ""))
    assert "secretref:aws-secretsmanager:" in ref and "var.sasl_password_secret_arn" in ref, \
        "the SASL password is not passed as a Secrets Manager reference"
    assert "POWERTOOLS_METRICS_NAMESPACE = var.metrics_namespace" in env, "metrics namespace not passed"


def check_write_policy_environment(m: Module) -> None:
    """The write policy reaches every run, from typed variables whose defaults are the cost model's:
    without it a scheduled deployment pays a segment and a commit per partition per run."""
    env = str(m.resolve(m.resource("aws_lambda_function", "this")["environment"][0]["variables"]))
    for key, var, default in (("KAFKA_BACKUP_BACKUP__SEGMENT_MIN_BYTES", "segment_min_bytes", 8388608),
                              ("KAFKA_BACKUP_BACKUP__MAX_LAG_SECONDS", "max_lag_seconds", 3600)):
        times = len(re.findall(rf"\b{key} = ", env))
        assert times == 1, f"{key} is set {times} times in the environment, want exactly once"
        value = re.search(rf"\b{key} = (.+?)(?:, [A-Z_]+ = |\}})", env)
        assert value and value.group(1) == f"tostring(var.{var})", \
            f"environment lacks {key} = tostring(var.{var}): {value.group(1) if value else 'missing'}"
        # Not inside a conditional: the policy is on in every deployment unless the variable turns it off.
        opening = env[:value.start()].rsplit("{", 1)[0].rstrip()
        assert opening.endswith((",", "merge(")), f"{key} is set only under a condition"
        body = m.variables.get(var)
        assert body is not None, f"variable {var} is missing"
        assert body.get("type") == "number" and body.get("default") == default, \
            f"variable {var}: type {body.get('type')!r}, default {body.get('default')!r} (want number, {default})"
        assert body.get("validation"), f"variable {var} has no validation"


def check_checkov_skips_justified(m: Module) -> None:
    for line in m.text.splitlines():
        if "checkov:skip" in line:
            assert re.search(r"#checkov:skip=CKV2?_AWS_\d+:\S.{30,}", line), \
                f"checkov skip without a reason: {line.strip()}"


CHECKS: list[Callable[[Module], None]] = [
    check_no_managed_or_inline_json_policies,
    check_identity_actions_explicit,
    check_no_wildcard_action_on_wildcard_resource,
    check_star_resources_only_where_unavoidable,
    check_key_policy,
    check_s3_statements,
    check_kms_statements,
    check_secret_statements,
    check_kafka_statements,
    check_bucket_encryption_and_public_access,
    check_tls_only_bucket_policy,
    check_lifecycle,
    check_schedule_per_shard,
    check_scheduler_role_invokes_only_function,
    check_log_group,
    check_alarms,
    check_variables_and_outputs_documented,
    check_versions,
    check_nothing_hardcoded,
    check_function_environment,
    check_write_policy_environment,
    check_checkov_skips_justified,
]


# ----------------------------------------------------------------------------------------- the real module
@pytest.fixture(scope="module")
def module() -> Module:
    return load_dir(MODULE_DIR)


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_module(module: Module, check: Callable[[Module], None]) -> None:
    check(module)


# ----------------------------------------------------------------------------------------- each check can fail
# Each mutation plants one defect in the real module's text (old -> new, every occurrence; old ""
# appends new). The unmutated module passes every check (test_module), so a check that rejects the
# mutant rejects it for that defect.
_ADMIN = """
resource "aws_iam_role_policy_attachment" "admin" {
  role       = aws_iam_role.function.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/AdministratorAccess"
}
"""


def _any(service: str, rest: str) -> str:
    """An ARN covering many resources of this account and region."""
    return "arn:${local.partition}:" + service + ":${local.region}:${local.account_id}:" + rest


MUTATIONS: list[tuple[Callable[[Module], None], str, str, str]] = [
    (check_no_managed_or_inline_json_policies, "managed policy attached", "", _ADMIN),
    (check_no_managed_or_inline_json_policies, "inline jsonencode policy",
     "policy = data.aws_iam_policy_document.s3.json",
     'policy = jsonencode({ Statement = [{ Effect = "Allow", Action = "s3:*", Resource = "*" }] })'),
    (check_identity_actions_explicit, "s3:*", '"s3:DeleteObject",', '"s3:*",'),
    (check_identity_actions_explicit, "Get* pattern", '"s3:GetObject",', '"s3:Get*",'),
    (check_identity_actions_explicit, "actions from a variable",
     'actions   = ["sqs:SendMessage"]\n    resources = [aws_sqs_queue.dlq.arn]',
     "actions   = var.dlq_actions\n    resources = [aws_sqs_queue.dlq.arn]"),
    (check_no_wildcard_action_on_wildcard_resource, "xray:* on *",
     'actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]', 'actions   = ["xray:*"]'),
    (check_star_resources_only_where_unavoidable, "object actions on *",
     "resources = [local.s3_prefix_arn]", 'resources = ["*"]'),
    (check_key_policy, "key open to every principal",
     'identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]', 'identifiers = ["*"]'),
    (check_key_policy, "wildcard for CloudWatch Logs", '"kms:DescribeKey",', '"kms:Describe*",'),
    (check_key_policy, "CloudWatch Logs for every log group",
     'test     = "ArnEquals"\n      variable = "kms:EncryptionContext:aws:logs:arn"\n'
     '      values   = [local.log_group_arn]',
     'test     = "ArnLike"\n      variable = "kms:EncryptionContext:aws:logs:arn"\n      values   = ["*"]\n    }\n'
     '  }\n  statement {\n    actions   = ["kms:Decrypt"]\n    resources = ["*"]\n    principals {\n'
     '      type        = "Service"\n      identifiers = ["logs.amazonaws.com"]'),
    (check_s3_statements, "objects of the whole bucket",
     "resources = [local.s3_prefix_arn]", 'resources = ["${local.bucket_arn}/*"]'),
    (check_s3_statements, "listing the whole bucket",
     'values   = [var.storage_prefix, "${var.storage_prefix}/*"]', 'values   = ["*"]'),
    (check_s3_statements, "prefix local widened",
     's3_prefix_arn = "${aws_s3_bucket.this.arn}/${var.storage_prefix}/*"',
     's3_prefix_arn = "${aws_s3_bucket.this.arn}/*"'),
    (check_kms_statements, "bucket key through any service",
     'values   = ["s3.${local.region}.${local.dns_suffix}"]', 'values   = ["sqs.${local.region}.${local.dns_suffix}"]'),
    (check_kms_statements, "every key in the account",
     "resources = [local.kms_key_arn]", f'resources = ["{_any("kms", "key/*")}"]'),
    (check_secret_statements, "every secret", "resources = [var.sasl_password_secret_arn]",
     f'resources = ["{_any("secretsmanager", "secret:*")}"]'),
    (check_secret_statements, "secret listing", 'actions   = ["secretsmanager:GetSecretValue"]',
     'actions   = ["secretsmanager:GetSecretValue", "secretsmanager:ListSecrets"]'),
    (check_kafka_statements, "write to topics", '"kafka-cluster:ReadData",', '"kafka-cluster:WriteData",'),
    (check_kafka_statements, "every cluster", "resources = [var.msk_cluster_arn]",
     f'resources = ["{_any("kafka", "cluster/*")}"]'),
    (check_kafka_statements, "every topic of the cluster", '"${local.msk_topic_arn_prefix}/${t}"',
     '"${local.msk_topic_arn_prefix}/*"'),
    (check_bucket_encryption_and_public_access, "AES256", 'sse_algorithm     = "aws:kms"',
     'sse_algorithm     = "AES256"'),
    (check_bucket_encryption_and_public_access, "public policy allowed", "block_public_policy     = true",
     "block_public_policy     = false"),
    (check_tls_only_bucket_policy, "TLS rule misses the objects",
     'resources = [local.bucket_arn, "${local.bucket_arn}/*"]', "resources = [local.bucket_arn]"),
    (check_tls_only_bucket_policy, "TLS rule not a deny", 'sid       = "DenyInsecureTransport"\n    effect    = "Deny"',
     'sid       = "DenyInsecureTransport"\n    effect    = "Allow"'),
    (check_lifecycle, "no multipart abort", "abort_incomplete_multipart_upload {", "noncurrent_version_transition {"),
    (check_schedule_per_shard, "one schedule for all shards", "count = var.shards\n\n  name", "count = 1\n\n  name"),
    (check_schedule_per_shard, "input without the shard index", "index = count.index", "index = 0"),
    (check_scheduler_role_invokes_only_function, "invoke any function",
     'actions   = ["lambda:InvokeFunction"]\n    resources = [aws_lambda_function.this.arn]',
     f'actions   = ["lambda:InvokeFunction"]\n    resources = ["{_any("lambda", "function:*")}"]'),
    (check_scheduler_role_invokes_only_function, "scheduler may update code",
     'actions   = ["lambda:InvokeFunction"]', 'actions   = ["lambda:InvokeFunction", "lambda:UpdateFunctionCode"]'),
    (check_log_group, "logs kept forever", "retention_in_days = var.log_retention_in_days", "retention_in_days = 0"),
    (check_log_group, "text logs", 'log_format            = "JSON"', 'log_format            = "Text"'),
    (check_alarms, "no gap alarm", 'metric_name       = "GapOffsets"', 'metric_name       = "Records"'),
    (check_alarms, "no lag alarm", 'metric_name       = "LagRecords"', 'metric_name       = "BytesStored"'),
    (check_alarms, "no RPO alarm", 'metric_name       = "RpoSeconds"', 'metric_name       = "RunSeconds"'),
    (check_alarms, "RPO threshold not tied to max_lag_seconds", "threshold           = 2 * var.max_lag_seconds",
     "threshold           = 86400"),
    (check_alarms, "nothing fires when runs stop", 'treat_missing_data  = "breaching"',
     'treat_missing_data  = "notBreaching"'),
    (check_variables_and_outputs_documented, "undocumented variable",
     '  description = "Tags added to every resource that takes tags."\n', ""),
    (check_variables_and_outputs_documented, "undocumented output",
     '  description = "ARN of the backup bucket."\n', ""),
    (check_versions, "upper bound", 'version = ">= 5.100"', 'version = "~> 5.100"'),
    (check_nothing_hardcoded, "hard-coded partition", "arn:${local.partition}:logs:", "arn:aws:logs:"),
    (check_nothing_hardcoded, "hard-coded region", '"s3.${local.region}.${local.dns_suffix}"',
     '"s3.eu-west-1.amazonaws.com"'),
    (check_function_environment, "password as a plain ARN", '"secretref:aws-secretsmanager:%s%s"', '"%s%s"'),
    (check_function_environment, "bootstrap servers under another name",
     "KAFKA_BACKUP_KAFKA__BOOTSTRAP_SERVERS =", "KAFKA_BOOTSTRAP_SERVERS ="),
    (check_write_policy_environment, "segment_min_bytes under another name",
     "KAFKA_BACKUP_BACKUP__SEGMENT_MIN_BYTES", "KAFKA_BACKUP_SEGMENT_MIN_BYTES"),
    (check_write_policy_environment, "max lag hard-coded", "tostring(var.max_lag_seconds)", '"3600"'),
    (check_write_policy_environment, "policy only for one shard",
     "    {\n      KAFKA_BACKUP_BACKUP__SEGMENT_MIN_BYTES",
     "    var.shards > 1 ? {} : {\n      KAFKA_BACKUP_BACKUP__SEGMENT_MIN_BYTES"),
    (check_write_policy_environment, "policy overridden by a later entry",
     "tostring(var.max_lag_seconds)\n    },",
     "tostring(var.max_lag_seconds)\n    },\n    { KAFKA_BACKUP_BACKUP__SEGMENT_MIN_BYTES = \"0\" },"),
    (check_write_policy_environment, "writes every run by default", "default     = 8388608", "default     = 0"),
    (check_checkov_skips_justified, "skip without a reason",
     "#checkov:skip=CKV_AWS_144:", "#checkov:skip=CKV_AWS_144 "),
]


def mutate(texts: list[str], old: str, new: str) -> list[str]:
    if not old:
        return [*texts, new]
    assert any(old in t for t in texts), f"mutation target not found (the module changed?): {old!r}"
    return [t.replace(old, new) for t in texts]


@pytest.fixture(scope="module")
def module_texts() -> list[str]:
    return read_texts(MODULE_DIR)


@pytest.mark.parametrize(("check", "old", "new"), [(c, o, n) for c, _, o, n in MUTATIONS],
                         ids=[f"{c.__name__.removeprefix('check_')}-{why}" for c, why, _, _ in MUTATIONS])
def test_check_rejects_mutant(check: Callable[[Module], None], old: str, new: str, module_texts: list[str]) -> None:
    mutant = load_texts(mutate(module_texts, old, new))
    with pytest.raises(AssertionError):
        check(mutant)


def test_every_check_has_a_mutant() -> None:
    assert {c.__name__ for c in CHECKS} <= {c.__name__ for c, *_ in MUTATIONS}


# ----------------------------------------------------------------------------------------- examples
def _module_calls(example: Module) -> list[dict[str, Any]]:
    calls = [b for b in example.modules.values() if b.get("source") == "../.."]
    assert calls, "the example does not call the module with source ../.."
    return calls


def check_example(example: Module, module: Module) -> None:
    """An example passes only inputs the module has, and every input the module requires."""
    required = {n for n, b in module.variables.items() if "default" not in b}
    for call in _module_calls(example):
        unknown = set(call) - set(module.variables) - {"source"}
        assert not unknown, f"example passes unknown inputs {sorted(unknown)}"
        assert required <= set(call), f"example misses required inputs {sorted(required - set(call))}"
    check_versions(example)
    check_variables_and_outputs_documented(example)
    check_nothing_hardcoded(example)


def check_minimal_example(example: Module, module: Module) -> None:
    """The minimal example sets only the required inputs, plus the topics to back up."""
    check_example(example, module)
    required = {n for n, b in module.variables.items() if "default" not in b}
    (call,) = _module_calls(example)
    given = set(call) - {"source"}
    assert given == required | {"topics"}, f"minimal example sets {sorted(given)}, required are {sorted(required)}"


def check_complete_example(example: Module, module: Module) -> None:
    """The complete example shows MSK IAM + VPC, a SCRAM secret, 4 shards, Object Lock and SNS."""
    check_example(example, module)
    calls = _module_calls(example)
    merged: dict[str, Any] = {}
    for call in calls:
        for key, value in call.items():
            merged.setdefault(key, value)
    for key in ("msk_cluster_arn", "vpc_subnet_ids", "vpc_security_group_ids", "sasl_password_secret_arn",
                "alarm_sns_topic_arn"):
        assert key in merged, f"the complete example does not set {key}"
    mechanisms = {c.get("sasl_mechanism") for c in calls}
    assert "AWS_MSK_IAM" in mechanisms and mechanisms & {"SCRAM-SHA-256", "SCRAM-SHA-512"}, \
        f"MSK IAM and SCRAM are not both shown: {mechanisms}"
    assert any(c.get("shards") == 4 for c in calls), "no module call with 4 shards"
    assert any(c.get("object_lock_enabled") is True for c in calls), "no module call with Object Lock"


EXAMPLE_CHECKS = {"minimal": check_minimal_example, "complete": check_complete_example}


@pytest.mark.parametrize("name", EXAMPLES)
def test_example(name: str, module: Module) -> None:
    EXAMPLE_CHECKS[name](load_dir(MODULE_DIR / "examples" / name), module)


@pytest.mark.parametrize(("name", "old", "new"), [
    ("minimal", "  topics            = var.topics\n", "  topics            = var.topics\n  shards = 4\n"),
    ("minimal", "  package_path      = var.package_path\n", ""),
    ("complete", "  shards                          = 4\n", ""),
    ("complete", 'sasl_mechanism                   = "SCRAM-SHA-512"', 'sasl_mechanism                   = "PLAIN"'),
    ("complete", "  object_lock_enabled                = true\n", "  object_lock_enabled                = true\n"
     "  object_lock_retention_days = 1\n"),
], ids=["minimal-sets-optional-input", "minimal-misses-required", "complete-one-shard", "complete-no-scram",
        "complete-unknown-input"])
def test_example_check_rejects_mutant(name: str, old: str, new: str, module: Module) -> None:
    mutant = load_texts(mutate(read_texts(MODULE_DIR / "examples" / name), old, new))
    with pytest.raises(AssertionError):
        EXAMPLE_CHECKS[name](mutant, module)
