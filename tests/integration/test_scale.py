"""Hundreds of partitions in one run: round trips that do not grow with partitions, and idle runs
that write nothing but their summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer
from kafka_backup import run_backup
from kafka_backup._kafka_raw import RawKafka
from kafka_backup.report import verify
from kafka_backup.storage import Store, open_store

from tests.integration.conftest import backed_up_rows, consume_all, settings

pytestmark = pytest.mark.integration

PARTITIONS = 300


class _CountingStore(Store):
    """A real store that counts writes by kind of object."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner._inner, prefix=inner._prefix, display=inner.display)
        self.puts: list[str] = []

    def put(self, key: str, data: Any) -> Any:
        self.puts.append(key)
        return super().put(key, data)

    def put_if_absent(self, key: str, data: bytes) -> Any:
        self.puts.append(key)
        return super().put_if_absent(key, data)


def _produce(producer: KafkaProducer, topic: str, per_partition: int) -> None:
    for p in range(PARTITIONS):
        for i in range(per_partition):
            producer.send(topic, value=b"%d-%d" % (p, i), partition=p)
    producer.flush()


@pytest.mark.slow
def test_hundreds_of_partitions_cost_a_few_fetches_and_idle_runs_write_nothing(
        bootstrap_servers: str, make_topic: Any, producer: KafkaProducer, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    topic = make_topic(PARTITIONS)
    _produce(producer, topic, 3)
    url = f"file://{tmp_path / 'bk'}"
    fetches: list[int] = []
    real_fetch = RawKafka.fetch

    def counting_fetch(self: RawKafka, offsets: Any, **kw: Any) -> Any:
        fetches.append(len(offsets))
        return real_fetch(self, offsets, **kw)

    monkeypatch.setattr(RawKafka, "fetch", counting_fetch)
    cfg = settings(bootstrap_servers, url, [topic])
    first = run_backup(cfg)
    assert first.ok and first.records == 3 * PARTITIONS and first.lag == 0
    assert len(fetches) <= 5 and max(fetches) == PARTITIONS, fetches  # not one request per partition

    _produce(producer, topic, 2)  # every partition moves a little
    fetches.clear()
    store = _CountingStore(open_store(url))
    second = run_backup(cfg, store=store)
    assert second.ok and second.records == 2 * PARTITIONS and len(fetches) <= 5
    for p in (0, PARTITIONS // 2, PARTITIONS - 1):
        rows = backed_up_rows(store, topic, p)
        assert len(rows) == 5 and rows == consume_all(bootstrap_servers, topic, p)

    store.puts.clear()
    idle = run_backup(cfg, store=store)
    assert idle.ok and idle.records == 0 and idle.lag == 0
    written = [k for k in store.puts if not k.startswith(("runs/", "groups/", f"topics/{topic}/metadata/"))]
    assert written == []  # no hint, no anchor, no segment: an idle partition costs no write
    assert verify(store).ok
