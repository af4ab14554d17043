"""The e2e tests use the same Kafka fixtures as the integration tests."""

from tests.integration.conftest import admin, make_topic, producer

__all__ = ["admin", "make_topic", "producer"]
