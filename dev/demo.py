"""The README's "run the main job" command: a real backup of sample data on a local broker.

1. Start (or reuse) the local Kafka broker from the official jars.
2. Create ``demo-orders`` (3 partitions) and load sample data: keyed JSON orders, binary
   headers, tombstones, and one committed and one aborted transaction.
3. Run ``kafka-backup backup`` into ``./demo-backup`` (a ``file://`` store), then ``ls`` and
   ``verify`` it.  Run it again: the second run backs up only what was added since.

The broker keeps running afterwards (``make services-stop`` stops it) unless ``--stop`` is given.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time

from dev import services
from dev._common import ROOT

TOPIC = "demo-orders"
RECORDS = 3000


def load_sample_data(bootstrap: str) -> None:
    from kafka import KafkaAdminClient, KafkaProducer

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    if TOPIC not in admin.list_topics():
        admin.create_topics({TOPIC: {"num_partitions": 3, "replication_factor": 1,
                                     "configs": {"retention.ms": "-1"}}}, wait_for_metadata=True)
    admin.close()
    rng = random.Random(7)
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, compression_type="lz4")
    now = int(time.time() * 1000)
    for i in range(RECORDS):
        order = {"order_id": i, "customer": f"c{rng.randrange(200)}", "amount": round(rng.uniform(1, 500), 2),
                 "items": [rng.choice(["apple", "pear", "fig", "kiwi"]) for _ in range(rng.randrange(1, 5))]}
        headers = [("source", b"demo"), ("trace", os.urandom(8)), ("source", b"dup-key-kept")]
        producer.send(TOPIC, key=order["customer"].encode(), value=json.dumps(order).encode(), headers=headers,
                      timestamp_ms=now - (RECORDS - i) * 1000)
    for c in range(5):  # tombstones: customers deleted
        producer.send(TOPIC, key=f"c{c}".encode(), value=None)
    producer.flush()
    producer.close()
    tx = KafkaProducer(bootstrap_servers=bootstrap, transactional_id="demo-tx")
    tx.init_transactions()
    for commit in (True, False):
        tx.begin_transaction()
        for i in range(10):
            tx.send(TOPIC, key=b"tx", value=f"{'committed' if commit else 'aborted'}-{i}".encode(), partition=0)
        tx.flush()
        tx.commit_transaction() if commit else tx.abort_transaction()
    tx.close()


def main(argv: list[str]) -> int:
    from kafka_backup.cli import main as cli

    kafka = services.get("kafka")
    endpoint, started = kafka.ensure()
    bootstrap = endpoint["KAFKA_BOOTSTRAP_SERVERS"]
    os.environ["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
    target = f"file://{ROOT / 'demo-backup'}"
    print(f"== Kafka at {bootstrap}; loading {RECORDS} sample records into {TOPIC}", flush=True)
    load_sample_data(bootstrap)
    print(f"\n== kafka-backup backup --topic {TOPIC} --storage {target}", flush=True)
    rc = cli(["backup", "--topic", TOPIC, "--storage", target])
    if rc not in (0, 3):
        return rc
    print(f"\n== kafka-backup ls --storage {target}", flush=True)
    cli(["ls", "--storage", target])
    print(f"\n== kafka-backup verify --storage {target}", flush=True)
    rc = cli(["verify", "--storage", target])
    if "--stop" in argv and started:
        kafka.stop()
    print("\nRun `make demo` again: only the newly loaded records are backed up. "
          "`make services-stop` stops the broker.")
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
