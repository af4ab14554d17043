"""The e2e tests use the same Kafka fixtures as the integration tests."""

from tests.integration.conftest import admin, make_topic, producer

__all__ = ["admin", "make_topic", "producer"]
from tests.integration.conftest import secure_kafka  # noqa: F401  (the SASL_SSL listener, for the GCP function)
