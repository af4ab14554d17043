"""One measured benchmark phase, run as a child process: ``python -m bench._phase '<json spec>'``.

Prints ``BENCH_RESULT {json}`` with the phase's figures, its wall time (the timed section only:
client creation to the last byte, not interpreter start-up or imports), the RSS when the timed
section began and the process's peak RSS (``ru_maxrss``, which covers every thread, including
kafka-python's IO thread, the zstd pool and obstore's runtime; see ``_peak_rss``).

Phases: ``load`` (fill a bench topic), ``consume`` (bare KafkaConsumer loop), ``backup``
(run_backup), ``stored`` (zstd -3 reference sizes for a file backup), ``produce`` (bare
KafkaProducer loop over the backed-up records), ``restore`` (run_restore).
"""

from __future__ import annotations

import cProfile
import json
import logging
import os
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from bench._common import PARTITIONS, RESULT_PREFIX, MiB, settings

_PROC = psutil.Process()


def _rss() -> int:
    return int(_PROC.memory_info().rss)


def _peak_rss() -> int:
    """This process's RSS high-water mark since its exec.

    ``VmHWM`` rather than ``getrusage(RUSAGE_SELF).ru_maxrss``: Linux carries ``ru_maxrss`` over
    ``fork``+``exec`` (it is the larger of the parent's peak at fork time and the child's own),
    so a child of a big parent would report the parent's peak.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _timed(spec: dict[str, Any], fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    rss0 = _rss()
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    load0 = os.getloadavg()[0]
    prof = cProfile.Profile() if spec.get("cprofile") else None
    t0 = time.perf_counter()
    if prof is not None:
        prof.enable()
    out = fn()
    if prof is not None:
        prof.disable()
    seconds = time.perf_counter() - t0
    if prof is not None:
        prof.dump_stats(spec["cprofile"])
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    return {**out, "seconds": seconds, "cpu_seconds": cpu, "rss_start": rss0, "peak_rss": _peak_rss(),
            "loadavg": [load0, os.getloadavg()[0]]}


# --------------------------------------------------------------------------------------- consume
def consume(spec: dict[str, Any]) -> dict[str, Any]:
    from kafka import KafkaConsumer, TopicPartition

    topic = spec["topic"]
    opts = {"fetch_max_bytes": 16 << 20, "max_partition_fetch_bytes": 8 << 20, "max_poll_records": 10_000,
            **spec.get("consumer", {})}

    def run() -> dict[str, Any]:
        c = KafkaConsumer(bootstrap_servers=spec["bootstrap"], enable_auto_commit=False, group_id=None,
                          isolation_level="read_committed", **opts)
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        c.assign(tps)
        ends = c.end_offsets(tps)
        c.seek_to_beginning(*tps)
        records = payload = 0
        open_tps = {tp for tp in tps if ends[tp] > 0}
        while open_tps:
            for tp, recs in c.poll(timeout_ms=1000).items():
                records += len(recs)
                for r in recs:
                    payload += len(r.value) + (len(r.key) if r.key is not None else 0)
                if recs and recs[-1].offset + 1 >= ends[tp]:
                    open_tps.discard(tp)
        c.close()
        return {"records": records, "payload_bytes": payload}

    return _timed(spec, run)


# --------------------------------------------------------------------------------------- backup
def _patch_zstd_workers(n: int) -> None:
    """Experiment: the backup's compression pool size (backup.py hard-codes 2 workers)."""
    from concurrent.futures import ThreadPoolExecutor

    import kafka_backup.backup as backup_mod

    class Pool(ThreadPoolExecutor):
        def __init__(self, max_workers: int | None = None, thread_name_prefix: str = "") -> None:
            super().__init__(max_workers=n, thread_name_prefix=thread_name_prefix)

    backup_mod.ThreadPoolExecutor = Pool  # type: ignore[misc]


def backup(spec: dict[str, Any]) -> dict[str, Any]:
    from kafka_backup.backup import run_backup

    if spec.get("zstd_workers"):
        _patch_zstd_workers(int(spec["zstd_workers"]))
    cfg = settings(spec["bootstrap"], spec["storage_url"], [spec["topic"]], **spec.get("backup", {}))

    def run() -> dict[str, Any]:
        r = run_backup(cfg)
        if not r.ok:
            raise SystemExit(f"backup failed: {[p.error for p in r.errors]}")
        out = {"records": r.records, "raw_bytes": r.raw_bytes, "stored_bytes": r.stored_bytes,
               "segments": r.segments, "stop_reason": r.stop_reason, "lag": r.lag,
               "batches": sum(p.batches for p in r.partitions)}
        return out

    return _timed(spec, run)


# --------------------------------------------------------------------------------------- stored
def stored(spec: dict[str, Any]) -> dict[str, Any]:
    """Reference sizes for the ``stored <= 1.05 x zstd -3`` target, from a finished backup.

    Per partition, the record batches exactly as fetched from the broker (read back from the
    backup's segments, CRC-checked) are concatenated in offset order; that byte stream is
    compressed with python-zstandard level 3 (a) as one stream, which is what ``zstd -3`` gives
    on the file, and (b) as independent frames of exactly 1 MiB, the granularity the segment
    format uses for random access.  Stored size = the segment objects (blocks + footer + trailer).
    """
    import zstandard
    from kafka_backup.catalog import PartitionChain
    from kafka_backup.segment import SegmentReader
    from kafka_backup.storage import open_store

    store = open_store(spec["storage_url"])
    topic = spec["topic"]

    def run() -> dict[str, Any]:
        raw = stream = framed = segment_bytes = 0
        for p in range(PARTITIONS):
            chain = PartitionChain(store, topic, p)
            whole = zstandard.ZstdCompressor(level=3).compressobj()
            framer = zstandard.ZstdCompressor(level=3, write_content_size=True)
            pending = bytearray()
            for rec in chain.walk():
                if rec.kind != "segment" or not rec.segment:
                    continue
                segment_bytes += rec.size or 0
                key = f"{chain.base}/{rec.segment}"
                reader = SegmentReader.from_bytes(store.get(key), key=key, expected_sha256=rec.sha256)
                for _h, batch in reader.batches():
                    raw += len(batch)
                    stream += len(whole.compress(batch))
                    pending += batch
                    while len(pending) >= MiB:
                        framed += len(framer.compress(bytes(pending[:MiB])))
                        del pending[:MiB]
            stream += len(whole.flush())
            if pending:
                framed += len(framer.compress(bytes(pending)))
        return {"raw_bytes": raw, "zstd3_stream_bytes": stream, "zstd3_1mib_frames_bytes": framed,
                "segment_bytes": segment_bytes}

    return _timed(spec, run)


# --------------------------------------------------------------------------------------- restore side
def _backed_up_records(storage_url: str, topic: str) -> list[tuple[int, Any]]:
    from kafka_backup.catalog import PartitionChain
    from kafka_backup.segment import SegmentReader
    from kafka_backup.storage import open_store

    store = open_store(storage_url)
    out: list[tuple[int, Any]] = []
    for p in range(PARTITIONS):
        chain = PartitionChain(store, topic, p)
        for rec in chain.walk():
            if rec.kind == "segment" and rec.segment:
                key = f"{chain.base}/{rec.segment}"
                reader = SegmentReader.from_bytes(store.get(key), key=key, expected_sha256=rec.sha256)
                out.extend((p, r) for r in reader.records())
    return out


#: The bare producer's settings: what restore guarantees (acks=all, idempotence), batched as a tuned
#: kafka-python application would be (restore itself sends the stored batches, whatever their size).
BARE_PRODUCER: dict[str, Any] = {
    "acks": "all", "enable_idempotence": True, "linger_ms": 10, "batch_size": 1 << 20,
    "max_request_size": 16 << 20, "max_in_flight_requests_per_connection": 5,
}


def produce(spec: dict[str, Any]) -> dict[str, Any]:
    """A bare produce loop of the backed-up records (read into memory first, untimed), with
    :data:`BARE_PRODUCER` settings, each record into the same partition number."""
    from kafka import KafkaProducer
    from kafka_backup.cluster import client_kwargs

    cfg = settings(spec["bootstrap"], spec["storage_url"], [spec["source"]])
    t0 = time.perf_counter()
    records = _backed_up_records(spec["storage_url"], spec["source"])
    read_seconds = time.perf_counter() - t0
    target = spec["target"]
    payload = sum(len(r.value or b"") + len(r.key or b"") for _, r in records)

    def run() -> dict[str, Any]:
        producer = KafkaProducer(**client_kwargs(cfg.kafka), **BARE_PRODUCER)
        for p, r in records:
            producer.send(target, key=r.key, value=r.value, headers=list(r.headers), partition=p,
                          timestamp_ms=r.timestamp)
        producer.flush()
        producer.close(timeout=30)
        return {"records": len(records), "payload_bytes": payload, "read_decode_seconds": read_seconds}

    return _timed(spec, run)


def restore(spec: dict[str, Any]) -> dict[str, Any]:
    from kafka_backup.restore import RestoreOptions, run_restore

    cfg = settings(spec["bootstrap"], spec["storage_url"], [spec["source"]])
    opts = RestoreOptions(topic=spec["source"], to_topic=spec["target"], **spec.get("options", {}))

    def run() -> dict[str, Any]:
        r = run_restore(cfg, opts)
        out = {"records": r.records, "created_topic": r.created_topic}
        return out

    return _timed(spec, run)


def load(spec: dict[str, Any]) -> dict[str, Any]:
    from bench._common import load_topic

    return _timed(spec, lambda: {"load_seconds": load_topic(spec["bootstrap"], spec["topic"], spec["total"],
                                                            spec["compression"])})


PHASES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "load": load, "consume": consume, "backup": backup, "stored": stored, "produce": produce, "restore": restore,
}


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    spec = json.loads(Path(argv[0][1:]).read_text()) if argv[0].startswith("@") else json.loads(argv[0])
    out = PHASES[spec["phase"]](spec)
    print(RESULT_PREFIX + json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
