"""Many partitions: whole-process time of ``kafka-backup backup`` for a first run, a run after every
partition got new records, and an idle run, plus peak RSS.

Why whole-process: a scheduled function pays start-up, planning, every round trip and every commit;
the figure that matters is how it grows with the partition count, not one phase.

Usage: ``python -m bench.scale_bench [--partitions 100,2000] [--topics N] [--records 10]
[--storage file|s3]``.  Each size uses fresh topics (deleted at the end).  Targets (issue "Scale and
cost"): 2 000 partitions x 10 records first run <= 10 s, "10 new records everywhere" <= 5 s, idle
<= 2 s.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid

from bench._common import ROOT, _admin, ensure_kafka, file_url, fresh_dir, log, table

#: (partitions, run) -> seconds, from the issue "Scale and cost"
TARGETS = {(2000, "first"): 10.0, (2000, "new"): 5.0, (2000, "idle"): 2.0, (10000, "idle"): 5.0}


def _produce(bootstrap: str, topics: list[str], partitions: int, records: int) -> None:
    from kafka import KafkaProducer

    with KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=64 << 10) as p:
        for topic in topics:
            for part in range(partitions):
                for i in range(records):
                    p.send(topic, value=b"%010d" % i + b"v" * 90, partition=part)
        p.flush()


def _backup(bootstrap: str, url: str, topics: list[str]) -> tuple[float, float]:
    """Run the CLI once; return (wall seconds, peak RSS MiB) of the whole process."""
    cmd = [sys.executable, "-c", (
        "import resource, sys\n"
        "from kafka_backup.cli import main\n"
        "code = main(sys.argv[1:])\n"
        "print('PEAK_RSS_KIB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
        "sys.exit(code)\n"),
        "--log-level", "WARNING", "backup", "--storage", url, "--bootstrap-servers", bootstrap, "--no-progress",
        *[arg for t in topics for arg in ("--topic", t)]]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ})
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"backup failed ({out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    rss = next(int(line.split()[1]) for line in out.stderr.splitlines() if line.startswith("PEAK_RSS_KIB"))
    return wall, rss / 1024


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--partitions", default="100,2000", help="total partitions per case, comma-separated")
    ap.add_argument("--topics", type=int, default=1, help="topics the partitions are spread over")
    ap.add_argument("--records", type=int, default=10, help="records per partition per load")
    args = ap.parse_args(argv)
    bootstrap = ensure_kafka()
    admin = _admin(bootstrap)
    rows = []
    for total in (int(x) for x in args.partitions.split(",")):
        per_topic = max(1, total // args.topics)
        topics = [f"bench-scale-{total}-{i}-{uuid.uuid4().hex[:6]}" for i in range(args.topics)]
        for i in range(0, len(topics), 10):  # the controller refuses "excessively large" batches
            admin.create_topics({t: {"num_partitions": per_topic, "replication_factor": 1,
                                     "configs": {"retention.ms": "-1"}} for t in topics[i:i + 10]},
                                wait_for_metadata=True)
        try:
            _produce(bootstrap, topics, per_topic, args.records)
            url = file_url(fresh_dir(f"scale-{total}") / "bk")
            first = _backup(bootstrap, url, topics)
            _produce(bootstrap, topics, per_topic, args.records)
            new = _backup(bootstrap, url, topics)
            idle = _backup(bootstrap, url, topics)
        finally:
            for i in range(0, len(topics), 10):
                admin.delete_topics(topics[i:i + 10])
        for name, (wall, rss) in (("first", first), ("new", new), ("idle", idle)):
            target = TARGETS.get((total, name))
            rows.append([f"{per_topic * len(topics)}", f"{len(topics)}", name, f"{wall:.2f}", f"{rss:.0f}",
                         "-" if target is None else f"{target:.0f}",
                         "-" if target is None else ("ok" if wall <= target else "MISS")])
        log(f"{total} partitions done")
    print(table(["partitions", "topics", "run", "wall s", "peak RSS MiB", "target s", "verdict"], rows))
    admin.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
