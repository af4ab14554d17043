"""The ``kafka-backup`` command line.

Exit codes (also in ``docs/operations.md``):

====  =====================================================================================
0     success (a run stopped by its budget or deadline is a success: the next run resumes)
1     a partition failed, ``verify`` found a problem, or a restore failed
2     usage or configuration error (the message names the file and field)
3     success, but gaps are recorded: offsets deleted by retention before they were backed up
4     Kafka or storage could not be reached at all
====  =====================================================================================
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

from . import __version__
from .config import load_settings, load_storage_config, parse_time_ms
from .errors import ConfigError, ExitCode, KafkaBackupError, exit_code_for

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_GAPS, EXIT_UNREACHABLE = (int(c) for c in ExitCode)
log = logging.getLogger("kafka_backup.cli")


class _LogfmtFormatter(logging.Formatter):
    """``ts=… level=… logger=… msg="…"``: plain, greppable, structured."""

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage().replace('"', '\\"')
        return (f'ts={self.formatTime(record, "%Y-%m-%dT%H:%M:%S")}Z level={record.levelname.lower()} '
                f'logger={record.name} msg="{msg}"')


def _setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if sys.stderr.isatty():
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    else:
        fmt = _LogfmtFormatter()
        fmt.converter = time.gmtime
        handler.setFormatter(fmt)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("kafka").setLevel(logging.WARNING)


class _Progress:
    """A one-line progress display on an interactive terminal; silent otherwise."""

    def __init__(self, stream: TextIO, enabled: bool) -> None:
        self.stream = stream
        self.enabled = enabled and stream.isatty()
        self._last = 0.0

    def __call__(self, label: str, pos: int, target: int) -> None:
        if not self.enabled or time.monotonic() - self._last < 0.1:
            return
        self._last = time.monotonic()
        pct = 100.0 if target <= 0 else min(100.0, 100.0 * pos / max(target, 1))
        width = 30
        bar = "#" * int(width * pct / 100)
        self.stream.write(f"\r{label:<40.40} [{bar:<{width}}] {pct:5.1f}% offset {pos}/{target}")
        self.stream.flush()

    def done(self) -> None:
        if self.enabled:
            self.stream.write("\r" + " " * 100 + "\r")
            self.stream.flush()


def _add_storage_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", metavar="FILE", help="YAML settings file")
    p.add_argument("--storage", "-s", metavar="URL", help="backup location URL (overrides the file)")
    p.add_argument("--json", action="store_true", help="machine-readable output on stdout")


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="kafka-backup", description="Back up Kafka topics to blob storage, "
                                 "and restore them.")
    ap.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    ap.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = ap.add_subparsers(dest="command", required=True)

    b = sub.add_parser("backup", help="back up topics (one bounded run)")
    _add_storage_args(b)
    b.add_argument("--bootstrap-servers", "-b", metavar="HOST:PORT[,...]",
                   help="Kafka brokers (default: $KAFKA_BOOTSTRAP_SERVERS)")
    b.add_argument("--topic", "-t", action="append", default=[], metavar="NAME", help="topic name (repeatable)")
    b.add_argument("--topic-pattern", action="append", default=[], metavar="REGEX", help="topic regex (repeatable)")
    b.add_argument("--max-seconds", type=float, metavar="N")
    b.add_argument("--max-records", type=int, metavar="N")
    b.add_argument("--max-bytes", type=int, metavar="N")
    b.add_argument("--start", metavar="earliest|latest|TIME", help="where a new partition's backup begins")
    b.add_argument("--shard", metavar="I/N", help="take shard I of N of the partitions (0-based)")
    b.add_argument("--flush", action="store_true",
                   help="write every partition that has anything new, whatever the write policy "
                        "(backup.segment_min_bytes / max_lag_seconds) says")
    b.add_argument("--no-progress", action="store_true")

    ls = sub.add_parser("ls", help="list what a backup holds")
    _add_storage_args(ls)
    ls.add_argument("--topic", "-t", action="append", default=[], metavar="NAME")

    v = sub.add_parser("verify", help="check every checksum and the chains' continuity")
    _add_storage_args(v)
    v.add_argument("--topic", "-t", action="append", default=[], metavar="NAME")

    gc = sub.add_parser("gc", help="remove uncommitted (orphan) segments left by crashed runs")
    _add_storage_args(gc)
    gc.add_argument("--older-than-seconds", type=float, default=None,
                    help="only segments older than this (must exceed the longest run; default: the config's "
                         "backup.orphan_grace_seconds, 6 h)")
    gc.add_argument("--dry-run", action="store_true")

    co = sub.add_parser("cost", help="objects and requests per partition and per day, and a monthly bill model "
                        "on S3, Azure Blob and GCS (docs/pricing.md)")
    _add_storage_args(co)
    co.add_argument("--prices", metavar="FILE.yaml", help="override the price table of docs/pricing.md (same keys)")
    co.add_argument("--days", type=int, default=7, metavar="N", help="days of history to measure (default 7)")
    co.add_argument("--memory-mb", type=int, metavar="MB",
                    help="function memory for GB-seconds (default: the price table's model.memory_mb, 512)")
    co.add_argument("--top", type=int, default=10, metavar="N", help="partitions to list by requests (default 10)")

    r = sub.add_parser("restore", help="restore a backed-up topic into a cluster")
    _add_storage_args(r)
    r.add_argument("--bootstrap-servers", "-b", metavar="HOST:PORT[,...]",
                   help="target cluster (default: $KAFKA_BOOTSTRAP_SERVERS); --to-bootstrap-servers wins")
    r.add_argument("--topic", "-t", required=True, metavar="NAME")
    r.add_argument("--to-topic", metavar="NAME")
    r.add_argument("--to-bootstrap-servers", metavar="HOST:PORT[,...]",
                   help="target cluster (default: --bootstrap-servers / $KAFKA_BOOTSTRAP_SERVERS)")
    r.add_argument("--partition-map", metavar="SRC:DST,...")
    g1 = r.add_mutually_exclusive_group()
    g1.add_argument("--from-offset", type=int, metavar="N")
    g1.add_argument("--from-time", metavar="T", help="ISO-8601 or epoch ms")
    g2 = r.add_mutually_exclusive_group()
    g2.add_argument("--to-offset", type=int, metavar="N", help="exclusive")
    g2.add_argument("--to-time", metavar="T", help="exclusive; ISO-8601 or epoch ms")
    r.add_argument("--dry-run", action="store_true", help="read and check everything, write nothing")
    r.add_argument("--groups", action="store_true", help="also translate and commit consumer-group offsets")
    r.add_argument("--no-create-topic", action="store_true", help="fail if the target topic is missing")
    r.add_argument("--checkpoint-records", type=int, default=50_000, metavar="N",
                   help="records per transaction and progress checkpoint (default 50000)")
    r.add_argument("--no-progress", action="store_true")
    return ap


def _exit_code(ok: bool, gaps: bool) -> int:
    """Failures outrank gaps: a gap is loss that already happened and was recorded."""
    return int(ExitCode.FAILED if not ok else (ExitCode.GAPS if gaps else ExitCode.OK))


def _storage(args: argparse.Namespace) -> Any:
    from .storage import open_store

    return open_store(load_storage_config(args.config, args.storage))


def _print_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")  # one write, not one per token


def cmd_backup(args: argparse.Namespace) -> int:
    from .backup import run_backup
    from .report import human_bytes

    backup: dict[str, Any] = {}
    if args.topic:
        backup["topics"] = args.topic
    if args.topic_pattern:
        backup["topic_patterns"] = args.topic_pattern
    for name in ("max_seconds", "max_records", "max_bytes", "start"):
        if getattr(args, name) is not None:
            backup[name] = getattr(args, name)
    if args.shard:
        try:
            i, n = (int(x) for x in args.shard.split("/"))
        except ValueError:
            raise ConfigError(f"--shard wants I/N, got {args.shard!r}", source="flags") from None
        backup["shard"] = {"index": i, "count": n}
    if args.flush:
        backup["segment_min_bytes"] = 0
    overrides: dict[str, Any] = {"backup": backup}
    if args.bootstrap_servers:
        overrides["kafka"] = {"bootstrap_servers": args.bootstrap_servers}
    if args.storage:
        overrides["storage"] = {"url": args.storage}
    settings = load_settings(args.config, overrides=overrides)
    progress = _Progress(sys.stderr, not args.no_progress and not args.json)
    log.info("backup to %s (run budget: %s)", settings.storage.display(),
             f"{settings.backup.max_seconds}s" if settings.backup.max_seconds else "none")
    result = run_backup(settings, progress=progress)
    progress.done()
    if args.json:
        _print_json(result.to_dict())
    else:
        for p in result.partitions:
            line = (f"{p.topic}[{p.partition}]  {p.start_offset if p.start_offset is not None else '-'} -> "
                    f"{p.end_offset}  +{p.records} records  {p.segments} segments  "
                    f"{human_bytes(p.stored_bytes)} stored  lag {p.lag}  gaps {sum(g.count for g in p.gaps)}  "
                    f"{p.status}")
            print(line + (f"  error: {p.error}" if p.error else ""))
        print(result.summary_line())
    return int(result.exit_code)


def cmd_ls(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from .report import format_ts, human_bytes, summarize

    store = _storage(args)
    parts = summarize(store, args.topic or None)
    if args.json:
        _print_json([asdict(p) | {"gap_offsets": p.gap_offsets} for p in parts])
        return EXIT_OK
    if not parts:
        print("(no backups)")
    for p in parts:
        print(f"{p.topic}[{p.partition}]  id {p.topic_id or '-'}  offsets [{p.start_offset}, {p.end_offset})  "
              f"{p.records} records  "
              f"{p.segments} segments  {human_bytes(p.stored_bytes)} stored  "
              f"time {format_ts(p.min_timestamp)} .. {format_ts(p.max_timestamp)}  "
              f"gaps {len(p.gaps)} ({p.gap_offsets} offsets)")
        for g in p.gaps:
            print(f"    gap [{g.start}, {g.end}) {g.count} offsets lost to retention, detected {g.detected_at}")
    if parts:
        print(_recovery_point(store))
    return EXIT_OK


def _recovery_point(store: Any) -> str:
    """What the newest run summary says about the recovery point the deployment gets."""
    from .catalog import latest_json
    from .errors import StorageError

    try:
        found = latest_json(store, "runs")
    except (StorageError, ValueError):
        found = None
    if found is None:
        return "recovery point: unknown (no run summary under runs/)"
    doc = found[1]
    deferred = sum(1 for p in doc.get("partitions", []) if p.get("status") == "deferred")
    rpo = f"{doc['rpo_seconds']}s" if "rpo_seconds" in doc else "not recorded"
    return (f"recovery point: last run {doc.get('run_id')} finished {doc.get('finished_at')}: oldest record not "
            f"yet backed up was {rpo} old (RPO), lag {doc.get('lag', 0)} offsets, "
            f"{deferred} partitions deferred by the write policy")


def cmd_verify(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from .report import human_bytes, verify

    rep = verify(_storage(args), args.topic or None)
    if args.json:
        _print_json({"ok": rep.ok, "problems": [asdict(p) for p in rep.problems],
                     "segments_checked": rep.segments_checked, "bytes_checked": rep.bytes_checked,
                     "gap_offsets": rep.gap_offsets, "orphans": rep.orphans,
                     "partitions": [asdict(p) for p in rep.partitions]})
    else:
        for prob in rep.problems:
            print(f"PROBLEM {prob.key}: {prob.message}")
        for p in rep.partitions:
            for g in p.gaps:
                print(f"GAP {p.topic}[{p.partition}] [{g.start}, {g.end}) {g.count} offsets")
        print(f"{'OK' if rep.ok else 'FAILED'}: {rep.segments_checked} segments, "
              f"{human_bytes(rep.bytes_checked)} checked in {len(rep.partitions)} partitions, "
              f"{len(rep.problems)} problems, {rep.gap_offsets} gap offsets, {len(rep.orphans)} orphan segments")
    return _exit_code(rep.ok, bool(rep.gap_offsets))


def cmd_gc(args: argparse.Namespace) -> int:
    from .catalog import PartitionChain, list_partitions, list_topics, sweep_orphans
    from .config import load_backup_config

    store = _storage(args)
    grace = args.older_than_seconds
    if grace is None:
        grace = load_backup_config(args.config).orphan_grace_seconds
    removed = 0
    for topic in list_topics(store):
        for partition in list_partitions(store, topic):
            outcome = sweep_orphans(PartitionChain(store, topic, partition), from_start=0, grace_seconds=grace,
                                    dry_run=args.dry_run)
            for key in outcome.removed:
                print(f"{'would remove' if args.dry_run else 'removed'} {key}")
            removed += len(outcome.removed)
    print(f"{removed} orphan segments {'found' if args.dry_run else 'removed'}")
    return EXIT_OK


def cmd_restore(args: argparse.Namespace) -> int:
    from .restore import RestoreOptions, run_restore

    pmap: dict[int, int] | None = None
    if args.partition_map:
        try:
            pmap = {int(a): int(b) for a, b in (item.split(":") for item in args.partition_map.split(","))}
        except ValueError:
            raise ConfigError(f"--partition-map wants SRC:DST,..., got {args.partition_map!r}",
                              source="flags") from None
    target = args.to_bootstrap_servers or args.bootstrap_servers
    overrides: dict[str, Any] = {"storage": {"url": args.storage} if args.storage else None}
    if target:
        overrides["kafka"] = {"bootstrap_servers": target}
    settings = load_settings(args.config, overrides=overrides)
    try:
        from_time = parse_time_ms(args.from_time) if args.from_time else None
        to_time = parse_time_ms(args.to_time) if args.to_time else None
    except ValueError as exc:
        raise ConfigError(str(exc), source="flags", field="--from-time/--to-time") from None
    opts = RestoreOptions(
        topic=args.topic, to_topic=args.to_topic or args.topic, partition_map=pmap,
        from_offset=args.from_offset, to_offset=args.to_offset,
        from_time=from_time, to_time=to_time,
        dry_run=args.dry_run, groups=args.groups, create_topic=not args.no_create_topic,
        checkpoint_records=args.checkpoint_records,
    )
    progress = _Progress(sys.stderr, not args.no_progress and not args.json)
    result = run_restore(settings, opts, progress=progress)
    progress.done()
    if args.json:
        _print_json(result.to_dict())
    else:
        for line in result.summary_lines():
            print(line)
    return EXIT_OK if result.ok else EXIT_FAILED


def cmd_cost(args: argparse.Namespace) -> int:
    from .cost import analyze, format_report, load_prices

    if args.days < 1:
        raise ConfigError(f"must be at least 1, got {args.days}", source="flags", field="--days")
    prices = load_prices(args.prices, memory_mb=args.memory_mb)
    report = analyze(_storage(args), days=args.days, prices=prices)
    if not report.stored:
        print(f"kafka-backup: no backup found at {report.storage}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        _print_json(report.to_dict())
    else:
        print(format_report(report, top=max(0, args.top)))
    return EXIT_OK


COMMANDS = {"backup": cmd_backup, "ls": cmd_ls, "verify": cmd_verify, "gc": cmd_gc, "restore": cmd_restore,
            "cost": cmd_cost}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _setup_logging(args.log_level)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        print(f"kafka-backup: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KafkaBackupError as exc:
        print(f"kafka-backup: {exc}", file=sys.stderr)
        return int(exit_code_for(exc))
    except KeyboardInterrupt:
        print("kafka-backup: interrupted; committed work is kept, the next run resumes", file=sys.stderr)
        return 130


def run() -> None:
    """The console-script entry point: :func:`main`, then a prompt exit.

    Why ``os._exit``: once a command has returned, every upload is committed, every thread pool is
    shut down and the summary is printed, yet tearing down the interpreter (modules, the fetch
    buffers, the pydantic and kafka-python object graphs) took 0.2 s: a tenth of a 1 GiB backup.
    Streams and log handlers are flushed first, so nothing written is lost; only the teardown is
    skipped.  Code that calls :func:`main` in-process keeps the normal exit.
    """
    code = main()
    logging.shutdown()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed pipe: the normal exit would not report it either
        code = code or EXIT_FAILED
    os._exit(code)


if __name__ == "__main__":
    run()
