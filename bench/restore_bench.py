"""Restore throughput against a bare Kafka producer writing the same records.

Usage::

    python -m bench.restore_bench [--gib 1.0] [--quick] [--source plain|lz4] [--repeat N]
                                  [--profile DIR]

The source is the benchmark topic ``bench-<source>-<size>`` (created and loaded as by
``bench.backup_bench`` when missing) and its file backup in ``$TMPDIR/kafka-backup-bench/``: the one
the backup bench left there when it is complete, otherwise a fresh one made here (untimed).
Two child processes then write all of its records into two new topics of 3 partitions, each
created beforehand (so topic creation is outside both timings) and deleted afterwards:

* baseline  a bare ``KafkaProducer`` loop over the same records, already decoded in memory, with
            restore.py's producer settings (``_PRODUCER_DEFAULTS``: acks=all, idempotence, ...),
            each record into its source partition number, then flush and close
* restore   ``run_restore`` from the backup (reading, checking and decoding segments, producing
            in Kafka transactions committed at every checkpoint of ``CHECKPOINT_RECORDS``), into a
            topic that already exists; its target ends hold one commit marker per transaction

Figures: MB/s (10^6 bytes of record values), records/s, ratio restore/baseline (target >= 0.9).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from bench import _common as c

TARGET_RATIO = 0.9


def ensure_backup(bootstrap: str, topic: str, total: int) -> Path:
    """A complete file backup of ``topic`` (reused when its chains reach every partition's end)."""
    from kafka_backup.catalog import PartitionChain
    from kafka_backup.storage import open_store

    folder = c.WORK / f"backup-{topic}"
    ends = c.expected_ends(total)
    if folder.exists():
        store = open_store(c.file_url(folder))
        if all(PartitionChain(store, topic, p).find_end() == ends[p] for p in range(c.PARTITIONS)):
            c.log(f"reusing the backup in {folder}")
            return folder
    folder = c.fresh_dir(f"backup-{topic}")
    c.log(f"backing up {topic} into {folder} (untimed)")
    r = c.run_phase({"phase": "backup", "bootstrap": bootstrap, "topic": topic, "storage_url": c.file_url(folder)})
    if r["records"] != total:
        raise SystemExit(f"backup of {topic} holds {r['records']} records, expected {total}")
    return folder


def _max_markers(total: int) -> int:
    """Upper bound of transaction commit markers a restore writes (one per checkpoint, per partition)."""
    import math

    from kafka_backup import restore

    every = int(getattr(restore, "CHECKPOINT_RECORDS", 50_000))
    return sum(math.ceil(n / every) + 1 for n in c.expected_ends(total).values())


def _clean_progress(folder: Path) -> None:
    shutil.rmtree(folder / "restores", ignore_errors=True)  # restore checkpoints of earlier runs


def measure(bootstrap: str, topic: str, folder: Path, total: int, repeat: int,
            profile: Path | None) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {"produce": [], "restore": []}
    for i in range(repeat):
        for phase in ("produce", "restore"):
            target = f"bench-restore-{phase}-{uuid.uuid4().hex[:8]}"
            c.create_topic(bootstrap, target)
            keep = False
            try:
                c.log(f"{phase}: {topic} -> {target}")
                pyspy = None
                if profile is not None and i == 0:
                    profile.mkdir(parents=True, exist_ok=True)
                    pyspy = profile / f"{phase}-{topic}.txt"
                r = c.run_phase({"phase": phase, "bootstrap": bootstrap, "source": topic, "target": target,
                                 "storage_url": c.file_url(folder)}, pyspy=pyspy)
                offs = c.topic_offsets(bootstrap, target)
                written = sum(offs[1].values()) if offs else 0
                # restore commits a Kafka transaction per checkpoint: each commit marker takes an offset
                markers = written - total
                allowed = 0 if phase == "produce" else _max_markers(total)
                r["markers"] = markers
                if r["records"] != total or not 0 <= markers <= allowed:
                    keep = True  # left for inspection; delete it by its exact name afterwards
                    raise SystemExit(f"{phase} reported {r['records']} records, expected {total}; target end offsets "
                                     f"{offs and offs[1]}; topic {target} kept for inspection")
                out[phase].append(r)
            finally:
                if not keep:
                    c.delete_topic(bootstrap, target)
                _clean_progress(folder)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.restore_bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--gib", type=float, default=1.0, help="GiB of record values (default 1.0)")
    ap.add_argument("--quick", action="store_true", help="0.1 GiB")
    ap.add_argument("--source", choices=("plain", "lz4"), default="plain", help="which bench topic to restore")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each side, alternating; the median is shown")
    ap.add_argument("--strict", action="store_true", help="exit 1 when the target is missed")
    ap.add_argument("--profile", type=Path, help="record the first run of each side with py-spy into this folder")
    args = ap.parse_args(argv)
    gib = 0.1 if args.quick else args.gib
    total = c.record_count(gib)
    t0 = time.monotonic()
    bootstrap = c.ensure_kafka()
    topic, loaded = c.ensure_topic(bootstrap, args.source, gib)
    t_backup = time.monotonic()
    folder = ensure_backup(bootstrap, topic, total)
    t_measure = time.monotonic()
    runs = measure(bootstrap, topic, folder, total, args.repeat, args.profile)
    end = time.monotonic()

    rows, med = [], {}
    for phase, label in (("produce", "bare KafkaProducer"), ("restore", "run_restore from file://")):
        rs = sorted(runs[phase], key=lambda r: r["seconds"])
        m = med[phase] = rs[(len(rs) - 1) // 2]
        rate = m["records"] / m["seconds"]
        ratio = "-" if phase == "produce" else f"{rate / (med['produce']['records'] / med['produce']['seconds']):.2f}"
        rows.append([label, m["records"], f"{m['seconds']:.2f}", f"{rate:,.0f}",
                     f"{m['records'] * c.RECORD_BYTES / 1e6 / m['seconds']:.1f}", ratio,
                     f"{m['peak_rss'] / c.MiB:.0f}", " ".join(f"{r['seconds']:.1f}" for r in runs[phase])])
    ratio = (med["restore"]["records"] / med["restore"]["seconds"]) / (med["produce"]["records"]
                                                                       / med["produce"]["seconds"])
    print(f"kafka-backup restore benchmark: {gib:g} GiB of 1 KiB JSON records from {topic} (3 partitions)\n")
    print(c.table(["phase", "records", "seconds", "records/s", "MB/s", "ratio", "peak RSS MiB", "all runs s"], rows))
    print(f"\nTarget: restore throughput vs bare producer {ratio:.2f}x (target >= {TARGET_RATIO}x)  "
          f"{c.verdict(ratio >= TARGET_RATIO)}")
    if args.profile:
        from bench import _profile

        for phase in ("produce", "restore"):
            path = args.profile / f"{phase}-{topic}.txt"
            if path.exists():
                print(f"\nprofile of {phase}, {path}:\n" + _profile.summary(path))
    print(f"\ntime: load {loaded or 0:.0f}s, backup {t_measure - t_backup:.0f}s, measuring {end - t_measure:.0f}s, "
          f"total {end - t0:.0f}s" + (f" (figures: median of {args.repeat} runs)" if args.repeat > 1 else ""))
    return 1 if args.strict and ratio < TARGET_RATIO else 0


if __name__ == "__main__":
    sys.exit(main())
