"""The Azure function app (``functions/azure/``), driven as the Functions host drives it, end to end.

The Functions host cannot run here (its npm package downloads the host from a CDN), so the tests do
what the host and the Python worker do: read the binding JSON from ``app.get_functions()``, decode
the host's timer payload with the library's ``TimerRequestConverter`` and call the user function.
Everything behind the function is real: the Kafka broker (plain, and its SASL_SSL listener with
SCRAM and OAUTHBEARER), Azurite over HTTPS with ``--oauth basic`` (which accepts only bearer tokens
whose audience, issuer and lifetime are right, or the account key), and azure-identity talking to a
managed-identity endpoint stand-in (:mod:`tests.e2e.azure_fixtures`).  The function's settings hold
no account key, SAS or connection string: the tests check that, that it asked the endpoint for a
storage token, and that Azurite refuses the same writes without one.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import secrets
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import obstore
import pytest
from kafka import KafkaProducer
from kafka_backup import ConfigError, RunFailedError
from kafka_backup.storage import open_store, storage_from_url
from obstore.store import AzureStore

from dev.azurite import ACCOUNT, ACCOUNT_KEY, create_container
from tests.e2e.azure_fixtures import (
    APP_DIR,
    CLIENT_ID,
    PRINCIPAL_ID,
    VAULT_HOST,
    VAULT_RESOURCE,
    AzuriteOAuth,
    ConnectProxy,
    KeyVaultStandIn,
    ManagedIdentityStandIn,
    azurite_oauth,
    function_app,
    indexed_functions,
    invoke,
    jwt_claims,
    vault_tls,
)
from tests.integration.conftest import SecureKafka, backed_up_rows, chain_ranges, consume_all, secure_kafka

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

__all__ = ["azurite_oauth", "function_app", "secure_kafka"]  # fixtures used by name below

STORAGE_RESOURCE = "https://storage.azure.com"
EVENT_HUBS_NAMESPACE = "kb-test.servicebus.windows.net"
EVENT_HUBS_RESOURCE = f"https://{EVENT_HUBS_NAMESPACE}"


@dataclass
class AppUnderTest:
    """The function app with its app settings in the environment, and what a test checks against."""

    module: ModuleType
    identity: ManagedIdentityStandIn
    azurite: AzuriteOAuth
    container: str
    prefix: str
    settings: dict[str, str]
    set_env: Callable[[str, str], None]

    def configure(self, **settings: str) -> None:
        for key, value in settings.items():
            self.settings[key] = value
            self.set_env(key, value)

    def verifier_store(self) -> Any:
        """The backup as the test reads it: with the emulator's account key (the function never has it)."""
        return open_store(storage_from_url(f"az://{self.container}/{self.prefix}", account_name=ACCOUNT,
                                           endpoint=self.azurite.account_url, account_key=ACCOUNT_KEY))


@pytest.fixture
def identity() -> Iterator[ManagedIdentityStandIn]:
    with ManagedIdentityStandIn() as standin:
        yield standin


@pytest.fixture
def app(function_app: ModuleType, identity: ManagedIdentityStandIn, azurite_oauth: AzuriteOAuth,
        monkeypatch: pytest.MonkeyPatch, bootstrap_servers: str) -> AppUnderTest:
    """The function's app settings as the Terraform module sets them, for the local stand-ins.

    Only two test-only variables: the CA the clients must trust for the local HTTPS endpoints
    (``SSL_CERT_FILE`` for obstore's rustls, ``REQUESTS_CA_BUNDLE`` for azure-identity's requests).
    """
    for var in list(os.environ):
        if var.startswith(("KAFKA_BACKUP_", "AZURE_", "AzureFunctionsJobHost", "IDENTITY_", "MSI_")):
            monkeypatch.delenv(var)
    container = f"kb-fn-{uuid.uuid4().hex[:12]}"
    create_container(container, azurite_oauth.url, ca_file=azurite_oauth.ca_file)
    settings = {
        "FUNCTIONS_WORKER_RUNTIME": "python",
        "WEBSITE_SITE_NAME": "kb-test-backup-app",
        "AZURE_CLIENT_ID": CLIENT_ID,
        **identity.env(),
        "SSL_CERT_FILE": azurite_oauth.ca_file,
        "REQUESTS_CA_BUNDLE": azurite_oauth.ca_file,
        "KAFKA_BACKUP_SCHEDULE": "0 */15 * * * *",
        "KAFKA_BACKUP_LOG_LEVEL": "INFO",
        "KAFKA_BACKUP_STORAGE__URL": f"az://{container}/backups",
        "KAFKA_BACKUP_STORAGE__ACCOUNT_NAME": ACCOUNT,
        "KAFKA_BACKUP_STORAGE__ENDPOINT": azurite_oauth.account_url,
        "KAFKA_BACKUP_KAFKA__BOOTSTRAP_SERVERS": bootstrap_servers,
        "KAFKA_BACKUP_BACKUP__SEGMENT_MAX_BYTES": str(256 << 10),
    }
    for key, value in settings.items():
        monkeypatch.setenv(key, value)
    function_app.configure_logging()  # as at import, with the app settings in place
    return AppUnderTest(function_app, identity, azurite_oauth, container, "backups", settings, monkeypatch.setenv)


def produce(producer: KafkaProducer, topic: str, partitions: int, per_partition: int, *, size: int = 64) -> None:
    """Keys, values, headers, explicit timestamps and a tombstone in every partition."""
    for p in range(partitions):
        for i in range(per_partition):
            value = None if i == per_partition - 1 else b"v-%d-%d-" % (p, i) + secrets.token_bytes(size)
            producer.send(topic, key=b"k%d" % i, value=value, partition=p, timestamp_ms=1_700_000_000_000 + i,
                          headers=[("n", b"%d" % i)])
    producer.flush()


def summaries(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The ``backup_run`` summary lines as the worker would send them (the JSON text of each record)."""
    return [doc for doc in forwarded(caplog) if doc.get("event") == "backup_run"]


def forwarded(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """Every ``kafka_backup`` record as the root logger's handlers (the worker) receive it: JSON text.

    pytest also hooks its capture into non-propagating loggers, so it sees each record twice: as the
    engine logged it and as forwarded.  Every original must have its JSON twin.
    """
    originals, out = [], []
    for record in caplog.records:
        if record.name.startswith("kafka_backup"):
            try:
                out.append(json.loads(record.getMessage()))
            except ValueError:
                originals.append(record.getMessage())
    assert sorted(d["message"] for d in out) == sorted(originals)
    return out


def assert_backed_up(app: AppUnderTest, bootstrap: str, topic: str, partitions: int) -> int:
    store = app.verifier_store()
    total = 0
    for p in range(partitions):
        expected = consume_all(bootstrap, topic, p)
        assert expected, f"nothing was produced to {topic}[{p}]"
        assert backed_up_rows(store, topic, p) == expected
        total += len(expected)
    return total


def assert_no_secrets(caplog: pytest.LogCaptureFixture, identity: ManagedIdentityStandIn, *extra: str) -> None:
    text = "\n".join(r.getMessage() for r in caplog.records) + caplog.text
    issued = [t for tokens in identity.issued.values() for t in tokens]
    for secret in (*issued, *(t.split(".")[1] for t in issued), identity.header_secret, ACCOUNT_KEY, *extra):
        assert secret not in text


# ------------------------------------------------------------------------------------------ the app object
def test_bindings_are_what_the_host_indexes(function_app: ModuleType) -> None:
    """The worker indexes ``app`` and hands this JSON to the host, which schedules from it."""
    (function,) = indexed_functions(function_app)
    assert function.get_function_name() == "kafka_backup"
    doc = json.loads(function.get_function_json())
    assert doc["scriptFile"] == "function_app.py"
    assert doc["bindings"] == [{"type": "timerTrigger", "direction": "IN", "name": "timer",
                                "schedule": "%KAFKA_BACKUP_SCHEDULE%", "runOnStartup": False, "useMonitor": True}]
    host = json.loads((APP_DIR / "host.json").read_text())
    assert host["version"] == "2.0" and host["extensionBundle"]["id"] == "Microsoft.Azure.Functions.ExtensionBundle"
    assert host["functionTimeout"] == "00:10:00"
    import azure.functions

    pins = [line for line in (APP_DIR / "requirements.txt").read_text().splitlines() if line.startswith("azure-func")]
    assert pins == [f"azure-functions=={azure.functions.__version__}"]


def test_deadline_follows_the_host_timeout(app: AppUnderTest, caplog: pytest.LogCaptureFixture) -> None:
    fa = app.module
    assert fa.host_timeout_seconds() == 600 and fa.run_timeout_seconds() == 600  # host.json's 00:10:00
    app.configure(AzureFunctionsJobHost__functionTimeout="01:30:00.5")  # the app setting overrides host.json
    assert fa.host_timeout_seconds() == 5400.5
    app.configure(KAFKA_BACKUP_TIMEOUT_SECONDS="120")  # shorter than the host's: the run's own choice
    assert fa.run_timeout_seconds() == 120
    app.configure(KAFKA_BACKUP_TIMEOUT_SECONDS="9000")  # longer: the host would cancel first
    with caplog.at_level(logging.WARNING):
        assert fa.run_timeout_seconds() == 5400.5
    assert any("exceeds the host's functionTimeout" in d["message"] for d in forwarded(caplog))
    app.configure(AzureFunctionsJobHost__functionTimeout="-1")  # unbounded (Flex, Premium): needs ours
    assert fa.run_timeout_seconds() == 9000
    app.set_env("KAFKA_BACKUP_TIMEOUT_SECONDS", "")
    with pytest.raises(ConfigError, match="KAFKA_BACKUP_TIMEOUT_SECONDS"):
        fa.run_timeout_seconds()
    app.configure(AzureFunctionsJobHost__functionTimeout="ten minutes")
    with pytest.raises(ConfigError, match="functionTimeout"):
        fa.host_timeout_seconds()


def test_invalid_settings_fail_the_invocation_before_any_work(app: AppUnderTest, caplog: pytest.LogCaptureFixture
                                                              ) -> None:
    app.configure(KAFKA_BACKUP_KAFKA__SECURITY_PROTOCOL="SASL_SSL")  # no sasl section
    with caplog.at_level(logging.INFO):
        _, raised = invoke(app.module)
    assert isinstance(raised, RunFailedError) and isinstance(raised.__cause__, ConfigError) and "sasl" in str(raised)
    assert raised.exit_code == 2
    (summary,) = summaries(caplog)
    assert summary["ok"] is False and summary["run_failed"] == 1 and summary["exit_code"] == 2
    assert summary["service"] == "kb-test-backup-app" and summary["level"] == "ERROR"
    assert app.identity.token_requests() == []  # nothing was attempted


# ------------------------------------------------------------------------------- storage, managed identity
def test_backup_through_the_managed_identity(app: AppUnderTest, make_topic: Callable[..., str],
                                             producer: KafkaProducer, bootstrap_servers: str,
                                             caplog: pytest.LogCaptureFixture) -> None:
    topic = make_topic(partitions=2)
    produce(producer, topic, partitions=2, per_partition=150)
    app.configure(KAFKA_BACKUP_BACKUP__TOPICS=topic)
    key_like = [k for k, v in app.settings.items() if "KEY" in k.upper() or "SAS" in k.upper()
                or "AccountKey" in v or ACCOUNT_KEY in v]
    assert key_like == []  # nothing in the function's settings could sign a storage request

    with caplog.at_level(logging.INFO):
        _, raised = invoke(app.module)
    assert raised is None, raised

    (summary,) = summaries(caplog)
    assert summary["ok"] is True and summary["stop_reason"] == "complete"
    assert summary["records"] == 300 and summary["lag_records"] == 0 and summary["partitions_complete"] == 2
    assert summary["service"] == "kb-test-backup-app" and summary["shard"] == "0/1"
    assert summary["logger"] == "kafka_backup.azure" and summary["level"] == "INFO"
    for name in ("batch_bytes_read", "bytes_stored", "segments", "partitions_partial", "partitions_error",
                 "gap_offsets", "run_seconds", "time_left_seconds", "run_failed"):
        assert name in summary
    assert 0 < summary["time_left_seconds"] <= 600 - 30
    # the engine's own records came through the same route, with their fields
    engine = [d for d in forwarded(caplog) if d["logger"] == "kafka_backup.backup"]
    assert any(d.get("run_id") == summary["run_id"] for d in engine)

    # the token: asked for by azure-identity, for storage, as the user-assigned identity, with the header
    (request,) = app.identity.token_requests(STORAGE_RESOURCE)
    assert request.headers["user-agent"].startswith("azsdk-python-identity/")
    assert request.query["client_id"] == [CLIENT_ID] and request.query["api-version"] == ["2019-08-01"]
    assert jwt_claims(app.identity.issued[STORAGE_RESOURCE][0])["oid"] == PRINCIPAL_ID

    assert assert_backed_up(app, bootstrap_servers, topic, 2) == 300
    assert_no_secrets(caplog, app.identity)

    # a second tick in the same worker process reuses the cached token and finds nothing new
    caplog.clear()
    with caplog.at_level(logging.INFO):
        _, raised = invoke(app.module)
    assert raised is None
    assert summaries(caplog)[0]["records"] == 0
    assert len(app.identity.token_requests(STORAGE_RESOURCE)) == 1


def test_azurite_refuses_writes_without_a_valid_token(app: AppUnderTest, monkeypatch: pytest.MonkeyPatch) -> None:
    """What makes the test above meaningful: this Azurite takes a write only with a valid credential."""
    base = {"account_name": ACCOUNT, "endpoint": app.azurite.account_url}
    anonymous = AzureStore(app.container, skip_signature=True, **base)
    with pytest.raises(obstore.exceptions.PermissionDeniedError):
        obstore.put(anonymous, "probe/anonymous", b"x")

    def static(token: str) -> Callable[[], Any]:
        import datetime as dt

        return lambda: {"token": token, "expires_at": dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)}

    wrong_audience, _ = app.identity.mint("https://management.azure.com")
    with pytest.raises(obstore.exceptions.PermissionDeniedError):
        obstore.put(AzureStore(app.container, credential_provider=static(wrong_audience), **base), "probe/aud", b"x")
    good, _ = app.identity.mint(STORAGE_RESOURCE)
    obstore.put(AzureStore(app.container, credential_provider=static(good), **base), "probe/ok", b"x")


def test_a_token_azurite_rejects_fails_the_invocation(app: AppUnderTest, make_topic: Callable[..., str],
                                                     producer: KafkaProducer, caplog: pytest.LogCaptureFixture,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The identity hands out a token for the wrong audience: Azurite refuses, the invocation fails."""
    topic = make_topic()
    produce(producer, topic, partitions=1, per_partition=5)
    app.configure(KAFKA_BACKUP_BACKUP__TOPICS=topic)
    mint = app.identity.mint
    monkeypatch.setattr(app.identity, "mint", lambda resource: mint("https://management.azure.com"))
    with caplog.at_level(logging.INFO):
        _, raised = invoke(app.module)
    assert isinstance(raised, RunFailedError), raised
    (summary,) = summaries(caplog)
    assert summary["ok"] is False and summary["level"] == "ERROR" and summary["run_failed"] == 1
    assert summary["error_type"] == "StorageAuthError" and "permission denied" in summary["error"]
    assert summary["exit_code"] == 2  # a refused identity is a setting to fix, not an outage
    assert app.identity.token_requests(STORAGE_RESOURCE)
    assert_no_secrets(caplog, app.identity)


# ------------------------------------------------------------------------------------ timer and deadline
def test_past_due_tick_is_logged_and_still_runs(app: AppUnderTest, make_topic: Callable[..., str],
                                                producer: KafkaProducer, bootstrap_servers: str,
                                                caplog: pytest.LogCaptureFixture) -> None:
    topic = make_topic()
    produce(producer, topic, partitions=1, per_partition=20)
    app.configure(KAFKA_BACKUP_BACKUP__TOPICS=topic)
    with caplog.at_level(logging.INFO):
        _, raised = invoke(app.module, past_due=True)
    assert raised is None
    (late,) = [d for d in forwarded(caplog) if d.get("past_due")]
    assert late["level"] == "WARNING" and "past due" in late["message"] and late["schedule_last"]
    assert summaries(caplog)[0]["records"] == 20
    assert assert_backed_up(app, bootstrap_servers, topic, 1) == 20



@pytest.mark.slow
def test_short_timeout_returns_in_time_and_the_next_tick_finishes(app: AppUnderTest, make_topic: Callable[..., str],
                                                                  producer: KafkaProducer, bootstrap_servers: str,
                                                                  caplog: pytest.LogCaptureFixture,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A 6 s timeout, so the run must end 4 s after the invocation starts (the margin is capped at a
    third), and a broker that becomes slow: the 3rd fetch takes 3.5 s (the engine's delay point), so
    the data cannot all be read in time.  The invocation returns before the host would cancel it,
    with what it read committed; the next tick carries on from there and completes."""
    from kafka_backup import _failpoints

    topic = make_topic(partitions=2)
    produce(producer, topic, partitions=2, per_partition=300, size=1 << 10)
    app.configure(KAFKA_BACKUP_BACKUP__TOPICS=topic, KAFKA_BACKUP_TIMEOUT_SECONDS="6",
                  KAFKA_BACKUP_BACKUP__FETCH_MAX_BYTES=str(16 << 10),
                  KAFKA_BACKUP_BACKUP__PARTITION_FETCH_MAX_BYTES=str(4 << 10),  # about one batch per fetch
                  KAFKA_BACKUP_DELAYPOINT="fetch:3.5@3")
    monkeypatch.setattr(_failpoints, "_counts", {})  # the delay counts hits per process: start from zero
    with caplog.at_level(logging.INFO):
        elapsed, raised = invoke(app.module)
    assert raised is None, raised
    assert elapsed < 6.0, f"the host would have cancelled the invocation ({elapsed:.2f}s)"
    (first,) = summaries(caplog)
    assert first["stop_reason"] == "deadline" and first["ok"] is True, first
    assert first["records"] > 0 and first["lag_records"] > 0 and first["partitions_partial"] >= 1
    store = app.verifier_store()
    committed = 0
    for p in range(2):  # what was committed is a gapless chain of segments from the partition's start
        ranges = chain_ranges(store, topic, p)
        assert all(kind == "segment" for kind, _, _ in ranges), ranges
        assert [start for _, start, _ in ranges] == [0, *(end for _, _, end in ranges)][: len(ranges)]
        committed += ranges[-1][2] if ranges else 0
    assert committed == first["records"]

    caplog.clear()
    app.set_env("KAFKA_BACKUP_DELAYPOINT", "")
    app.configure(KAFKA_BACKUP_TIMEOUT_SECONDS="120")
    with caplog.at_level(logging.INFO):
        _, raised = invoke(app.module)
    assert raised is None, raised
    (second,) = summaries(caplog)
    assert second["stop_reason"] == "complete" and second["lag_records"] == 0
    assert first["records"] + second["records"] == 600
    assert assert_backed_up(app, bootstrap_servers, topic, 2) == 600


# ------------------------------------------------------------------------------------------- Kafka auth
def oauth_kafka(secure: SecureKafka, *, connect_timeout: str = "15") -> dict[str, str]:
    """App settings for an Event Hubs-style endpoint: SASL_SSL + OAUTHBEARER from the managed identity."""
    return {"KAFKA_BACKUP_KAFKA__BOOTSTRAP_SERVERS": secure.bootstrap_servers,
            "KAFKA_BACKUP_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_BACKUP_KAFKA__TLS__CA_FILE": secure.ca_file,
            "KAFKA_BACKUP_KAFKA__CONNECT_TIMEOUT_SECONDS": connect_timeout,
            "KAFKA_BACKUP_KAFKA__SASL__MECHANISM": "OAUTHBEARER",
            "KAFKA_BACKUP_KAFKA__SASL__TOKEN_PROVIDER": "entra_id:EntraIdTokenProvider",
            "KAFKA_BACKUP_KAFKA__SASL__TOKEN_PROVIDER_OPTIONS__SCOPE": f"{EVENT_HUBS_RESOURCE}/.default"}


def test_entra_token_provider_against_the_identity_endpoint(app: AppUnderTest, monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    from kafka_backup.oauth import TokenProviderError

    entra = importlib.import_module("entra_id")
    provider = entra.EntraIdTokenProvider(scope=f"{EVENT_HUBS_RESOURCE}/.default")
    token = provider.token()
    assert [token] == app.identity.issued[EVENT_HUBS_RESOURCE]
    claims = jwt_claims(token)
    assert claims["aud"] == EVENT_HUBS_RESOURCE and claims["sub"] == PRINCIPAL_ID
    assert provider.expires_at == claims["exp"]
    assert provider.token() == token and len(app.identity.token_requests(EVENT_HUBS_RESOURCE)) == 1  # cached
    (request,) = app.identity.token_requests()
    assert request.query["client_id"] == [CLIENT_ID] and request.headers["x-identity-header"]
    assert EVENT_HUBS_NAMESPACE in provider.describe() and CLIENT_ID in provider.describe()
    assert token not in provider.describe()

    with pytest.raises(ConfigError, match="scope"):
        entra.EntraIdTokenProvider(scope="kb-test.servicebus.windows.net")
    with pytest.raises(ConfigError, match="scope"):
        entra.EntraIdTokenProvider()

    # the endpoint refuses (wrong header): a TokenProviderError naming the provider, not the header
    monkeypatch.setenv("IDENTITY_HEADER", "not-the-header")
    entra.managed_identity.cache_clear()
    with pytest.raises(TokenProviderError, match="Entra ID token provider") as failed:
        entra.EntraIdTokenProvider(scope=f"{EVENT_HUBS_RESOURCE}/.default").token()
    assert "not-the-header" not in str(failed.value) and app.identity.header_secret not in str(failed.value)


def test_oauthbearer_with_the_managed_identity(app: AppUnderTest, secure_kafka: SecureKafka,
                                              make_topic: Callable[..., str], producer: KafkaProducer,
                                              bootstrap_servers: str, caplog: pytest.LogCaptureFixture) -> None:
    """Event Hubs' way in: the broker sees only SASL_SSL + OAUTHBEARER with the identity's token.

    At DEBUG, where kafka-python logs the SASL frames and azure-core every request, no token leaks."""
    topic = make_topic(partitions=2)
    produce(producer, topic, partitions=2, per_partition=40)
    app.configure(KAFKA_BACKUP_BACKUP__TOPICS=topic, KAFKA_BACKUP_LOG_LEVEL="DEBUG", **oauth_kafka(secure_kafka))
    app.module.configure_logging()
    with caplog.at_level(logging.DEBUG):
        _, raised = invoke(app.module)
    assert raised is None, raised
    (summary,) = summaries(caplog)
    assert summary["ok"] is True and summary["records"] == 80
    kafka_tokens = app.identity.token_requests(EVENT_HUBS_RESOURCE)
    assert kafka_tokens and all(r.headers["user-agent"].startswith("azsdk-python-identity/") for r in kafka_tokens)
    assert app.identity.token_requests(STORAGE_RESOURCE)
    assert assert_backed_up(app, bootstrap_servers, topic, 2) == 80
    wire = [r for r in caplog.records if r.name.startswith("kafka.") and r.levelno == logging.DEBUG]
    assert len(wire) > 100  # kafka-python's DEBUG lines were really on
    assert_no_secrets(caplog, app.identity)


def test_entra_signed_tokens_are_refused_by_the_local_brokers_validator(
        app: AppUnderTest, secure_kafka: SecureKafka, make_topic: Callable[..., str], producer: KafkaProducer,
        caplog: pytest.LogCaptureFixture) -> None:
    """Why the tokens above are unsigned: Kafka's unsecured validator accepts only ``alg: none``.  A
    token shaped like a real Entra one (RS256, signed) is refused, so the run fails, loudly and
    without the token in its logs; the test above therefore shows the broker checking our token."""
    topic = make_topic()
    produce(producer, topic, partitions=1, per_partition=3)
    app.identity.style = "rs256"
    app.configure(KAFKA_BACKUP_BACKUP__TOPICS=topic, **oauth_kafka(secure_kafka, connect_timeout="2"))
    with caplog.at_level(logging.INFO):
        _, raised = invoke(app.module)
    assert isinstance(raised, RunFailedError), raised
    (summary,) = summaries(caplog)
    assert summary["ok"] is False and summary["run_failed"] == 1 and summary["exit_code"] == 2
    assert summary["error_type"] == "KafkaAuthError" and "invalid_token" in summary["error"]
    assert app.identity.token_requests(EVENT_HUBS_RESOURCE)
    assert_no_secrets(caplog, app.identity)


def test_scram_password_from_a_key_vault_reference(app: AppUnderTest, secure_kafka: SecureKafka,
                                                   make_topic: Callable[..., str], producer: KafkaProducer,
                                                   bootstrap_servers: str, caplog: pytest.LogCaptureFixture,
                                                   tmp_path: Path) -> None:
    """``secretref:azure-keyvault:<secret URI>``: read at run time with the identity's Key Vault token."""
    topic = make_topic()
    produce(producer, topic, partitions=1, per_partition=25)
    vault_ca, context = vault_tls(tmp_path)
    bundle = tmp_path / "ca-bundle.pem"  # what the function trusts: the emulator's CA and the vault's
    bundle.write_text(Path(app.azurite.ca_file).read_text() + vault_ca.read_text())
    secret_uri = f"https://{VAULT_HOST}/secrets/kafka-password"
    with KeyVaultStandIn(app.identity, context) as vault, ConnectProxy({f"{VAULT_HOST}:443": vault.port}) as proxy:
        vault.secrets["kafka-password"] = secure_kafka.password
        app.configure(
            KAFKA_BACKUP_BACKUP__TOPICS=topic, REQUESTS_CA_BUNDLE=str(bundle), HTTPS_PROXY=proxy.url,
            NO_PROXY="127.0.0.1,localhost",
            KAFKA_BACKUP_KAFKA__BOOTSTRAP_SERVERS=secure_kafka.bootstrap_servers,
            KAFKA_BACKUP_KAFKA__SECURITY_PROTOCOL="SASL_SSL", KAFKA_BACKUP_KAFKA__TLS__CA_FILE=secure_kafka.ca_file,
            KAFKA_BACKUP_KAFKA__SASL__MECHANISM=secure_kafka.scram_mechanism,
            KAFKA_BACKUP_KAFKA__SASL__USERNAME=secure_kafka.username,
            KAFKA_BACKUP_KAFKA__SASL__PASSWORD=f"secretref:azure-keyvault:{secret_uri}")
        with caplog.at_level(logging.INFO):
            _, raised = invoke(app.module)
        assert raised is None, raised
        assert summaries(caplog)[0]["records"] == 25
        assert set(proxy.connects) == {f"{VAULT_HOST}:443"}
        reads = [s for s in vault.seen if s.path == "/secrets/kafka-password"]
        assert reads and all(s.query["api-version"] == ["7.4"] for s in reads)
        vault_tokens = {f"Bearer {t}" for t in app.identity.issued[VAULT_RESOURCE]}
        assert {s.headers["authorization"] for s in reads} <= vault_tokens

        # a secret that is not there: the run fails as a configuration error naming the secret
        caplog.clear()
        app.configure(KAFKA_BACKUP_KAFKA__SASL__PASSWORD=f"secretref:azure-keyvault:https://{VAULT_HOST}/secrets/gone")
        with caplog.at_level(logging.INFO):
            _, raised = invoke(app.module)
        assert isinstance(raised, RunFailedError)
        (failed,) = summaries(caplog)
        assert failed["exit_code"] == 2, failed
        assert "404 SecretNotFound" in failed["error"] and "/secrets/gone" in failed["error"]
    assert assert_backed_up(app, bootstrap_servers, topic, 1) == 25
    assert_no_secrets(caplog, app.identity, secure_kafka.password)
