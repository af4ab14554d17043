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
            ``bench._phase.BARE_PRODUCER`` settings (acks=all, idempotence, 1 MiB batches, linger
            10 ms), each record into its source partition number, then flush and close
* kcat      ``kcat -P`` (librdkafka) of the same values, one per line from a file written
            beforehand (untimed), acks=all and idempotence, whole-process wall time; skipped, and
            said so, when kcat is not on PATH (``apt-get install kcat``; the bench installs nothing)
* restore   ``run_restore`` from the backup (reading and checking segments, sending the stored
            batches in Kafka transactions committed at every checkpoint of ``CHECKPOINT_RECORDS``),
            into a topic that already exists; its target ends hold one commit marker per transaction

Figures: MB/s (10^6 bytes of record values), records/s, CPU seconds per GiB of values, peak RSS.
Targets: restore >= 2x the bare producer and >= 0.5x kcat -P; peak RSS <= 256 MiB.
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

TARGET_VS_PRODUCER = 2.0
TARGET_VS_KCAT = 0.5
RSS_LIMIT = 256 * c.MiB


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


def values_file(folder: Path, topic: str, total: int) -> Path:
    """The backup's record values, one per line, for ``kcat -P`` (written once, untimed)."""
    from bench._phase import _backed_up_records

    path = c.WORK / f"values-{topic}.txt"
    if path.exists() and path.stat().st_size == total * (c.RECORD_BYTES + 1):
        return path
    c.log(f"writing the values of {topic} to {path} for kcat (untimed)")
    with path.open("wb") as f:
        for _, r in _backed_up_records(c.file_url(folder), topic):
            if r.value is None or b"\n" in r.value:
                raise SystemExit("a value holds a newline (or is null): kcat -P cannot take it line by line")
            f.write(r.value + b"\n")
    return path


def kcat_produce(bootstrap: str, target: str, values: Path, total: int) -> dict[str, Any]:
    """``kcat -P`` of every value into ``target`` (keyless, librdkafka's partitioner), acks=all and
    idempotence like restore; wall time, CPU and peak RSS of that one process (``c.run_process``)."""
    kcat = shutil.which("kcat")
    assert kcat is not None
    r = c.run_process([kcat, "-P", "-b", bootstrap, "-t", target, "-X", "acks=all", "-X", "enable.idempotence=true",
                       "-X", "linger.ms=10", "-X", "batch.size=1048576", "-q", "-l", str(values)])
    if r["exit_code"] != 0:
        raise SystemExit(f"kcat -P failed ({r['exit_code']}): {r['stderr']}")
    return {"records": total, "seconds": r["seconds"], "cpu_seconds": r["cpu_seconds"], "peak_rss": r["peak_rss"]}


def _max_markers(total: int) -> int:
    """Upper bound of the commit markers a restore writes: one per transaction (of at least
    ``CHECKPOINT_RECORDS`` records over all partitions, the last one shorter) in every partition."""
    import math

    from kafka_backup import restore

    every = int(getattr(restore, "CHECKPOINT_RECORDS", 50_000))
    return (math.ceil(total / every) + 1) * c.PARTITIONS


def _clean_progress(folder: Path) -> None:
    shutil.rmtree(folder / "restores", ignore_errors=True)  # restore checkpoints of earlier runs


def measure(bootstrap: str, topic: str, folder: Path, total: int, repeat: int,
            profile: Path | None, values: Path | None) -> dict[str, list[dict[str, Any]]]:
    phases = ("produce", "kcat", "restore") if values is not None else ("produce", "restore")
    out: dict[str, list[dict[str, Any]]] = {p: [] for p in phases}
    for i in range(repeat):
        for phase in phases:
            target = f"bench-restore-{phase}-{uuid.uuid4().hex[:8]}"
            c.create_topic(bootstrap, target)
            keep = False
            try:
                c.log(f"{phase}: {topic} -> {target}")
                pyspy = None
                if profile is not None and i == 0:
                    profile.mkdir(parents=True, exist_ok=True)
                    pyspy = profile / f"{phase}-{topic}.txt"
                if phase == "kcat":
                    assert values is not None
                    r = kcat_produce(bootstrap, target, values, total)
                else:
                    r = c.run_phase({"phase": phase, "bootstrap": bootstrap, "source": topic, "target": target,
                                     "storage_url": c.file_url(folder)}, pyspy=pyspy)
                offs = c.topic_offsets(bootstrap, target)
                written = sum(offs[1].values()) if offs else 0
                # restore commits a Kafka transaction per checkpoint: each commit marker takes an offset
                markers = written - total
                allowed = _max_markers(total) if phase == "restore" else 0
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
    values = None
    if shutil.which("kcat"):
        values = values_file(folder, topic, total)
    t_measure = time.monotonic()
    runs = measure(bootstrap, topic, folder, total, args.repeat, args.profile, values)
    end = time.monotonic()

    gib_values = total * c.RECORD_BYTES / 2**30
    labels = {"produce": "bare KafkaProducer", "kcat": "kcat -P (librdkafka)", "restore": "run_restore from file://"}
    med = {}
    for phase, rs in runs.items():
        ordered = sorted(rs, key=lambda r: r["seconds"])
        med[phase] = ordered[(len(ordered) - 1) // 2] | {"worst_rss": max(r["peak_rss"] for r in rs)}
    rate = {phase: m["records"] / m["seconds"] for phase, m in med.items()}
    rows = []
    for phase, m in med.items():
        rows.append([labels[phase], m["records"], f"{m['seconds']:.2f}", f"{rate[phase]:,.0f}",
                     f"{m['records'] * c.RECORD_BYTES / 1e6 / m['seconds']:.1f}",
                     f"{rate['restore'] / rate[phase]:.2f}", f"{m['cpu_seconds'] / gib_values:.1f}",
                     f"{m['worst_rss'] / c.MiB:.0f}", " ".join(f"{r['seconds']:.1f}" for r in runs[phase])])
    print(f"kafka-backup restore benchmark: {gib:g} GiB of 1 KiB JSON records from {topic} (3 partitions)\n")
    print(c.table(["phase", "records", "seconds", "records/s", "MB/s", "restore is x", "CPU s/GiB",
                   "peak RSS MiB", "all runs s"], rows))
    vs_producer = rate["restore"] / rate["produce"]
    ok = vs_producer >= TARGET_VS_PRODUCER
    print(f"\nTargets: restore vs bare producer {vs_producer:.2f}x (>= {TARGET_VS_PRODUCER}x) "
          f"{c.verdict(vs_producer >= TARGET_VS_PRODUCER)}")
    if "kcat" in rate:
        vs_kcat = rate["restore"] / rate["kcat"]
        ok = ok and vs_kcat >= TARGET_VS_KCAT
        print(f"         restore vs kcat -P {vs_kcat:.2f}x (>= {TARGET_VS_KCAT}x) "
              f"{c.verdict(vs_kcat >= TARGET_VS_KCAT)}")
    else:
        print("         restore vs kcat -P: not measured, kcat is not on PATH (Debian: apt-get install kcat)")
    rss = med["restore"]["worst_rss"]
    ok = ok and rss <= RSS_LIMIT
    print(f"         restore peak RSS {rss / c.MiB:.0f} MiB (<= {RSS_LIMIT // c.MiB} MiB) "
          f"{c.verdict(rss <= RSS_LIMIT)}")
    if args.profile:
        from bench import _profile

        for phase in ("produce", "restore"):
            path = args.profile / f"{phase}-{topic}.txt"
            if path.exists():
                print(f"\nprofile of {phase}, {path}:\n" + _profile.summary(path))
    print(f"\ntime: load {loaded or 0:.0f}s, backup {t_measure - t_backup:.0f}s, measuring {end - t_measure:.0f}s, "
          f"total {end - t0:.0f}s" + (f" (figures: median of {args.repeat} runs)" if args.repeat > 1 else ""))
    return 1 if args.strict and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
