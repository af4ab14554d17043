"""Backup throughput, memory and stored size against a bare Kafka consumer.

Usage::

    python -m bench.backup_bench [--gib 1.0] [--quick] [--topics plain,lz4]
                                 [--phases baseline,kcat,file,cli,s3,flat,stored]
                                 [--set KEY=VALUE ...] [--repeat N] [--profile DIR]

Two topics of 3 partitions (retention.ms=-1) hold ``--gib`` GiB of 1 KiB JSON events each, one
written without producer compression (``bench-plain-<size>``) and one with lz4
(``bench-lz4-<size>``); they are created and loaded once and reused by later runs.  Per topic,
each phase runs in its own child process (so peak RSS is per phase):

* baseline  a bare kafka-python ``KafkaConsumer`` (read_committed, all 3 partitions assigned,
            from the beginning to the end offsets; 16 MiB fetches, 8 MiB per partition)
* kcat      ``kcat -C -o beginning -e -q -f '%s'`` (librdkafka) writing the values to /dev/null, as
            a whole process (skipped, and said so, when kcat is not on PATH: nothing is installed)
* file      ``run_backup`` into a fresh local folder (``file://``)
* cli       the ``kafka-backup backup`` command into a fresh folder, as a whole process (start-up,
            imports and the run summary included): what the kcat targets compare
* s3        ``run_backup`` into LocalStack S3 (a fresh prefix, removed afterwards)
* flat      ``run_backup`` (file) of a quarter of the records (``max_records``) and of all of them,
            both with 16 MiB segments, to compare peak RSS: memory must not grow with the partition
            (it follows the segment size, which the default-size phases above show)
* stored    zstd -3 reference sizes for the file backup (see ``bench/_phase.py:stored``)

Throughput is in MB/s (10^6 bytes) of record values (1024 bytes a record), so every phase of a
topic is measured on the same yardstick; "log MB/s" is the record-batch bytes the backup read;
"CPU s" is the phase process's user+system time (the broker's is not included).
``--set`` passes backup-config overrides (``--set partition_fetch_max_bytes=1048576``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from bench import _common as c

TARGET_RATIO = {"plain": 1.5, "lz4": 5.0}
#: Whole-process throughput of ``kafka-backup backup`` vs kcat reading the values (issue #12).
TARGET_KCAT = {"plain": 0.6, "lz4": 1.0}
TARGET_RSS = 256 * c.MiB
TARGET_STORED = 1.05
FLAT_SLACK = 16 * c.MiB  # full-run peak RSS may exceed the quarter run's by max(this, 10 %)
#: Segment size of the flatness runs: small enough that a quarter of each topic fills several.
FLAT_SEGMENT_BYTES = 16 * c.MiB
ALL_PHASES = ("baseline", "kcat", "file", "cli", "s3", "flat", "stored")
KCAT = "kcat"


def _aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median run by time, with the highest peak RSS of all runs (memory limits bite on the worst)."""
    ordered = sorted(runs, key=lambda r: r["seconds"])
    return {**ordered[(len(ordered) - 1) // 2], "all_seconds": [r["seconds"] for r in runs],
            "peak_rss": max(r["peak_rss"] for r in runs)}


def _profile_path(profile: Path | None, name: str) -> Path | None:
    if profile is None:
        return None
    profile.mkdir(parents=True, exist_ok=True)
    return profile / f"{name}.txt"


def measure_topic(kind: str, topic: str, total: int, phases: list[str], bootstrap: str, endpoint: str | None,
                  overrides: dict[str, Any], repeat: int, profile: Path | None) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": kind, "topic": topic, "records": total}
    base_spec = {"bootstrap": bootstrap, "topic": topic}
    if "baseline" in phases:
        c.log(f"{topic}: baseline consumer")
        out["baseline"] = _aggregate([c.run_phase({**base_spec, "phase": "consume"}) for _ in range(repeat)])
    # kcat and the CLI run in alternation (kcat, cli, kcat, cli, ...) and before the phases that write
    # the large backups: both whole processes then see the same load and page-cache writeback, so
    # their ratio is not skewed by which ran after a 1 GiB write.
    kcat = shutil.which(KCAT) if "kcat" in phases else None
    if "kcat" in phases and kcat is None:
        c.log(f"{topic}: kcat is not on PATH; skipping the kcat comparison")
        out["kcat_missing"] = True
    if "cli" in phases:
        c.compile_engine()
    kcat_runs, cli_runs = [], []
    for _ in range(repeat):
        if kcat is not None:
            c.log(f"{topic}: kcat -C (values to /dev/null)")
            kcat_runs.append(_kcat(kcat, bootstrap, topic, total))
        if "cli" in phases:
            c.log(f"{topic}: kafka-backup backup (whole process) -> file://")
            cli_runs.append(_cli_backup(bootstrap, topic, total, overrides))
    if kcat_runs:
        out["kcat"] = _aggregate(kcat_runs)
    if cli_runs:
        out["cli"] = _aggregate(cli_runs)
    if "file" in phases or "stored" in phases:
        folder = c.fresh_dir(f"run-{topic}-file")
        c.log(f"{topic}: backup -> {folder}")
        spec = {**base_spec, "phase": "backup", "storage_url": c.file_url(folder), "backup": overrides}
        runs = []
        for i in range(repeat):
            if i:
                folder = c.fresh_dir(f"run-{topic}-file")
            runs.append(c.run_phase(spec, pyspy=_profile_path(profile, f"backup-{kind}") if i == 0 else None))
        out["file"] = _aggregate(runs)
        out["file"]["dir_bytes"] = c.dir_bytes(folder)
        if "stored" in phases:
            c.log(f"{topic}: zstd -3 reference sizes")
            out["stored"] = c.run_phase({**base_spec, "phase": "stored", "storage_url": c.file_url(folder)})
        # Keep the last complete file backup for bench.restore_bench (it reuses it when complete).
        keep = c.WORK / f"backup-{topic}"
        shutil.rmtree(keep, ignore_errors=True)
        folder.rename(keep)
    if "s3" in phases and endpoint is not None:
        runs = []
        for _ in range(repeat):
            prefix = f"{topic}-{uuid.uuid4().hex[:8]}"
            c.log(f"{topic}: backup -> s3://{c.BUCKET}/{prefix}")
            try:
                runs.append(c.run_phase({**base_spec, "phase": "backup", "storage_url": c.s3_url(endpoint, prefix),
                                         "backup": overrides}))
            finally:
                c.s3_delete_prefix(endpoint, prefix)
        out["s3"] = _aggregate(runs)
    if "flat" in phases:
        # Both runs with FLAT_SEGMENT_BYTES segments (unless --set says otherwise): memory follows the
        # segment size by design (one segment filling, one uploading), and at the default 64 MiB a
        # quarter of an lz4 topic (about 37 MiB a partition) never fills one, so comparing it with the
        # full run measured the segment size, not growth with the partition.
        flat = {"segment_max_bytes": FLAT_SEGMENT_BYTES, **overrides}
        for name, limit in (("quarter", {"max_records": max(1, total // 4)}), ("whole", {})):
            runs = []
            for _ in range(repeat):
                folder = c.fresh_dir(f"run-{topic}-{name}")
                c.log(f"{topic}: backup of {'a quarter of ' if limit else ''}the records with "
                      f"{flat['segment_max_bytes'] // c.MiB} MiB segments (RSS flatness)")
                try:
                    runs.append(c.run_phase({**base_spec, "phase": "backup", "storage_url": c.file_url(folder),
                                             "backup": {**flat, **limit}}))
                finally:
                    shutil.rmtree(folder, ignore_errors=True)
            out[name] = _aggregate(runs)
    return out


def _kcat(kcat: str, bootstrap: str, topic: str, total: int) -> dict[str, Any]:
    r = c.run_process([kcat, "-b", bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%s"])
    if r["exit_code"] != 0:
        raise SystemExit(f"kcat failed (exit {r['exit_code']}): {r['stderr']}")
    return {**r, "records": total, "rss_start": 0}


def _cli_backup(bootstrap: str, topic: str, total: int, overrides: dict[str, Any]) -> dict[str, Any]:
    """``kafka-backup backup`` as a user runs it; its ``--json`` summary proves every record was read."""
    folder = c.fresh_dir(f"run-{topic}-cli")
    summary = c.WORK / f"run-{topic}-cli.json"
    argv = [str(Path(sys.executable).with_name("kafka-backup")), "backup", "-b", bootstrap, "-t", topic,
            "-s", c.file_url(folder), "--no-progress", "--json"]
    if overrides:
        config = c.WORK / f"run-{topic}-cli.yaml"
        config.write_text(json.dumps({"backup": overrides}))  # YAML is a superset of JSON
        argv[2:2] = ["-c", str(config)]
    try:
        r = c.run_process(argv, stdout_to=str(summary))
        doc = json.loads(summary.read_text()) if r["exit_code"] == 0 else {}
        if not doc.get("ok") or doc.get("records") != total:
            raise SystemExit(f"kafka-backup backup failed (exit {r['exit_code']}, records {doc.get('records')}, "
                             f"expected {total}): {r['stderr']}")
        return {**r, "records": doc["records"], "raw_bytes": doc["raw_bytes"], "stored_bytes": doc["stored_bytes"],
                "run_seconds": doc["duration_seconds"], "rss_start": 0}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _mbs(records: int, seconds: float) -> float:
    return records * c.RECORD_BYTES / 1e6 / seconds


def report(results: list[dict[str, Any]], gib: float) -> tuple[str, bool]:
    rows = []
    notes: list[str] = []
    checks: list[tuple[str, str, bool]] = []
    for res in results:
        kind, base = res["kind"], res.get("baseline")
        base_rate = base["records"] / base["seconds"] if base else None
        for name, label in (("baseline", "bare KafkaConsumer"), ("kcat", "kcat -C (whole process)"),
                            ("file", "backup -> file://"), ("cli", "kafka-backup backup (whole process)"),
                            ("s3", "backup -> LocalStack S3"), ("quarter", "backup -> file:// (1/4, 16 MiB segments)"),
                            ("whole", "backup -> file:// (all, 16 MiB segments)")):
            r = res.get(name)
            if r is None:
                continue
            rate = r["records"] / r["seconds"]
            ratio = f"{rate / base_rate:.2f}" if base_rate and name != "baseline" else "-"
            log_mbs = f"{r['raw_bytes'] / 1e6 / r['seconds']:.1f}" if "raw_bytes" in r else "-"
            stored = f"{r['stored_bytes'] / c.MiB:.1f}" if "stored_bytes" in r else "-"
            runs = " ".join(f"{x:.1f}" for x in r.get("all_seconds", [r["seconds"]]))
            rows.append([res["topic"], label, r["records"], f"{r['seconds']:.2f}", runs, f"{r['cpu_seconds']:.1f}",
                         f"{rate:,.0f}",
                         f"{_mbs(r['records'], r['seconds']):.1f}", log_mbs, ratio,
                         f"{r['rss_start'] / c.MiB:.0f}" if r.get("rss_start") else "-",
                         f"{r['peak_rss'] / c.MiB:.0f}", stored])
        for name in ("file", "s3"):
            r = res.get(name)
            if r is not None and base_rate:
                ratio = r["records"] / r["seconds"] / base_rate
                checks.append((f"{kind}: backup->{name} throughput vs bare consumer",
                               f"{ratio:.2f}x (target >= {TARGET_RATIO[kind]}x)", ratio >= TARGET_RATIO[kind]))
        kcat, cli = res.get("kcat"), res.get("cli")
        if res.get("kcat_missing"):
            notes.append(f"{kind}: kcat is not on PATH (Debian: apt-get install kcat); kcat targets not checked")
        if kcat is not None and cli is not None:
            ratio = kcat["seconds"] / cli["seconds"]  # same records: throughput ratio
            pairs = sorted(k / b for k, b in zip(kcat["all_seconds"], cli["all_seconds"], strict=False))
            checks.append((f"{kind}: kafka-backup backup vs kcat (whole processes)",
                           f"{ratio:.2f}x, pairs {pairs[0]:.2f}-{pairs[-1]:.2f}x (target >= {TARGET_KCAT[kind]}x)",
                           ratio >= TARGET_KCAT[kind]))
        if cli is not None and base_rate:
            ratio = cli["records"] / cli["seconds"] / base_rate
            checks.append((f"{kind}: kafka-backup backup (whole process) vs bare consumer (timed section)",
                           f"{ratio:.2f}x (target >= {TARGET_RATIO[kind]}x)", ratio >= TARGET_RATIO[kind]))
        for name in ("file", "cli", "s3", "quarter", "whole"):
            r = res.get(name)
            if r is not None:
                checks.append((f"{kind}: peak RSS, backup->{name}",
                               f"{r['peak_rss'] / c.MiB:.0f} MiB (target <= 256 MiB)", r["peak_rss"] <= TARGET_RSS))
        if res.get("whole") and res.get("quarter"):
            full, quarter = res["whole"]["peak_rss"], res["quarter"]["peak_rss"]
            slack = max(FLAT_SLACK, quarter // 10)
            checks.append((f"{kind}: peak RSS flat as data grows (1/4 -> all, 16 MiB segments)",
                           f"{quarter / c.MiB:.0f} -> {full / c.MiB:.0f} MiB (allowed +{slack / c.MiB:.0f} MiB)",
                           full - quarter <= slack))
    out = [f"kafka-backup backup benchmark: {gib:g} GiB of 1 KiB JSON records per topic, 3 partitions", "",
           c.table(["topic", "phase", "records", "seconds", "all runs s", "CPU s", "records/s", "MB/s", "log MB/s",
                    "ratio", "RSS start MiB", "peak RSS MiB", "stored MiB"], rows),
           "(seconds, records/s, MB/s, ratio: the median run; peak RSS: the highest of all runs; ratio: vs the",
           " bare consumer; \"whole process\" rows are fork-to-exit wall time with interpreter start-up, imports and",
           " connecting included, the other rows the timed section only, see bench/README.md)", *notes, ""]
    size_rows = []
    for res in results:
        s = res.get("stored")
        if s is None:
            continue
        seg = s["segment_bytes"]
        size_rows.append([res["topic"], f"{s['raw_bytes'] / c.MiB:.1f}", f"{seg / c.MiB:.1f}",
                          f"{s['raw_bytes'] / seg:.2f}", f"{s['zstd3_stream_bytes'] / c.MiB:.1f}",
                          f"{seg / s['zstd3_stream_bytes']:.3f}", f"{s['zstd3_1mib_frames_bytes'] / c.MiB:.1f}",
                          f"{seg / s['zstd3_1mib_frames_bytes']:.3f}",
                          f"{res['file']['dir_bytes'] / c.MiB:.1f}"])
        if res["kind"] == "plain":
            ratio = seg / s["zstd3_stream_bytes"]
            checks.append(("plain: stored size vs zstd -3 of the fetched batches",
                           f"{ratio:.3f}x (target <= {TARGET_STORED}x)", ratio <= TARGET_STORED))
    if size_rows:
        out += ["Stored size (segments = blocks + footers) vs zstd -3 over the topic's record batches as fetched,",
                "concatenated per partition: one stream (= `zstd -3` on the file) and 1 MiB frames (our block size).",
                c.table(["topic", "batches MiB", "segments MiB", "compression", "zstd-3 MiB", "seg/zstd-3",
                         "zstd-3 1MiB-frames MiB", "seg/frames", "all objects MiB"], size_rows), ""]
    if checks:
        out += ["Targets:", c.table(["target", "figure", "result"], [[n, f, c.verdict(ok)] for n, f, ok in checks])]
    return "\n".join(out), all(ok for _, _, ok in checks)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.backup_bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--gib", type=float, default=1.0, help="GiB of record values per topic (default 1.0)")
    ap.add_argument("--quick", action="store_true", help="0.1 GiB per topic")
    ap.add_argument("--topics", default="plain,lz4", help="plain, lz4 or both (default)")
    ap.add_argument("--phases", default=",".join(ALL_PHASES), help=f"subset of {','.join(ALL_PHASES)}")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="backup config override, e.g. partition_fetch_max_bytes=1048576 (repeatable)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per measured phase; the median is shown")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    ap.add_argument("--profile", type=Path, help="record the file backups with py-spy into this folder")
    args = ap.parse_args(argv)
    gib = 0.1 if args.quick else args.gib
    kinds = [k for k in args.topics.split(",") if k]
    phases = [p for p in args.phases.split(",") if p]
    if bad := (set(kinds) - {"plain", "lz4"}) | (set(phases) - set(ALL_PHASES)):
        ap.error(f"unknown topic kind or phase: {sorted(bad)}")
    overrides = c.parse_sets(args.sets)
    t0 = time.monotonic()
    bootstrap = c.ensure_kafka()
    endpoint = c.ensure_localstack() if "s3" in phases else None
    topics = {}
    load_s = 0.0
    for kind in kinds:
        topic, loaded = c.ensure_topic(bootstrap, kind, gib)
        topics[kind] = topic
        load_s += loaded or 0.0
    t_measure = time.monotonic()
    results = [measure_topic(kind, topics[kind], c.record_count(gib), phases, bootstrap, endpoint, overrides,
                             args.repeat, args.profile) for kind in kinds]
    text, ok = report(results, gib)
    if overrides:
        text += f"\n\nbackup overrides: {overrides}"
    if args.profile:
        from bench import _profile

        for kind in kinds:
            path = args.profile / f"backup-{kind}.txt"
            if path.exists():
                text += f"\n\nprofile of backup ({kind}), {path}:\n" + _profile.summary(path)
    end = time.monotonic()
    print(text)
    print(f"\ntime: load {load_s:.0f}s, measuring {end - t_measure:.0f}s, total {end - t0:.0f}s"
          + (f" (figures: median of {args.repeat} runs)" if args.repeat > 1 else ""))
    return 1 if args.strict and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
