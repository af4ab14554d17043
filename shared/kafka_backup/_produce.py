"""Produce stored record batches, nearly byte for byte, inside one Kafka transaction at a time.

Why this module exists: restore used to decode every record and hand it to kafka-python's producer,
which encoded it again: two passes of Python per record, and that producer refuses records the
protocol allows (a null header value, a record whose key and value are both null).  A backup holds
the broker's own batches, so restore sends them back: only the header fields that say who wrote a
batch change (producer id and epoch, base sequence, the transactional bit, base offset and leader
epoch, which the broker assigns anyway) and the CRC-32C that covers them.  Records are encoded here
only for the batches restore must rebuild (:func:`encode_batch`).

Why the transactional protocol is spoken directly (FindCoordinator, InitProducerId,
AddPartitionsToTxn, Produce, EndTxn, at the versions kafka-python's own producer uses: transactions
v1): kafka-python's producer cannot send a pre-built batch.  The requests travel on a
:class:`~kafka_backup._kafka_raw.RawKafka` client's connections, so SASL, TLS and OAuth are the same
as everywhere else.

Failure handling is deliberately coarse.  Any failed produce fails the whole transaction with
:class:`RetriableProduceError` or a fatal error; the caller then calls :meth:`TransactionalProducer.init`
again, which bumps the producer epoch (fencing every request still in flight) and aborts the open
transaction, and resumes from its last checkpoint.  That is the path a re-run after ``kill -9``
takes, so one set of tests covers both.  Batches are never retried individually, so sequence
numbers never need repair.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import random
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import crc32c as _crc32c

from ._batches import ATTR_COMPRESSION_MASK, ATTR_TRANSACTIONAL, HEADER
from ._kafka_errors import describe, translate_kafka_error
from ._kafka_raw import RawKafka
from .errors import KafkaBackupError, KafkaClientError, RestoreError

__all__ = ["Outgoing", "RetriableProduceError", "TransactionalProducer", "encode_batch", "next_sequence", "stamp"]

log = logging.getLogger(__name__)

_INT32_MAX = 2**31 - 1
_PRODUCE_VERSIONS = (3, 9)  # v3: transactional id and magic v2 only; kafka-python's producer stops at 9
_TXN_MAX_VERSION = 3  # AddPartitionsToTxn / EndTxn v4+ are KIP-890 (transactions v2)
_INIT_PID_MAX_VERSION = 4
_COORDINATOR_TRANSACTION = 1
#: Produce requests in flight per partition.  kafka-python pauses a connection at its
#: ``max_in_flight_requests_per_connection`` (we raise it to leave room for metadata and the
#: coordinator's requests); five is also what the broker's idempotence state tracks per producer.
MAX_IN_FLIGHT = 5
CONNECTION_MAX_IN_FLIGHT = 8
_RETRY_BACKOFF_S = (0.02, 1.0)

# Error codes handled by name (kafka.errors has the full table).
_NOT_COORDINATOR = frozenset({14, 15, 16})  # COORDINATOR_LOAD_IN_PROGRESS, _NOT_AVAILABLE, NOT_COORDINATOR
_CONCURRENT_TRANSACTIONS = 51
_FENCED = frozenset({47, 90, 52})  # INVALID_PRODUCER_EPOCH, PRODUCER_FENCED, TRANSACTION_COORDINATOR_FENCED
#: Errors that mean "this transaction cannot go on, but a new epoch from the last checkpoint can":
#: OUT_OF_ORDER_SEQUENCE_NUMBER (an earlier request of ours was lost), INVALID_TXN_STATE,
#: INVALID_PRODUCER_ID_MAPPING (the coordinator expired our producer id), UNKNOWN_PRODUCER_ID.
_RESTARTABLE = frozenset({45, 48, 49, 59})


class RetriableProduceError(KafkaClientError):
    """The open transaction failed for a reason that a new epoch from the last checkpoint may cure
    (leader moved, connection lost, timeout, coordinator moving)."""


# --------------------------------------------------------------------------------------- batches
def next_sequence(sequence: int, records: int) -> int:
    """The base sequence after a batch of ``records``; wraps at 2**31-1 to 0 as Kafka's
    ``DefaultRecordBatch.incrementSequence`` does (a long restore can pass it)."""
    if sequence > _INT32_MAX - records:
        return records - (_INT32_MAX - sequence) - 1
    return sequence + records


_WRITER = struct.Struct(">qhi")  # producer_id, producer_epoch, base_sequence at byte 43
_ATTRS = struct.Struct(">h")
_I32 = struct.Struct(">i")
_U32 = struct.Struct(">I")
_I64 = struct.Struct(">q")


def stamp(batch: bytes | bytearray | memoryview, *, producer_id: int, producer_epoch: int,
          base_sequence: int) -> bytearray:
    """A copy of a stored v2 batch rewritten for our transaction.

    Only for batches sent as they are: CreateTime, no delete-horizon flag, consecutive offsets (the
    caller checks).  The timestamp-type, control and delete-horizon bits are cleared; compression,
    the records and their timestamps are untouched.  Base offset 0 and leader epoch -1 are what a
    producer sends (the broker assigns both).
    """
    out = bytearray(batch)
    attributes = (_ATTRS.unpack_from(out, 21)[0] & ATTR_COMPRESSION_MASK) | ATTR_TRANSACTIONAL
    _I64.pack_into(out, 0, 0)
    _I32.pack_into(out, 12, -1)
    _ATTRS.pack_into(out, 21, attributes)
    _WRITER.pack_into(out, 43, producer_id, producer_epoch, base_sequence)
    with memoryview(out) as view:
        _U32.pack_into(out, 17, _crc32c.crc32c(view[21:]))
    return out


def _varint(value: int, out: bytearray) -> None:
    """Zig-zag varint (Kafka's record fields), for values in the int64 range."""
    n = (value << 1) ^ (value >> 63)
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _bytes_field(value: bytes | None, out: bytearray) -> None:
    if value is None:
        _varint(-1, out)
    else:
        _varint(len(value), out)
        out += value


#: (timestamp, key, value, headers) of one record to encode.
RecordTuple = tuple[int, bytes | None, bytes | None, Sequence[tuple[str, bytes | None]]]


def _compressor(codec: int) -> Callable[[bytes], bytes] | None:
    """kafka-python's encoder for a batch codec, or None when it cannot encode it here."""
    from kafka import codec as kcodec

    table: dict[int, tuple[Callable[[], bool], Callable[[bytes], bytes]]] = {
        1: (kcodec.has_gzip, kcodec.gzip_encode), 2: (kcodec.has_snappy, kcodec.snappy_encode),
        3: (kcodec.has_lz4, kcodec.lz4_encode), 4: (kcodec.has_zstd, kcodec.zstd_encode),
    }
    entry = table.get(codec)
    return entry[1] if entry is not None and entry[0]() else None


def encode_batch(records: Sequence[RecordTuple], *, codec: int, producer_id: int, producer_epoch: int,
                 base_sequence: int) -> bytearray:
    """A transactional v2 batch of ``records`` (offset deltas 0..n-1), CreateTime.

    Why our own encoder: kafka-python's builder refuses a null header value; the format allows it
    and a restore must reproduce it.  ``codec`` is kept when this process can encode it (gzip,
    lz4, zstd; snappy needs python-snappy), otherwise the batch goes uncompressed.
    """
    if not records:
        raise ValueError("a batch needs at least one record")
    base_ts = records[0][0]
    body = bytearray()
    rec = bytearray()
    for delta, (ts, key, value, headers) in enumerate(records):
        rec.clear()
        rec.append(0)  # record attributes (unused)
        _varint(ts - base_ts, rec)
        _varint(delta, rec)
        _bytes_field(key, rec)
        _bytes_field(value, rec)
        _varint(len(headers), rec)
        for hkey, hvalue in headers:
            _bytes_field(hkey.encode(), rec)
            _bytes_field(hvalue, rec)
        _varint(len(rec), body)
        body += rec
    encode = _compressor(codec) if codec else None
    payload: bytes | bytearray = encode(bytes(body)) if encode is not None else body
    attributes = (codec if encode is not None else 0) | ATTR_TRANSACTIONAL
    out = bytearray(HEADER.size)
    HEADER.pack_into(out, 0, 0, HEADER.size - 12 + len(payload), -1, 2, 0, attributes, len(records) - 1,
                     base_ts, max(r[0] for r in records), producer_id, producer_epoch, base_sequence,
                     len(records))
    out += payload
    with memoryview(out) as view:
        _U32.pack_into(out, 17, _crc32c.crc32c(view[21:]))
    return out


# -------------------------------------------------------------------------------------- producer
@dataclass(frozen=True)
class Outgoing:
    """One batch for one partition: a stored batch to re-stamp, or records to encode."""

    topic: str
    partition: int
    records: int
    expected_base: int | None  # the target offset it must land at (None: not checked)
    batch: bytes | bytearray | memoryview | None = None
    rebuilt: Sequence[RecordTuple] | None = None
    codec: int = 0


@dataclass
class _InFlight:
    parts: list[tuple[Outgoing, int]]  # with the size sent
    done: threading.Event
    future: Any = None  # kafka.future.Future, set on the IO thread


class TransactionalProducer:
    """One transactional producer id on a :class:`RawKafka` client (see the module doc).

    Not thread-safe: one caller thread drives it; the client's IO thread does the network work.
    """

    def __init__(self, raw: RawKafka, transactional_id: str, *, request_timeout_s: float,
                 transaction_timeout_ms: int = 60_000, retry_budget_s: float | None = None) -> None:
        self._raw = raw
        self._manager = raw._manager
        self.transactional_id = transactional_id
        self._request_timeout_s = request_timeout_s
        self._transaction_timeout_ms = transaction_timeout_ms
        self._retry_budget_s = retry_budget_s if retry_budget_s is not None else 4 * request_timeout_s
        self.producer_id = -1
        self.producer_epoch = -1
        self._coordinator: int | None = None
        self._sequences: dict[tuple[str, int], int] = {}
        self._in_txn: set[tuple[str, int]] = set()
        self._in_flight: collections.deque[_InFlight] = collections.deque()
        self._open = False

    # -- the protocol's synchronous calls ----------------------------------------------------
    def _call(self, request: Any, node_id: int | None, what: str) -> Any:
        """Send one request and wait for its response on the IO thread; retriable failures raise
        :class:`RetriableProduceError`, anything else our translated error."""
        deadline = time.monotonic() + self._request_timeout_s + 1.0
        raw = self._raw

        async def call() -> Any:
            return await raw._until(raw._send(request, node_id, 0, deadline), deadline)

        try:
            return self._manager.run(call)
        except Exception as exc:
            raise self._failed(exc, what) from exc

    @staticmethod
    def _failed(exc: BaseException, what: str, topic: str | None = None,
                partition: int | None = None) -> KafkaBackupError:
        import kafka.errors as kerr

        if isinstance(exc, KafkaBackupError):
            return exc
        if isinstance(exc, kerr.KafkaError) and exc.retriable:
            return RetriableProduceError(f"{what}: {describe(exc)}", topic=topic, partition=partition)
        return translate_kafka_error(exc, what, topic=topic, partition=partition)

    def _retrying(self, what: str, attempt: Callable[[], int]) -> None:
        """Run ``attempt`` (which returns a Kafka error code) until it answers 0, retrying the
        coordinator's transient answers with backoff for up to the retry budget."""
        import kafka.errors as kerr

        started = time.monotonic()
        delay = _RETRY_BACKOFF_S[0]
        while True:
            code: int | None = None
            reason = ""
            try:
                code = attempt()
            except RetriableProduceError as exc:
                reason = str(exc)
            if code == 0:
                return
            if code is not None:
                error = kerr.for_code(code)
                if code in _FENCED:
                    raise RestoreError(f"{what}: {error.__name__}: another restore with the same transactional "
                                       f"id ({self.transactional_id}) took over; run only one restore of the "
                                       "same arguments at a time")
                if code in _NOT_COORDINATOR:
                    self._coordinator = None
                elif not (getattr(error, "retriable", False) or code == _CONCURRENT_TRANSACTIONS):
                    raise translate_kafka_error(error(), what)
                reason = error.__name__
            if time.monotonic() - started > self._retry_budget_s:
                raise RetriableProduceError(f"{what}: still failing after {self._retry_budget_s:.0f}s: {reason}")
            log.debug("%s: %s; retrying in %.2fs", what, reason, delay)
            time.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(_RETRY_BACKOFF_S[1], delay * 2)

    def _coordinator_id(self) -> int:
        if self._coordinator is not None:
            return self._coordinator
        from kafka.protocol.metadata import FindCoordinatorRequest

        found: list[int] = []

        def attempt() -> int:
            request = FindCoordinatorRequest(key=self.transactional_id, key_type=_COORDINATOR_TRANSACTION,
                                             coordinator_keys=[self.transactional_id])
            response = self._call(request, None, "find the transaction coordinator")
            result = response.coordinators[0] if getattr(response, "coordinators", None) else response
            if result.error_code == 0:
                found.append(int(result.node_id))
            return int(result.error_code)

        self._retrying("find the transaction coordinator", attempt)
        node_id = found[-1]
        if self._raw._cluster.broker_metadata(node_id) is None:  # not in kafka-python's view yet
            self._manager.run(self._raw._cluster.refresh_metadata)
        self._coordinator = node_id
        return node_id

    def init(self) -> None:
        """Get (or bump) the producer epoch for our transactional id.

        This fences any other producer with the same id (an interrupted run, or our own requests
        still in flight) and aborts its open transaction; sequences restart at 0.
        """
        from kafka.protocol.producer import InitProducerIdRequest

        self._abandon_in_flight()
        result: list[tuple[int, int]] = []

        def attempt() -> int:
            request = InitProducerIdRequest(
                transactional_id=self.transactional_id, transaction_timeout_ms=self._transaction_timeout_ms,
                producer_id=-1, producer_epoch=-1, max_version=_INIT_PID_MAX_VERSION)
            response = self._call(request, self._coordinator_id(), "initialise the restore's transactions")
            if response.error_code == 0:
                result.append((int(response.producer_id), int(response.producer_epoch)))
            return int(response.error_code)

        self._retrying("initialise the restore's transactions (fences an interrupted run)", attempt)
        self.producer_id, self.producer_epoch = result[-1]
        self._sequences.clear()
        self._in_txn.clear()
        self._open = False
        log.debug("transactional id %s: producer id %d epoch %d", self.transactional_id, self.producer_id,
                  self.producer_epoch)

    def begin(self) -> None:
        if self.producer_id < 0:
            raise RuntimeError("init() first")
        if self._open:
            raise RuntimeError("a transaction is already open")
        self._open = True

    def _add_partitions(self, tps: Sequence[tuple[str, int]]) -> None:
        from kafka.protocol.producer import AddPartitionsToTxnRequest

        topic_cls = AddPartitionsToTxnRequest.AddPartitionsToTxnTopic
        by_topic: dict[str, list[int]] = {}
        for topic, partition in tps:
            by_topic.setdefault(topic, []).append(partition)
        what = "add " + ", ".join(f"{t}{ps}" for t, ps in by_topic.items()) + " to the transaction"

        def attempt() -> int:
            request = AddPartitionsToTxnRequest(
                v3_and_below_transactional_id=self.transactional_id,
                v3_and_below_producer_id=self.producer_id,
                v3_and_below_producer_epoch=self.producer_epoch,
                v3_and_below_topics=[topic_cls(name=t, partitions=ps) for t, ps in by_topic.items()],
                max_version=_TXN_MAX_VERSION)
            response = self._call(request, self._coordinator_id(), what)
            codes = [int(code) for _, results in response.results_by_topic_v3_and_below for _, code in results]
            # OPERATION_NOT_ATTEMPTED (55) only says another partition of the request failed.
            return next((c for c in codes if c and c != 55), 0) if codes else \
                int(getattr(response, "error_code", 0) or 0)

        self._retrying(what, attempt)
        self._in_txn.update(tps)

    # -- produce ------------------------------------------------------------------------------
    def _leader(self, topic: str, partition: int) -> int:
        tp = (topic, partition)
        leader = self._raw._leaders.get(tp)
        if leader is None:
            reasons: dict[tuple[str, int], str] = {}
            deadline = time.monotonic() + self._request_timeout_s
            self._manager.run(self._raw._ensure_leaders, [tp], reasons, deadline)
            leader = self._raw._leaders.get(tp)
            if leader is None:
                raise RetriableProduceError(f"no leader for the partition: {reasons.get(tp, 'unknown')}",
                                            topic=topic, partition=partition)
        return leader[0]

    def send_many(self, parts: Sequence[Outgoing]) -> None:
        """Send one batch for each of several partitions (at most one per partition: the broker
        takes one batch per partition per request) in the open transaction, one ProduceRequest per
        leader.  At most :data:`MAX_IN_FLIGHT` requests stay unanswered; this waits for the oldest
        beyond that.

        Why several partitions per request: the broker handles the requests of one connection one at
        a time, so a restore of many partitions moves as many batches per round trip.

        ``expected_base`` checks where a batch landed: a different offset means something else
        writes to the partition, which the restore's offset map cannot allow.
        """
        from kafka.protocol.producer import ProduceRequest

        if not self._open:
            raise RuntimeError("begin() first")
        if len({(p.topic, p.partition) for p in parts}) != len(parts):
            raise ValueError("one batch per partition per request")
        new = [(p.topic, p.partition) for p in parts if (p.topic, p.partition) not in self._in_txn]
        if new:
            self._add_partitions(new)
        by_leader: dict[int, list[tuple[Outgoing, bytearray]]] = {}
        for p in parts:
            tp = (p.topic, p.partition)
            sequence = self._sequences.get(tp, 0)
            if p.batch is not None:
                data = stamp(p.batch, producer_id=self.producer_id, producer_epoch=self.producer_epoch,
                             base_sequence=sequence)
            else:
                assert p.rebuilt is not None
                data = encode_batch(p.rebuilt, codec=p.codec, producer_id=self.producer_id,
                                    producer_epoch=self.producer_epoch, base_sequence=sequence)
            self._sequences[tp] = next_sequence(sequence, p.records)
            by_leader.setdefault(self._leader(p.topic, p.partition), []).append((p, data))
        topic_cls = ProduceRequest.TopicProduceData
        timeout_ms = int(self._request_timeout_s * 1000)
        timeout_s, raw, manager = self._request_timeout_s, self._raw, self._manager
        for node_id, items in by_leader.items():
            while len(self._in_flight) >= MAX_IN_FLIGHT:
                self._complete_oldest()
            topics: dict[str, list[Any]] = {}
            for p, batch in items:
                topics.setdefault(p.topic, []).append(topic_cls.PartitionProduceData(index=p.partition, records=batch))
            request = ProduceRequest(
                transactional_id=self.transactional_id, acks=-1, timeout_ms=timeout_ms,
                topic_data=[topic_cls(name=t, partition_data=ps) for t, ps in topics.items()],
                min_version=_PRODUCE_VERSIONS[0], max_version=_PRODUCE_VERSIONS[1])
            # Only what the answer is checked against: the batch's source bytes (a view of a whole
            # segment) must not outlive the send.
            entry = _InFlight([(dataclasses.replace(p, batch=None, rebuilt=None), len(batch)) for p, batch in items],
                              threading.Event())

            def submit(request: Any = request, node_id: int = node_id, entry: _InFlight = entry) -> None:
                # On the IO thread, so the callback cannot race the response.
                future = raw._send(request, node_id, 0, time.monotonic() + timeout_s)
                entry.future = future
                future.add_both(lambda _: entry.done.set())

            manager.call_soon(submit)
            self._in_flight.append(entry)

    def _complete_oldest(self) -> None:
        entry = self._in_flight[0]
        first = entry.parts[0][0]
        if not entry.done.wait(self._request_timeout_s + 5.0):
            self._abandon_in_flight()
            raise RetriableProduceError(f"no answer to a produce request within {self._request_timeout_s + 5:.0f}s",
                                        topic=first.topic, partition=first.partition)
        self._in_flight.popleft()
        future = entry.future
        if future.failed():
            self._abandon_in_flight()
            if getattr(future.exception, "retriable", False):  # e.g. the leader moved: ask again
                for p, _ in entry.parts:
                    self._raw._leaders.pop((p.topic, p.partition), None)
            records = sum(p.records for p, _ in entry.parts)
            raise self._failed(future.exception, f"produce {records} records to {len(entry.parts)} partition(s)",
                               first.topic, first.partition)
        try:
            answers = {(t.name, part.index): part for t in future.value.responses for part in t.partition_responses}
            for p, size in entry.parts:
                self._check_answer(answers.get((p.topic, p.partition)), p, size)
        except KafkaBackupError:
            self._abandon_in_flight()
            raise

    def _check_answer(self, part: Any, sent: Outgoing, size: int) -> None:
        import kafka.errors as kerr

        where = f"produce {sent.records} records ({size} bytes)"
        at = f"{sent.topic}[{sent.partition}]: "
        if part is None:
            raise RetriableProduceError(f"{where}: the broker's answer left the partition out",
                                        topic=sent.topic, partition=sent.partition)
        code = int(part.error_code)
        if code == 0:
            if sent.expected_base is not None and int(part.base_offset) != sent.expected_base:
                raise RestoreError(
                    f"{at}{where}: the batch landed at offset {part.base_offset}, not {sent.expected_base}: "
                    "something else is writing to the target partition (a restore needs it to itself)")
            return
        error = kerr.for_code(code)
        detail = getattr(part, "error_message", None) or ""
        record_errors = "; ".join(str(getattr(e, "batch_index_error_message", "") or "")
                                  for e in (getattr(part, "record_errors", None) or ()))
        text = f"{where}: {error.__name__}" + "".join(f" ({t})" for t in (detail, record_errors) if t)
        if code in _FENCED:
            raise RestoreError(f"{at}{text}: another restore with the same transactional id "
                               f"({self.transactional_id}) took over")
        if getattr(error, "retriable", False) or code in _RESTARTABLE:
            if getattr(error, "retriable", False):
                self._raw._leaders.pop((sent.topic, sent.partition), None)
            raise RetriableProduceError(text, topic=sent.topic, partition=sent.partition)
        if isinstance(error(), kerr.AuthorizationError):
            raise translate_kafka_error(error(), where, topic=sent.topic, partition=sent.partition)
        raise RestoreError(at + text)

    def flush(self) -> None:
        """Wait for every batch sent; raises the first failure."""
        while self._in_flight:
            self._complete_oldest()

    def _abandon_in_flight(self) -> None:
        """Forget unanswered requests: only ever before a new epoch fences them or an abort."""
        self._in_flight.clear()

    # -- ending a transaction -------------------------------------------------------------------
    def _end(self, committed: bool) -> None:
        from kafka.protocol.producer import EndTxnRequest

        verb = "commit" if committed else "abort"

        def attempt() -> int:
            request = EndTxnRequest(transactional_id=self.transactional_id, producer_id=self.producer_id,
                                    producer_epoch=self.producer_epoch, committed=committed,
                                    max_version=_TXN_MAX_VERSION)
            return int(self._call(request, self._coordinator_id(), f"{verb} the transaction").error_code)

        self._retrying(f"{verb} the transaction", attempt)
        self._in_txn.clear()
        self._open = False

    def commit(self) -> None:
        """Wait for every batch, then commit.  A transaction that sent nothing just closes."""
        self.flush()
        if self._in_txn:
            self._end(True)
        self._open = False

    def abort(self) -> None:
        """Abort the open transaction (best effort after the answers in flight, bounded)."""
        with contextlib.suppress(KafkaBackupError):
            self.flush()
        if self._in_txn:
            self._end(False)
        self._open = False

    @property
    def in_transaction(self) -> bool:
        return self._open
