"""Shared plumbing for the benchmarks: test data, topics, settings, per-phase child processes.

Why each measured phase runs in its own child process: peak RSS (``ru_maxrss``) is a high-water
mark of a whole process, so only a fresh process per phase gives a per-phase figure; it also keeps
one phase's caches and threads from helping or hurting the next.  The child is
``python -m bench._phase SPEC`` and prints one ``BENCH_RESULT {json}`` line.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PARTITIONS = 3
RECORD_BYTES = 1024  # value size; keys are "user-<id>" (about 12 bytes)
#: Producer batch size used to load the topics (the Java client's default is 16 KiB; loaders and
#: busy producers in practice fill larger ones).  Decides how many batches a backup handles.
LOAD_BATCH_BYTES = 64 << 10
GENERATOR_SEED = 20240601
BUCKET = "kafka-backup-bench"
WORK = Path(os.environ.get("KAFKA_BACKUP_BENCH_DIR", Path(tempfile.gettempdir()) / "kafka-backup-bench"))
MiB = 1 << 20
RESULT_PREFIX = "BENCH_RESULT "


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------ data
_EVENTS = ["page_view", "click", "add_to_cart", "remove_from_cart", "checkout", "purchase", "login", "logout",
           "search", "signup", "share", "video_play", "video_pause", "form_submit", "error"]
_COUNTRIES = ["US", "DE", "FR", "GB", "IN", "BR", "JP", "CA", "AU", "ES", "IT", "NL", "SE", "PL", "MX", "KR", "ZA"]
_UAS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 "
    "Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 "
    "Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile "
    "Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.0.0 Safari/537.36 "
    "Edg/123.0.2420.81",
]
_PATHS = ["/", "/products/", "/cart/", "/checkout/", "/search/", "/account/", "/blog/", "/help/", "/category/",
          "/orders/", "/wishlist/", "/compare/"]
_REFS = ["https://www.google.com/", "https://t.co/", "", "https://news.ycombinator.com/",
         "https://example.com/newsletter", "https://www.bing.com/", "https://duckduckgo.com/"]
_TITLES = ["Home", "Product details", "Your cart", "Checkout", "Search results", "Account settings", "Blog",
           "Order history", "Help center", "Wishlist"]
_PLANS = ["free", "pro", "team", "enterprise"]
_SCREENS = ["1920x1080", "1440x900", "390x844", "412x915", "2560x1440", "1366x768", "1536x864"]
_LANGS = ["en-US", "de-DE", "fr-FR", "en-GB", "ja-JP", "es-ES", "pt-BR", "it-IT"]
_TAGS = ['"new"', '"returning"', '"mobile"', '"promo"', '"ab:A"', '"ab:B"', '"beta"', '"vip"', '"newsletter"',
         '"organic"', '"paid"', '"referral"']
_NOTE_VOCABULARY = (
    "the a an of to in for on with and or but not order orders shipped shipping delayed delay customer customers "
    "support ticket tickets refund refunds requested request item items size color colour blue red green black "
    "white grey yellow large small medium xl express standard priority delivery delivered warehouse berlin paris "
    "london tokyo madrid rome warsaw york chicago returned return exchanged exchange gift wrap coupon coupons "
    "applied loyalty points account password reset email phone address billing invoice payment card declined "
    "approved pending cancelled canceled tracking number carrier dhl ups fedex parcel package box damaged missing "
    "replacement stock available unavailable backorder discount sale price total tax vat subtotal quantity cart "
    "checkout session timeout retry error mobile desktop tablet app web version update feature feedback rating "
    "review stars great good bad slow fast thanks please asap today tomorrow monday friday week weekend"
)
_WORDS = _NOTE_VOCABULARY.split()
_TEMPLATE = (
    '{"event_id":"%032x","event_type":"%s","ts":%d,"user":{"id":%d,"session":"%016x","country":"%s",'
    '"plan":"%s","logged_in":%s},"page":{"path":"%s%d","referrer":"%s","title":"%s"},"device":{"ua":"%s",'
    '"screen":"%s","lang":"%s"},"metrics":{"load_ms":%d,"dom_ms":%d,"scroll_pct":%d,"price":%d.%02d,"qty":%d},'
    '"ip":"%d.%d.%d.%d","trace":{"trace_id":"%032x","span_id":"%016x"},"tags":[%s],"note":"%s"}'
)


class RecordGenerator:
    """Deterministic JSON click-stream events of exactly ``RECORD_BYTES`` bytes each.

    Realistic rather than synthetic: ids and hashes are random hex, numbers vary, enumerations come
    from small vocabularies and a free-text note is filled from a word list, so the records
    compress about 4-4.5x with zstd -3 and about 2.5x with lz4, like real JSON events; no two are
    equal.  The same seed yields the same records, so a reused topic can be checked against it.
    """

    def __init__(self, seed: int = GENERATOR_SEED) -> None:
        self._r = random.Random(seed)
        self._i = 0

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        return self

    def __next__(self) -> tuple[bytes, bytes]:
        r = self._r
        ch, rr, gb = r.choice, r.randrange, r.getrandbits
        i = self._i
        self._i += 1
        uid = rr(1, 2_000_000)
        head = _TEMPLATE % (
            gb(128), ch(_EVENTS), 1_700_000_000_000 + i * 37 + rr(1000), uid, gb(64), ch(_COUNTRIES), ch(_PLANS),
            "true" if gb(1) else "false", ch(_PATHS), rr(10000), ch(_REFS), ch(_TITLES), ch(_UAS), ch(_SCREENS),
            ch(_LANGS), rr(50, 5000), rr(10, 2000), rr(101), rr(500), rr(100), rr(1, 5), rr(1, 255), rr(256),
            rr(256), rr(256), gb(128), gb(64), ",".join(r.sample(_TAGS, rr(1, 5))), "%s",
        )
        pad = RECORD_BYTES - len(head) + 2
        note = " ".join(r.choices(_WORDS, k=pad // 4))[:pad]
        return f"user-{uid}".encode(), (head % note).encode()


def gib_label(gib: float) -> str:
    return f"{gib:g}".replace(".", "p") + "gib"


def record_count(gib: float) -> int:
    return round(gib * (1 << 30) / RECORD_BYTES)


def topic_name(kind: str, gib: float) -> str:
    return f"bench-{kind}-{gib_label(gib)}"


def expected_ends(total: int) -> dict[int, int]:
    """Records are spread round-robin, record i into partition i % PARTITIONS."""
    return {p: total // PARTITIONS + (1 if p < total % PARTITIONS else 0) for p in range(PARTITIONS)}


# ------------------------------------------------------------------------------------------ services
def ensure_kafka() -> str:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from dev import services

    env, _ = services.get("kafka").ensure()
    return env["KAFKA_BOOTSTRAP_SERVERS"]


def ensure_localstack() -> str:
    """Start (or reuse) LocalStack and make sure the bench bucket exists; returns the endpoint."""
    from dev import services

    env, _ = services.get("localstack").ensure()
    endpoint = env.get("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    s3 = s3_client(endpoint)
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if BUCKET not in existing:
        s3.create_bucket(Bucket=BUCKET)
    return endpoint


def s3_client(endpoint: str) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test",
                        aws_secret_access_key="test")


def s3_url(endpoint: str, prefix: str) -> str:
    return (f"s3://{BUCKET}/{prefix}?endpoint={endpoint}&region=us-east-1&path_style=true&allow_http=true"
            "&access_key=test&secret_key=test")


def s3_delete_prefix(endpoint: str, prefix: str) -> None:
    s3 = s3_client(endpoint)
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix.rstrip("/") + "/"):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        for i in range(0, len(keys), 1000):
            s3.delete_objects(Bucket=BUCKET, Delete={"Objects": keys[i:i + 1000], "Quiet": True})


def file_url(path: Path) -> str:
    return f"file://{path}"


def fresh_dir(name: str) -> Path:
    path = WORK / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def settings(bootstrap: str, storage_url: str, topics: list[str], **backup: Any) -> Any:
    """As ``tests/integration/conftest.py``'s helper: Settings for one storage URL and topic list."""
    from kafka_backup.config import Settings, storage_from_url

    return Settings.model_validate({
        "kafka": {"bootstrap_servers": bootstrap},
        "storage": storage_from_url(storage_url).model_dump(),
        "backup": {"topics": topics, **backup},
    })


# ------------------------------------------------------------------------------------------ topics
def _admin(bootstrap: str) -> Any:
    from kafka import KafkaAdminClient

    return KafkaAdminClient(bootstrap_servers=bootstrap)


def create_topic(bootstrap: str, name: str, partitions: int = PARTITIONS) -> None:
    admin = _admin(bootstrap)
    try:
        admin.create_topics({name: {"num_partitions": partitions, "replication_factor": 1,
                                    "configs": {"retention.ms": "-1"}}}, wait_for_metadata=True)
    finally:
        admin.close()


def delete_topic(bootstrap: str, name: str) -> None:
    """Delete exactly ``name`` (only ever called with names this bench created)."""
    from kafka.errors import UnknownTopicOrPartitionError

    admin = _admin(bootstrap)
    try:
        admin.delete_topics([name])
    except UnknownTopicOrPartitionError:
        pass
    finally:
        admin.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and name in list_topics(bootstrap):
        time.sleep(0.5)


def list_topics(bootstrap: str) -> set[str]:
    admin = _admin(bootstrap)
    try:
        return set(admin.list_topics())
    finally:
        admin.close()


def topic_offsets(bootstrap: str, topic: str) -> tuple[dict[int, int], dict[int, int]] | None:
    """(earliest, latest) offsets per partition, or None when the topic does not exist."""
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        parts = c.partitions_for_topic(topic)
        if not parts:
            return None
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        begin = {tp.partition: o for tp, o in c.beginning_offsets(tps).items()}
        end = {tp.partition: o for tp, o in c.end_offsets(tps).items()}
        return begin, end
    finally:
        c.close()


def _first_batch_matches(bootstrap: str, topic: str, compression: int) -> bool:
    """Partition 0's first batch has the expected codec and starts with the generator's record 0."""
    from kafka.record.default_records import DefaultRecordBatch
    from kafka_backup._batches import scan
    from kafka_backup._kafka_raw import RawKafka

    with RawKafka(bootstrap_servers=bootstrap) as raw:
        got = raw.fetch({(topic, 0): 0}, max_bytes=1 << 20, partition_max_bytes=1 << 20)[(topic, 0)]
    headers = list(scan(got.records))
    if not headers or headers[0].compression != compression or headers[0].base_offset != 0:
        return False
    h = headers[0]
    first = next(iter(DefaultRecordBatch(bytes(got.records[h.position:h.position + h.size]))))
    key, value = next(RecordGenerator())
    return bool(first.key == key and first.value == value)


def ensure_topic(bootstrap: str, kind: str, gib: float) -> tuple[str, float | None]:
    """Create and load ``bench-<kind>-<size>`` unless it already holds exactly the generated data.

    ``kind`` is ``plain`` (no producer compression) or ``lz4``.  Returns (topic, load seconds or
    None when reused).  A topic with the wrong contents (an interrupted load, say) is deleted and
    reloaded; only these exact bench names are ever deleted.
    """
    topic = topic_name(kind, gib)
    total = record_count(gib)
    compression = {"plain": 0, "lz4": 3}[kind]
    offs = topic_offsets(bootstrap, topic)
    if offs is not None:
        begin, end = offs
        if (len(end) == PARTITIONS and all(v == 0 for v in begin.values()) and end == expected_ends(total)
                and _first_batch_matches(bootstrap, topic, compression)):
            log(f"reusing topic {topic} ({total} records)")
            return topic, None
        log(f"topic {topic} exists with other contents (ends {end}); recreating it")
        delete_topic(bootstrap, topic)
    create_topic(bootstrap, topic)
    # In a child, like the measured phases: the producer's memory must not linger in this process.
    r = run_phase({"phase": "load", "bootstrap": bootstrap, "topic": topic, "total": total,
                   "compression": None if kind == "plain" else kind})
    return topic, float(r["seconds"])


def load_topic(bootstrap: str, topic: str, total: int, compression: str | None) -> float:
    from kafka import KafkaProducer

    log(f"loading {total} records ({total * RECORD_BYTES / (1 << 30):.2f} GiB of values) into {topic} "
        f"(compression {compression or 'none'})")
    producer = KafkaProducer(bootstrap_servers=bootstrap, compression_type=compression, acks=1, linger_ms=20,
                             batch_size=LOAD_BATCH_BYTES, max_request_size=16 << 20)
    t0 = time.monotonic()
    step = max(1, total // 10)
    gen = RecordGenerator()
    try:
        for i in range(total):
            key, value = next(gen)
            producer.send(topic, key=key, value=value, partition=i % PARTITIONS)
            if (i + 1) % step == 0:
                log(f"  {topic}: {i + 1}/{total} ({time.monotonic() - t0:.0f}s)")
        producer.flush()
    finally:
        producer.close()
    seconds = time.monotonic() - t0
    offs = topic_offsets(bootstrap, topic)
    if offs is None or offs[1] != expected_ends(total):
        raise SystemExit(f"loading {topic} failed: end offsets {offs and offs[1]}, expected {expected_ends(total)}")
    log(f"loaded {topic} in {seconds:.0f}s ({total * RECORD_BYTES / MiB / seconds:.1f} MB/s)")
    return seconds


# ------------------------------------------------------------------------------------------ phases
def run_phase(spec: dict[str, Any], *, pyspy: Path | None = None, cprofile: Path | None = None) -> dict[str, Any]:
    """Run one measured phase in a child process and return its result dict.

    ``pyspy``: record the child with py-spy (all threads, collapsed stacks) into that file when
    py-spy is installed; ``cprofile``: profile the child's main thread with cProfile instead.
    """
    if cprofile is not None:
        spec = {**spec, "cprofile": str(cprofile)}
    argv = [sys.executable, "-m", "bench._phase", json.dumps(spec)]
    if pyspy is not None:
        exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if not Path(exe).exists():
            raise SystemExit("--profile needs py-spy (pip install py-spy into the venv)")
        argv = [exe, "record", "--format", "raw", "--threads", "--rate", "250", "--nonblocking",
                "--output", str(pyspy), "--", *argv]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"phase {spec.get('phase')} failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1][len(RESULT_PREFIX):])
    return result


# A tiny interpreter (``python -S``) forks and execs the measured program and reports its rusage.
# Why not ``subprocess`` + ``os.wait4`` from this process: Linux carries ``ru_maxrss`` over exec
# (a child's figure is at least its parent's peak), and this process is far bigger than kcat.  The
# launcher's own few MiB are the floor of the figure instead.
_LAUNCHER = """
import json, os, sys, time
out = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
t0 = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.dup2(out, 1)
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, ru = os.wait4(pid, 0)
print(json.dumps({"seconds": time.perf_counter() - t0, "exit_code": os.waitstatus_to_exitcode(status),
                  "peak_rss": ru.ru_maxrss * 1024, "cpu_seconds": ru.ru_utime + ru.ru_stime}))
"""


def run_process(argv: Sequence[str], *, stdout_to: str = os.devnull) -> dict[str, Any]:
    """Run ``argv`` as a whole process: wall time (fork to exit, start-up included), peak RSS and
    CPU seconds from its own rusage; its stdout goes to ``stdout_to`` (``/dev/null`` by default)."""
    proc = subprocess.run([sys.executable, "-S", "-c", _LAUNCHER, stdout_to, *argv], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        raise SystemExit(f"launching {argv[0]} failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["stderr"] = proc.stderr[-2000:]
    return result


def compile_engine() -> None:
    """Write the engine's bytecode before a whole-process measurement, as installing a wheel does.

    Why: the development install is editable and this environment sets ``PYTHONDONTWRITEBYTECODE``,
    so without this every ``kafka-backup`` process compiled the engine's sources again (about 0.1 s,
    5 % of a 1 GiB lz4 backup) — a cost no installed copy pays.  Stale bytecode is never used:
    Python checks each file's source time and size.
    """
    import compileall

    import kafka_backup

    compileall.compile_dir(str(Path(kafka_backup.__file__).parent), quiet=1)


def parse_sets(items: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` backup-config overrides; values are parsed as JSON when they can be (1048576, true)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set wants KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


# ------------------------------------------------------------------------------------------ output
def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for n, r in enumerate(cells):
        lines.append("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"
