"""Fetch Kafka record batches verbatim, through kafka-python's internal network client.

Why this module exists: a backup stores the broker's record batches byte for byte (compressed,
with their CRCs, producer ids and control batches), so it never decodes or re-encodes records.
kafka-python's consumer has no way to hand out those bytes (``Fetcher`` decodes them into
``ConsumerRecord`` objects and drops control batches, ``last_stable_offset`` and
``log_start_offset``), so we send ``FetchRequest`` ourselves on kafka-python's own connections and
keep its SASL/SSL/OAuth/MSK-IAM support, ApiVersions negotiation and reconnect logic.

Why it is the only module that touches kafka-python internals: kafka-python 3.0.12 (pinned exactly
in ``pyproject.toml``) has no public raw-fetch API; every private name we rely on is listed in
:func:`check_internals`, which runs when :class:`RawKafka` is built, so an upgrade that changes
them fails loudly at start-up instead of corrupting a backup.  The internals used:

* ``kafka.net.compat.KafkaNetClient(**configs)`` and its ``_manager``
  (``kafka.net.manager.KafkaConnectionManager``: ``bootstrap``, ``run``, ``send``, ``close``,
  ``cluster``, ``broker_version_data``, ``_net``) and the manager's ``_net``
  (``kafka.net.selector.NetworkSelector``: ``start``, ``sleep``, ``close``).  The IO thread runs
  the selector, exactly as ``KafkaAdminClient`` does; :meth:`RawKafka.fetch` blocks on
  ``manager.run(coroutine)``.
* ``kafka.cluster.ClusterMetadata.refresh_metadata`` / ``broker_metadata`` (broker endpoints)
  and ``kafka.future.Future`` (what ``manager.send`` returns; awaited on the IO thread).
* ``kafka.protocol.consumer.FetchRequest`` / ``FetchResponse`` and
  ``kafka.protocol.metadata.MetadataRequest`` / ``MetadataResponse`` (``ApiMessage`` classes
  taking ``min_version=``/``max_version=``; the connection picks the highest version both sides
  support, from ``BrokerVersionData.api_version``).
* ``kafka.errors.for_code`` and the ``retriable`` flag of its classes.
* The receive path, for RawKafka's own connections only (see :func:`_read_frames`):
  ``kafka.net.transport.KafkaTCPTransport._read_from_sock`` is replaced (its ``_net``, ``_sock``,
  ``_read``, ``_closed``, ``_protocol``, ``last_read`` and ``abort``; ``KafkaSSLTransport``
  inherits it), ``kafka.protocol.parser.KafkaProtocol.receive_bytes`` is wrapped to take a whole
  frame (``_process_response``, ``_max_frame_size``, ``_receiving``, ``_header``), and
  ``KafkaConnection.data_received`` gets the frame.  Fetch requests are a ``FetchRequest``
  subclass whose ``header_class`` (a ``kafka.protocol.api_header.RequestHeader`` subclass) names
  our own response decoder in ``get_response_class``; both are built with ``init=False`` so
  kafka-python registers nothing new.

Fetch v4..12 is used: v4 is the first with ``isolation_level`` (read_committed) and
``aborted_transactions``; v13+ identifies topics by id instead of name (kafka-python's own
consumer also stops at 12).  Fetch sessions are not used (``session_id=0, session_epoch=-1``):
each call names its partitions and offsets explicitly, so there is no session state to lose on a
retry or a reconnect.  Leaders and leader epochs come from our own MetadataRequest (which never
auto-creates a topic); the epoch is sent as ``current_leader_epoch`` so a broker answers
FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH instead of serving a fetch routed on stale metadata.
"""

from __future__ import annotations

import inspect
import logging
import random
import ssl
import struct
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import kafka

from kafka_backup._batches import BatchFormatError, complete_length, scan
from kafka_backup._kafka_errors import bootstrap_causes, translate_bootstrap_failure, translate_kafka_error
from kafka_backup._kafka_errors import describe as _describe
from kafka_backup.errors import IncompatibleKafkaError, KafkaBackupError, KafkaClientError

_IMPORT_ERROR: ImportError | None = None
try:
    import kafka.errors as _kerr
    from kafka.cluster import ClusterMetadata
    from kafka.future import Future as _KafkaFuture
    from kafka.net.compat import KafkaNetClient
    from kafka.net.connection import KafkaConnection
    from kafka.net.manager import KafkaConnectionManager
    from kafka.net.selector import NetworkSelector
    from kafka.net.transport import KafkaTCPTransport
    from kafka.protocol.api_header import RequestHeader
    from kafka.protocol.broker_version_data import BrokerVersionData
    from kafka.protocol.consumer import FetchRequest, FetchResponse
    from kafka.protocol.metadata import MetadataRequest, MetadataResponse
    from kafka.protocol.parser import KafkaProtocol
except ImportError as _exc:  # reported by check_internals(), which every RawKafka runs first
    _IMPORT_ERROR = _exc

__all__ = ["FetchedPartition", "RawKafka", "check_internals"]

log = logging.getLogger(__name__)

PINNED_KAFKA_PYTHON = "3.0.12"
FETCH_MIN_VERSION = 4  # isolation_level + aborted_transactions
FETCH_MAX_VERSION = 12  # last version that names topics (v13+ uses topic ids)
METADATA_MIN_VERSION = 4  # first version honouring allow_auto_topic_creation=False
READ_COMMITTED = 1

# kafka-python's default (1 MB) would reject any real fetch response; the limit is only a guard
# against a corrupt frame length (buffers are sized by the actual frame), so it can be generous.
DEFAULT_RECEIVE_MESSAGE_MAX_BYTES = 256 << 20
_RESPONSE_OVERHEAD = 1 << 20  # headers, per-partition fields, aborted-transaction lists
_INT32_MAX = 2**31 - 1
_BACKOFF_INITIAL_S = 0.1
_BACKOFF_MAX_S = 2.0
_NO_LEADER = -1

_OFFSET_OUT_OF_RANGE = 1
_PAST_DEADLINE = "_kafka_backup_past_deadline"  # set on the timeout of a wait cut short by the caller's deadline
# Errors that mean "the protocol or format we speak is not what the broker speaks".
_INCOMPATIBLE_CODES = frozenset({35, 43, 76})  # UNSUPPORTED_VERSION, UNSUPPORTED_FOR_MESSAGE_FORMAT,
#                                                UNSUPPORTED_COMPRESSION_TYPE

# Client settings passed through to KafkaNetClient; kafka-python silently ignores unknown keys,
# which would hide a typo such as ``sasl_plain_pasword``, so we reject them instead.
_EXTRA_KWARGS = frozenset({"bootstrap_timeout_ms", "socks5_proxy"})


@dataclass(frozen=True, slots=True)
class FetchedPartition:
    """One partition's part of a fetch response, with the record batches kept as raw bytes.

    ``records`` holds whole v2 batches only: a trailing partial batch (the broker cuts at the byte
    limits) is dropped, and so are batches that end before ``fetch_offset``.  The first batch may
    start *before* ``fetch_offset`` when it is a compressed batch containing it; it is kept whole
    because a batch is the unit we store.  Control batches (transaction markers) are kept.
    ``records`` is a read-only view of the response frame as received (nothing was copied; the
    view keeps the frame's buffer from being reused), or ``b""``.

    ``aborted_transactions`` is ``(producer_id, first_offset)`` as the broker listed it for the
    returned range (read_committed); ``high_watermark``, ``last_stable_offset`` and
    ``log_start_offset`` are the broker's values, ``-1`` when the negotiated version lacks them
    (``log_start_offset`` needs fetch v5).  ``out_of_range`` is True when the broker answered
    OFFSET_OUT_OF_RANGE (``fetch_offset`` below the log start, e.g. retention or delete_records,
    or beyond the end, e.g. a recreated topic); ``records`` is then empty and the caller decides.
    """

    topic: str
    partition: int
    fetch_offset: int
    records: bytes | memoryview
    aborted_transactions: tuple[tuple[int, int], ...]
    high_watermark: int
    last_stable_offset: int
    log_start_offset: int
    out_of_range: bool


# --------------------------------------------------------------------------------------------
# Fetch responses, parsed in place


class FetchFrameError(ValueError):
    """A Fetch response body that does not parse as the negotiated version (names the field)."""


_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_ERROR_SESSION = struct.Struct(">hi")  # v7+: error_code, session_id
_PARTITION_V4 = struct.Struct(">ihqq")  # partition_index, error_code, high_watermark, last_stable_offset
_PARTITION_V5 = struct.Struct(">ihqqq")  # ... + log_start_offset
_ABORTED = struct.Struct(">qq")  # producer_id, first_offset
_FLEXIBLE_FROM = 12  # Fetch v12 is the first flexible version (compact lengths, tagged fields)


@dataclass(slots=True)
class RawPartitionData:
    """One partition of a Fetch response; ``records`` is a view into the response frame."""

    partition_index: int
    error_code: int
    high_watermark: int
    last_stable_offset: int
    log_start_offset: int  # -1 before v5
    aborted_transactions: tuple[tuple[int, int], ...] | None  # (producer_id, first_offset); None: null
    records: memoryview | None


@dataclass(slots=True)
class RawTopicData:
    topic: str
    partitions: list[RawPartitionData]


@dataclass(slots=True)
class RawFetchResponse:
    """A Fetch response as :func:`parse_fetch_response` reads it (the fields ``_parse`` uses).

    ``malformed`` is set instead of raising when the body does not parse: the error then reaches
    the fetch that asked, with the broker and version named, rather than the IO thread.
    """

    API_VERSION: int
    throttle_time_ms: int = 0
    error_code: int = 0
    session_id: int = 0
    responses: list[RawTopicData] | None = None
    malformed: str | None = None


class _Cursor:
    __slots__ = ("buf", "end", "pos")

    def __init__(self, buf: memoryview, pos: int = 0) -> None:
        self.buf = buf
        self.pos = pos
        self.end = len(buf)

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.end:
            raise FetchFrameError(f"{what} at byte {self.pos} needs {n} bytes, {self.end - self.pos} left")

    def unpack(self, st: struct.Struct, what: str) -> tuple[Any, ...]:
        self.need(st.size, what)
        values = st.unpack_from(self.buf, self.pos)
        self.pos += st.size
        return values

    def uvarint(self, what: str) -> int:
        value = shift = 0
        for _ in range(5):  # an unsigned varint of at most 32 bits
            self.need(1, what)
            byte = self.buf[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
        raise FetchFrameError(f"{what}: varint longer than 5 bytes before byte {self.pos}")

    def length(self, flexible: bool, what: str, st: struct.Struct = _I32) -> int:
        """An array/string/bytes length; -1 means null; any other negative length is an error."""
        n = self.uvarint(what) - 1 if flexible else int(self.unpack(st, what)[0])
        if n < -1:
            raise FetchFrameError(f"{what} is {n} before byte {self.pos}")
        return n

    def skip_tags(self, what: str) -> None:
        for _ in range(self.uvarint(f"{what} tagged-field count")):
            self.uvarint(f"{what} tag")
            size = self.uvarint(f"{what} tagged-field size")
            self.need(size, f"{what} tagged field")
            self.pos += size


def parse_fetch_response(body: memoryview, version: int) -> RawFetchResponse:
    """Parse a Fetch v4..12 response body (after the response header) without copying records.

    Why not kafka-python's decoder: it copies the frame once more and every partition's records
    into a new ``bytes``; here ``records`` are views into ``body``, so a batch's bytes are copied
    exactly once after the socket (into the segment block).  The whole body must be consumed:
    trailing bytes, a truncated field, a negative length or an over-long varint raise
    :class:`FetchFrameError` naming the field and byte position.
    """
    if not FETCH_MIN_VERSION <= version <= FETCH_MAX_VERSION:
        raise FetchFrameError(f"Fetch v{version} is outside v{FETCH_MIN_VERSION}..v{FETCH_MAX_VERSION}")
    flexible = version >= _FLEXIBLE_FROM
    c = _Cursor(body)
    (throttle,) = c.unpack(_I32, "throttle_time_ms")
    error_code = session_id = 0
    if version >= 7:
        error_code, session_id = c.unpack(_ERROR_SESSION, "error_code/session_id")
    fixed = _PARTITION_V5 if version >= 5 else _PARTITION_V4
    topics: list[RawTopicData] = []
    for _ in range(c.length(flexible, "responses count")):
        name_len = c.length(flexible, "topic name length", _I16)
        if name_len < 0:
            raise FetchFrameError(f"null topic name before byte {c.pos}")
        c.need(name_len, "topic name")
        try:
            name = str(c.buf[c.pos : c.pos + name_len], "utf-8")
        except UnicodeDecodeError as exc:
            raise FetchFrameError(f"topic name at byte {c.pos} is not UTF-8") from exc
        c.pos += name_len
        partitions: list[RawPartitionData] = []
        for _ in range(c.length(flexible, f"{name}: partitions count")):
            values = c.unpack(fixed, f"{name}: partition fields")
            index, code, high_watermark, last_stable = values[:4]
            log_start = values[4] if version >= 5 else -1
            n_aborted = c.length(flexible, f"{name}[{index}]: aborted_transactions count")
            aborted: tuple[tuple[int, int], ...] | None = None
            if n_aborted >= 0:
                listed = []
                for _ in range(n_aborted):
                    listed.append(c.unpack(_ABORTED, f"{name}[{index}]: aborted transaction"))
                    if flexible:
                        c.skip_tags(f"{name}[{index}]: aborted transaction")
                aborted = tuple(listed)
            if version >= 11:
                c.unpack(_I32, f"{name}[{index}]: preferred_read_replica")
            size = c.length(flexible, f"{name}[{index}]: records length")
            records = None
            if size >= 0:
                c.need(size, f"{name}[{index}]: records")
                records = c.buf[c.pos : c.pos + size]
                c.pos += size
            if flexible:
                c.skip_tags(f"{name}[{index}]: partition")
            partitions.append(RawPartitionData(index, code, high_watermark, last_stable, log_start, aborted, records))
        if flexible:
            c.skip_tags(f"{name}: topic")
        topics.append(RawTopicData(name, partitions))
    if flexible:
        c.skip_tags("response")
    if c.pos != c.end:
        raise FetchFrameError(f"{c.end - c.pos} bytes left over after the last field (at byte {c.pos})")
    return RawFetchResponse(version, throttle, error_code, session_id, topics)


@dataclass(frozen=True, slots=True)
class _ResponseHeader:
    correlation_id: int


class _RawFetchDecoder:
    """What kafka-python's parser calls ``response_type`` for our Fetch requests.

    ``KafkaProtocol._process_response(read_buffer)`` calls ``parse_header`` then ``decode`` on the
    class the request header names (our ``_RawFetchHeader`` names this); ``read_buffer`` is the
    frame (a :class:`_Frame`, or kafka-python's ``KafkaBytes``) positioned after the frame length.
    """

    __slots__ = ("version",)

    def __init__(self, version: int) -> None:
        self.version = version

    def __repr__(self) -> str:
        return f"RawFetchResponse_v{self.version}"

    def parse_header(self, read_buffer: Any) -> _ResponseHeader:
        c = _Cursor(read_buffer.view() if isinstance(read_buffer, _Frame) else memoryview(read_buffer),
                    read_buffer.tell())
        try:
            (correlation_id,) = c.unpack(_I32, "correlation_id")
            if self.version >= _FLEXIBLE_FROM:
                c.skip_tags("response header")
        except FetchFrameError as exc:
            raise _kerr.KafkaProtocolError(f"malformed Fetch v{self.version} response header: {exc}") from exc
        finally:
            c.buf.release()
        read_buffer.seek(c.pos)
        return _ResponseHeader(correlation_id)

    def decode(self, read_buffer: Any) -> RawFetchResponse:
        start = int(read_buffer.tell())
        body = read_buffer.view()[start:] if isinstance(read_buffer, _Frame) else memoryview(read_buffer.read())
        try:
            return parse_fetch_response(body, self.version)
        except FetchFrameError as exc:
            return RawFetchResponse(self.version, malformed=str(exc))


_RAW_FETCH_CLASSES: tuple[type, type] | None = None


def _raw_fetch_classes() -> tuple[type, type]:
    """FetchRequest/RequestHeader subclasses whose responses :func:`parse_fetch_response` parses.

    Built lazily because they subclass kafka-python classes (checked by :func:`check_internals`
    first).  ``init=False`` keeps kafka-python's metaclasses from registering them as a new API;
    the request encodes exactly as ``FetchRequest`` (same schema), only its header differs, and
    only in naming the response decoder.
    """
    global _RAW_FETCH_CLASSES
    if _RAW_FETCH_CLASSES is None:
        decoders = {v: _RawFetchDecoder(v) for v in range(FETCH_MIN_VERSION, FETCH_MAX_VERSION + 1)}

        class _RawFetchHeader(RequestHeader, init=False):  # type: ignore[call-arg,misc]
            __slots__ = ()

            def get_response_class(self) -> Any:
                return decoders.get(self.request_api_version)

        class _RawFetchRequest(FetchRequest, init=False):  # type: ignore[call-arg,misc]
            __slots__ = ()
            header_class = _RawFetchHeader

        _RAW_FETCH_CLASSES = (_RawFetchRequest, _RawFetchHeader)
    return _RAW_FETCH_CLASSES


class _Frame:
    """One whole response frame, received in place, file-like as kafka-python's ``KafkaBytes``.

    ``KafkaProtocol.receive_bytes`` takes it as is (see :func:`_receive_frames`): kafka-python's
    own decoders ``read`` it; :class:`_RawFetchDecoder` takes :meth:`view` slices instead.
    """

    __slots__ = ("_pos", "buf", "size")

    def __init__(self, buf: bytearray, size: int) -> None:
        self.buf = buf
        self.size = size
        self._pos = 0

    def __len__(self) -> int:
        return self.size

    def view(self) -> memoryview:
        return memoryview(self.buf)[: self.size]

    def read(self, nbytes: int | None = None) -> bytes:
        start = self._pos
        self._pos = self.size if nbytes is None else min(self.size, start + nbytes)
        return bytes(self.buf[start : self._pos])

    def seek(self, pos: int) -> None:
        self._pos = pos

    def tell(self) -> int:
        return self._pos


class _FramePool:
    """Receive buffers for large frames, reused once nothing views them any more.

    Why: a fresh buffer costs a page fault per 4 KiB as the socket fills it (on this class of VM
    a fresh 16 MiB mapping took 19 ms to fill, a reused buffer 1.6 ms), and letting ``malloc``
    recycle freed 16 MiB buffers from its heap fragments it, so peak RSS grew with the length of
    the run.  A buffer is free when it has no exported views (the records of a fetch are views
    of its frame, held until their segment is built): a ``bytearray`` with exports refuses to
    resize (``BufferError``), which is what :meth:`_free` asks, without reallocating.  At most
    ``keep`` buffers are kept (retained memory never exceeds what the run had in use at once);
    when all are in use a frame gets a buffer of its own.
    """

    MIN_FRAME = 1 << 16  # smaller frames (metadata, errors, empty fetches) get a buffer of their own
    GRANULE = 1 << 16
    #: Enough for two segments of views (one filling, one uploading) of 4 MiB fetches, plus slack.
    KEEP = 48

    def __init__(self, keep: int = KEEP) -> None:
        self._keep = keep
        self._buffers: list[bytearray] = []

    @staticmethod
    def _free(buf: bytearray) -> bool:
        try:
            del buf[-1:]  # shrinking by one byte and growing back stays inside the allocation
        except BufferError:
            return False
        buf.append(0)
        return True

    def take(self, size: int) -> bytearray:
        if size < self.MIN_FRAME:
            return bytearray(size)
        best: bytearray | None = None  # the smallest free buffer that fits: big ones stay for big frames
        for buf in self._buffers:
            if size <= len(buf) and (best is None or len(buf) < len(best)) and self._free(buf):
                best = buf
        if best is not None:
            return best
        buf = bytearray(-(-size // self.GRANULE) * self.GRANULE)
        if len(self._buffers) < self._keep:
            self._buffers.append(buf)
        else:  # keep the larger buffers: every size fits them
            for i, old in enumerate(self._buffers):
                if len(old) < len(buf) and self._free(old):
                    self._buffers[i] = buf
                    break
        return buf


#: Selectors (IO threads) of RawKafka instances -> their frame pools: these connections receive
#: frames in place (see _read_frames).
_FRAMED_SELECTORS: weakref.WeakKeyDictionary[Any, _FramePool] = weakref.WeakKeyDictionary()
_SOCKET_WAIT = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


async def _wait_readable(t: Any) -> None:
    """Wait until the transport's socket is readable, naming it by its descriptor.

    Why not the socket object: kafka-python registers the reader anew for every wait, and its
    "not registered yet" KeyError formats ``repr(socket)``, which asks the kernel for both
    addresses: about a tenth of the IO thread's time in a restore.  A closed socket (-1) is
    passed as the socket, so kafka-python reports it as it always did.
    """
    fd = t._sock.fileno()
    await t._net.wait_read(fd if fd >= 0 else t._sock)


async def _read_frames(transport: Any) -> None:
    """The receive loop of a RawKafka connection: each response frame straight into its own buffer.

    kafka-python's loop reads 4 KiB ``bytes`` at a time, joins them, slices them into the parser's
    frame buffer and copies that again to decode; a 16 MiB Fetch response costs four copies and
    4 000 Python-level reads on the IO thread (which holds the GIL while the main thread packs
    segments).  Here the 4-byte length is read first, then ``recv_into`` fills a buffer (from the
    selector's :class:`_FramePool`) in as few calls as the socket allows, and the whole frame
    goes to ``KafkaConnection.data_received`` (which pairs it with its request as usual).  The
    framing state lives on the transport, so it survives a pause/resume of reading; the buffer
    stays exported (``_kb_hold``) while it fills, so no other connection can take it.
    """
    t = transport
    if not hasattr(t, "_kb_head"):
        t._kb_head, t._kb_hpos, t._kb_frame, t._kb_fpos, t._kb_hold = bytearray(4), 0, None, 0, None
    while t._read and not t._closed:
        await _wait_readable(t)
        while t._read and not t._closed:
            frame = t._kb_frame
            target = memoryview(t._kb_head)[t._kb_hpos:] if frame is None else \
                memoryview(frame.buf)[t._kb_fpos : frame.size]
            try:
                n = t._sock.recv_into(target)
            except _SOCKET_WAIT:
                break
            except Exception as exc:
                log.debug("%s: receive failed: %s", t, exc)
                t.abort(error=_kerr.KafkaConnectionError(exc))
                return
            finally:
                target.release()
            if not n:
                t.abort(error=_kerr.KafkaConnectionError("socket disconnected"))
                return
            t.last_read = time.monotonic()
            protocol = t._protocol
            if protocol is not None and protocol._sensors:
                protocol._sensors.bytes_received.record(n)
            if frame is None:
                t._kb_hpos += n
                if t._kb_hpos < 4:
                    continue
                t._kb_hpos = 0
                size = int.from_bytes(t._kb_head, "big", signed=True)
                parser = getattr(protocol, "parser", None)
                limit = parser._max_frame_size if parser is not None else DEFAULT_RECEIVE_MESSAGE_MAX_BYTES
                if size < 0 or size > limit:
                    t.abort(error=_kerr.InvalidReceiveError(f"Invalid frame length: {size}"))
                    return
                pool = _FRAMED_SELECTORS.get(t._net) or _FramePool(0)
                frame = t._kb_frame = _Frame(pool.take(size), size)
                t._kb_fpos = 0
                t._kb_hold = memoryview(frame.buf)  # an export: the pool sees the buffer in use
            else:
                t._kb_fpos += n
            if t._kb_fpos == len(frame):
                t._kb_frame = None
                try:
                    protocol.data_received(frame)  # a fetch's records are views of the frame from here
                except _kerr.KafkaProtocolError as exc:
                    t.abort(error=exc)
                    return
                finally:
                    t._kb_hold.release()
                    t._kb_hold = None
    return None


def _receive_frames(original: Any) -> Any:
    """``KafkaProtocol.receive_bytes`` that also takes a whole :class:`_Frame` (no re-framing)."""

    def receive_bytes(self: Any, data: Any) -> Any:
        if type(data) is _Frame:
            if self._receiving or self._header.tell():
                raise _kerr.KafkaProtocolError("a whole frame arrived in the middle of a framed read")
            data.seek(0)
            return [self._process_response(data)]
        return original(self, data)

    receive_bytes._kafka_backup_frames = True  # type: ignore[attr-defined]
    return receive_bytes


# --------------------------------------------------------------------------------------------
# check_internals


_checked = False


def check_internals() -> None:
    """Fail loudly if the kafka-python internals this module relies on are not as verified.

    Why: :class:`RawKafka` uses private kafka-python classes that may change in any release, and
    a silent change (a renamed field decoding as its default, say) could produce a backup that
    looks fine and is not.  The version must equal the pin; then every class, method, attribute,
    request field and version range used here is checked, and offline at v4 and v12 our request
    must encode exactly as kafka-python's and a response kafka-python encodes must come back
    through ``KafkaProtocol`` and our decoder with every field, and the records as a view of the
    frame.  Raises
    :class:`IncompatibleKafkaError` naming everything that differs.  The result is cached.
    """
    global _checked
    if _checked:
        return
    installed = getattr(kafka, "__version__", "unknown")
    if _IMPORT_ERROR is not None:
        raise IncompatibleKafkaError(
            f"kafka-python {installed}: a module kafka_backup relies on cannot be imported "
            f"({_IMPORT_ERROR}); kafka_backup._kafka_raw was verified against {PINNED_KAFKA_PYTHON} "
            "and must be re-verified for this version"
        ) from _IMPORT_ERROR
    if installed != PINNED_KAFKA_PYTHON:
        raise IncompatibleKafkaError(
            f"kafka-python {installed} is installed, but kafka_backup._kafka_raw uses its internals "
            f"as verified for {PINNED_KAFKA_PYTHON} only; the pin must be re-verified (run "
            "tests/integration/test_kafka_raw.py) before changing it"
        )
    problems: list[str] = []
    try:
        _check_classes(problems)
        _check_transport(problems)
        _check_fields(problems)
        _check_errors(problems)
        if not problems:
            _check_roundtrip(problems)
    except Exception as exc:  # any surprise while probing is itself a changed internal
        problems.append(f"probing kafka-python raised {type(exc).__name__}: {exc}")
    if problems:
        raise IncompatibleKafkaError(
            f"kafka-python {installed} internals differ from what kafka_backup._kafka_raw expects: "
            + "; ".join(problems)
        )
    _install_io_patches()
    _checked = True


def _install_io_patches() -> None:
    """Patch kafka-python 3.0.12's receive path (once, for the exact version pinned).

    1. A race that hides why a broker closed a connection: when a broker answers a SASL handshake
       with an error (a wrong password) and closes the socket, both usually arrive in one read;
       ``KafkaTCPTransport._read_from_sock`` then sees the close and aborts *without* handing the
       bytes already received to the protocol, so the client reports "socket disconnected"
       instead of ``SaslAuthenticationFailedError`` and a wrong password looks like an outage.
       This version delivers the received bytes first, then aborts.
    2. Connections of a :class:`RawKafka` (their selector is in ``_FRAMED_SELECTORS``) receive
       whole frames in place (:func:`_read_frames`); ``KafkaProtocol.receive_bytes`` accepts such
       a frame without re-framing it.  Other clients in the process keep kafka-python's path.
    """
    if getattr(KafkaTCPTransport._read_from_sock, "_kafka_backup_fixed", False):
        return

    async def _read_from_sock(self: Any) -> Any:
        if self._net in _FRAMED_SELECTORS:
            return await _read_frames(self)
        while self._read and not self._closed:
            await _wait_readable(self)
            received, error = self._sock_recv()
            if received:
                self.last_read = time.monotonic()
                if self._protocol and self._protocol._sensors:
                    self._protocol._sensors.bytes_received.record(len(received))
                try:
                    self._protocol.data_received(received)
                except _kerr.KafkaProtocolError as exc:
                    return self.abort(error=exc)
                if error:
                    # Let the protocol act on what arrived first; the next read sees the close again.
                    await self._net.sleep(0)
                    continue
            if error:
                return self.abort(error=error)
        return None

    _read_from_sock._kafka_backup_fixed = True  # type: ignore[attr-defined]
    if not getattr(KafkaProtocol.receive_bytes, "_kafka_backup_frames", False):
        KafkaProtocol.receive_bytes = _receive_frames(KafkaProtocol.receive_bytes)
    KafkaTCPTransport._read_from_sock = _read_from_sock


def _need(problems: list[str], obj: Any, name: str, *, params: tuple[str, ...] = (),
          coroutine: bool = False) -> None:
    qual = f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', obj)}.{name}"
    attr = inspect.getattr_static(obj, name, None)
    if attr is None:
        problems.append(f"{qual} is missing")
        return
    func: Any = attr.fget if isinstance(attr, property) else attr
    if isinstance(func, (staticmethod, classmethod)):
        func = func.__func__
    if coroutine and not inspect.iscoroutinefunction(func):
        problems.append(f"{qual} is no longer a coroutine function")
    if params:
        try:
            have = inspect.signature(func).parameters
        except (TypeError, ValueError):
            problems.append(f"{qual} has no inspectable signature")
            return
        missing = [p for p in params if p not in have]
        if missing:
            problems.append(f"{qual} lost parameter(s) {', '.join(missing)}")


def _check_transport(problems: list[str]) -> None:
    from kafka.net.transport import KafkaSSLTransport, KafkaTCPTransport

    _need(problems, KafkaTCPTransport, "_read_from_sock", coroutine=True)
    for cls in (KafkaTCPTransport, KafkaSSLTransport):
        _need(problems, cls, "_sock_recv")
    _need(problems, KafkaTCPTransport, "abort", params=("error",))
    if "_read_from_sock" in vars(KafkaSSLTransport) or not issubclass(KafkaSSLTransport, KafkaTCPTransport):
        problems.append("KafkaSSLTransport no longer inherits KafkaTCPTransport._read_from_sock")
    probe = KafkaTCPTransport(None, None)
    for attr in ("_net", "_sock", "_read", "_closed", "_protocol", "last_read"):
        if not hasattr(probe, attr):
            problems.append(f"KafkaTCPTransport instances lost attribute {attr!r}")
    for name in ("KafkaProtocolError", "InvalidReceiveError", "KafkaConnectionError"):
        if getattr(_kerr, name, None) is None:
            problems.append(f"kafka.errors.{name} is missing")
    # The in-place frame path (_read_frames, _receive_frames, _RawFetchDecoder).
    _need(problems, KafkaConnection, "data_received", params=("data",))
    _need(problems, KafkaProtocol, "receive_bytes", params=("data",))
    _need(problems, KafkaProtocol, "_process_response", params=("read_buffer",))
    _need(problems, KafkaProtocol, "send_request", params=("request",))
    parser = KafkaProtocol(client_id="probe", receive_message_max_bytes=12345)
    if getattr(parser, "_max_frame_size", None) != 12345:
        problems.append("KafkaProtocol._max_frame_size no longer holds receive_message_max_bytes")
    if getattr(parser, "_receiving", None) is not False or not callable(getattr(getattr(parser, "_header", None),
                                                                                   "tell", None)):
        problems.append("KafkaProtocol lost its framing state (_receiving, _header)")
    _need(problems, RequestHeader, "get_response_class")
    _need(problems, FetchRequest, "with_header", params=("correlation_id", "client_id"))
    _need(problems, FetchRequest, "header_class")


def _check_classes(problems: list[str]) -> None:
    _need(problems, KafkaNetClient, "__init__", params=("configs",))
    _need(problems, KafkaNetClient, "close")
    for name, params in (("bootstrap", ("timeout_ms",)), ("run", ("coro",)),
                         ("send", ("request", "node_id", "request_timeout_ms")), ("close", ())):
        _need(problems, KafkaConnectionManager, name, params=params)
    _need(problems, KafkaConnectionManager, "wait_for", params=("future", "timeout_ms"), coroutine=True)
    _need(problems, KafkaConnectionManager, "broker_version")
    _need(problems, _KafkaFuture, "failure", params=("e",))
    _need(problems, _KafkaFuture, "__await__")
    for key in ("bootstrap_servers", "receive_message_max_bytes", "request_timeout_ms",
                "security_protocol", "sasl_mechanism", "ssl_cafile"):
        if key not in getattr(KafkaConnectionManager, "DEFAULT_CONFIG", {}):
            problems.append(f"KafkaConnectionManager.DEFAULT_CONFIG lost {key!r}")
    if "receive_message_max_bytes" not in getattr(KafkaConnection, "DEFAULT_CONFIG", {}):
        problems.append("KafkaConnection.DEFAULT_CONFIG lost 'receive_message_max_bytes'")
    for name, params in (("start", ()), ("close", ()), ("sleep", ("delay",)), ("run", ("coro",))):
        _need(problems, NetworkSelector, name, params=params)
    _need(problems, ClusterMetadata, "refresh_metadata", params=("node_id",), coroutine=True)
    _need(problems, ClusterMetadata, "broker_metadata", params=("broker_id",))
    _need(problems, BrokerVersionData, "api_version", params=("operation", "min_version", "max_version"))
    for cls, api_key in ((FetchRequest, 1), (MetadataRequest, 3)):
        if getattr(cls, "API_KEY", None) != api_key:
            problems.append(f"{cls.__name__}.API_KEY is not {api_key}")
    lo, hi = getattr(FetchRequest, "valid_versions", (99, -1)) or (99, -1)
    if not (lo <= FETCH_MIN_VERSION and hi >= FETCH_MAX_VERSION):
        problems.append(f"FetchRequest versions {lo}..{hi} no longer cover "
                        f"{FETCH_MIN_VERSION}..{FETCH_MAX_VERSION}")


# (container, field, first version that must have it, last version that must have it)
def _field_specs() -> list[tuple[Any, str, int, int]]:
    ft, fp = FetchRequest.FetchTopic, FetchRequest.FetchTopic.FetchPartition
    rt = FetchResponse.FetchableTopicResponse
    rp = rt.PartitionData
    mt = MetadataResponse.MetadataResponseTopic
    lo, hi = FETCH_MIN_VERSION, FETCH_MAX_VERSION
    return [
        (FetchRequest, "replica_id", lo, hi), (FetchRequest, "max_wait_ms", lo, hi),
        (FetchRequest, "min_bytes", lo, hi), (FetchRequest, "max_bytes", lo, hi),
        (FetchRequest, "isolation_level", lo, hi), (FetchRequest, "session_id", 7, hi),
        (FetchRequest, "session_epoch", 7, hi), (FetchRequest, "topics", lo, hi),
        (FetchRequest, "forgotten_topics_data", 7, hi), (FetchRequest, "rack_id", 11, hi),
        (ft, "topic", lo, hi), (ft, "partitions", lo, hi),
        (fp, "partition", lo, hi), (fp, "current_leader_epoch", 9, hi), (fp, "fetch_offset", lo, hi),
        (fp, "last_fetched_epoch", 12, hi), (fp, "log_start_offset", 5, hi),
        (fp, "partition_max_bytes", lo, hi),
        (FetchResponse, "error_code", 7, hi), (FetchResponse, "responses", lo, hi),
        (rt, "topic", lo, hi), (rt, "partitions", lo, hi),
        (rp, "partition_index", lo, hi), (rp, "error_code", lo, hi), (rp, "high_watermark", lo, hi),
        (rp, "last_stable_offset", lo, hi), (rp, "log_start_offset", 5, hi),
        (rp, "aborted_transactions", lo, hi), (rp, "records", lo, hi),
        (rp.AbortedTransaction, "producer_id", lo, hi), (rp.AbortedTransaction, "first_offset", lo, hi),
        (MetadataRequest, "topics", METADATA_MIN_VERSION, METADATA_MIN_VERSION),
        (MetadataRequest, "allow_auto_topic_creation", METADATA_MIN_VERSION, METADATA_MIN_VERSION),
        (MetadataRequest.MetadataRequestTopic, "name", METADATA_MIN_VERSION, METADATA_MIN_VERSION),
        (MetadataResponse, "brokers", METADATA_MIN_VERSION, METADATA_MIN_VERSION),
        (MetadataResponse, "topics", METADATA_MIN_VERSION, METADATA_MIN_VERSION),
        (mt, "error_code", METADATA_MIN_VERSION, METADATA_MIN_VERSION),
        (mt, "name", METADATA_MIN_VERSION, METADATA_MIN_VERSION),
        (mt, "partitions", METADATA_MIN_VERSION, METADATA_MIN_VERSION),
        (mt.MetadataResponsePartition, "partition_index", METADATA_MIN_VERSION, METADATA_MIN_VERSION),
        (mt.MetadataResponsePartition, "error_code", METADATA_MIN_VERSION, METADATA_MIN_VERSION),
        (mt.MetadataResponsePartition, "leader_id", METADATA_MIN_VERSION, METADATA_MIN_VERSION),
        (mt.MetadataResponsePartition, "leader_epoch", 7, 7),
    ]


def _check_fields(problems: list[str]) -> None:
    for container, name, first, last in _field_specs():
        fields = getattr(container, "fields", None) or {}
        where = f"{container.__name__}.{name}"
        field = fields.get(name)
        if field is None:
            problems.append(f"field {where} is missing")
            continue
        for version in range(first, last + 1):
            if not field.for_version_q(version):
                problems.append(f"field {where} is absent at v{version}")
                break


def _check_errors(problems: list[str]) -> None:
    if not callable(getattr(_kerr, "for_code", None)):
        problems.append("kafka.errors.for_code is missing")
        return
    expected = {0: "NoError", 1: "OffsetOutOfRangeError", 6: "NotLeaderForPartitionError",
                29: "TopicAuthorizationFailedError", 35: "UnsupportedVersionError"}
    for code, name in expected.items():
        got = getattr(_kerr.for_code(code), "__name__", None)
        if got != name:
            problems.append(f"kafka.errors.for_code({code}) is {got}, expected {name}")
    for name in ("NotLeaderForPartitionError", "FencedLeaderEpochError", "UnknownLeaderEpochError",
                 "LeaderNotAvailableError", "UnknownTopicOrPartitionError", "KafkaStorageError",
                 "NotEnoughReplicasError", "ReplicaNotAvailableError", "KafkaConnectionError",
                 "RequestTimedOutError", "NodeNotReadyError", "KafkaTimeoutError"):
        cls = getattr(_kerr, name, None)
        if cls is None or getattr(cls, "retriable", None) is not True:
            problems.append(f"kafka.errors.{name} is missing or no longer retriable")
    for name in ("KafkaError", "IncompatibleBrokerVersion", "UnknownBrokerIdError", "InvalidReceiveError"):
        if getattr(_kerr, name, None) is None:
            problems.append(f"kafka.errors.{name} is missing")


def _check_roundtrip(problems: list[str]) -> None:
    """Offline, at both ends of the version range: our request encodes as kafka-python's
    FetchRequest, and a response kafka-python encodes comes back through ``KafkaProtocol`` (as a
    whole :class:`_Frame`, as :func:`_read_frames` delivers it) parsed by our decoder, with the
    records as a view into the frame."""
    records = b"\x00\x01raw batch bytes\xff" * 3
    for version in (FETCH_MIN_VERSION, FETCH_MAX_VERSION):
        request = _fetch_request({("t", 0): (5, -1)}, [("t", 0)], max_wait_ms=1, max_bytes=1,
                                 partition_max_bytes=1)
        plain = FetchRequest(**{name: getattr(request, name) for name in FetchRequest.fields})
        plain.with_header(correlation_id=9, client_id="probe")
        parser = KafkaProtocol(client_id="probe", receive_message_max_bytes=1 << 20)
        request.API_VERSION = plain.API_VERSION = version
        correlation_id = parser.send_request(request)
        sent = parser.send_bytes()
        plain.with_header(correlation_id=correlation_id, client_id="probe")
        if sent != plain.encode(framed=True, header=True):
            problems.append(f"FetchRequest v{version} encodes differently from kafka-python's")
            continue
        rt = FetchResponse.FetchableTopicResponse
        rp = rt.PartitionData
        response = FetchResponse(
            throttle_time_ms=0, error_code=0, session_id=0,
            responses=[rt(topic="t", partitions=[rp(
                partition_index=3, error_code=0, high_watermark=11, last_stable_offset=10,
                log_start_offset=2, preferred_read_replica=-1, records=records,
                aborted_transactions=[rp.AbortedTransaction(producer_id=7, first_offset=4)])])],
            version=version)
        response.with_header(correlation_id=correlation_id)
        body = response.encode(header=True)
        frame = _Frame(bytearray(body) + b"padding", len(body))  # a pooled buffer may be longer
        out = _receive_frames(KafkaProtocol.receive_bytes)(parser, frame)  # patched only after the checks
        got: Any = None
        if len(out) == 1 and out[0][0] == correlation_id and isinstance(out[0][1], RawFetchResponse):
            decoded = out[0][1]
            topic = decoded.responses[0] if decoded.responses else None
            part = topic.partitions[0] if topic is not None and topic.partitions else None
            got = None if topic is None or part is None else (
                topic.topic, part.partition_index, part.high_watermark, part.last_stable_offset,
                part.log_start_offset if version >= 5 else 2, bytes(part.records or b""), part.aborted_transactions,
                isinstance(part.records, memoryview) and part.records.obj is frame.buf, decoded.malformed)
        want = ("t", 3, 11, 10, 2, records, ((7, 4),), True, None)
        if got != want:
            problems.append(f"FetchResponse v{version} through KafkaProtocol gave {got!r}, expected {want!r}")


# --------------------------------------------------------------------------------------------
# RawKafka


TopicPartitionKey = tuple[str, int]
_Outcome = FetchedPartition | str  # a result, or the reason to retry the partition


def _fetch_request(parts: Mapping[TopicPartitionKey, tuple[int, int]], order: list[TopicPartitionKey], *,
                   max_wait_ms: int, max_bytes: int, partition_max_bytes: int) -> Any:
    """Build a sessionless read_committed FetchRequest; ``parts`` maps tp -> (offset, leader epoch).

    Topics appear in the order of their first partition in ``order`` (the broker fills the
    response in request order until ``max_bytes``).
    """
    ft = FetchRequest.FetchTopic
    fp = ft.FetchPartition
    by_topic: dict[str, list[Any]] = {}
    for topic, partition in order:
        offset, epoch = parts[(topic, partition)]
        by_topic.setdefault(topic, []).append(fp(
            partition=partition, current_leader_epoch=epoch, fetch_offset=offset,
            last_fetched_epoch=-1, log_start_offset=-1, partition_max_bytes=partition_max_bytes))
    request_class = _raw_fetch_classes()[0]
    return request_class(
        replica_id=-1, max_wait_ms=max_wait_ms, min_bytes=1, max_bytes=max_bytes,
        isolation_level=READ_COMMITTED, session_id=0, session_epoch=-1,
        topics=[ft(topic=t, partitions=ps) for t, ps in by_topic.items()],
        forgotten_topics_data=[], rack_id="",
        min_version=FETCH_MIN_VERSION, max_version=FETCH_MAX_VERSION)


def _allowed_client_kwargs() -> frozenset[str]:
    keys: set[str] = set(_EXTRA_KWARGS)
    for cls in (KafkaConnectionManager, KafkaConnection, NetworkSelector):
        keys.update(getattr(cls, "DEFAULT_CONFIG", {}))
    return frozenset(keys)


class RawKafka:
    """A read-only Kafka client that returns record batches as the broker sent them.

    ``client_kwargs`` go to ``KafkaNetClient`` (``bootstrap_servers``, ``client_id``,
    ``security_protocol``, ``ssl_*``, ``sasl_mechanism``, ``sasl_plain_username``/``password``,
    ``sasl_oauth_token_provider``, ``request_timeout_ms``, ``receive_message_max_bytes`` …);
    unknown keys raise ``TypeError`` because kafka-python would silently ignore them.
    ``bootstrap_timeout_ms`` (default 30 000) bounds the eager bootstrap in the constructor, which
    also checks that the broker speaks Fetch v4..12 (:class:`IncompatibleKafkaError` otherwise).

    One IO thread per instance, like kafka-python's admin client; :meth:`fetch` may be called from
    any thread.  Always :meth:`close` it (or use ``with``).
    """

    def __init__(self, **client_kwargs: Any) -> None:
        check_internals()
        self._closed = True  # until the client exists, close() has nothing to do
        unknown = set(client_kwargs) - _allowed_client_kwargs()
        if unknown:
            raise TypeError(f"RawKafka got unknown client setting(s): {', '.join(sorted(unknown))}")
        bootstrap_timeout_ms = int(client_kwargs.pop("bootstrap_timeout_ms", 30_000))
        client_kwargs.setdefault("receive_message_max_bytes", DEFAULT_RECEIVE_MESSAGE_MAX_BYTES)
        self._receive_max = int(client_kwargs["receive_message_max_bytes"])
        self._request_timeout_ms = int(client_kwargs.get("request_timeout_ms", 30_000))
        self._servers = client_kwargs.get("bootstrap_servers", "localhost:9092")
        # (topic, partition) -> (leader node id, leader epoch); filled from our own metadata requests
        self._leaders: dict[TopicPartitionKey, tuple[int, int]] = {}
        self._rotation = 0
        try:
            self._client = KafkaNetClient(**client_kwargs)
        except Exception as exc:
            raise _translate(exc, f"cannot create a Kafka client for {self._servers}") from exc
        self._closed = False
        try:
            self._manager = self._client._manager
            self._net = self._manager._net
            self._cluster = self._manager.cluster
            _FRAMED_SELECTORS[self._net] = _FramePool()  # before any connection exists (see _read_frames)
        except AttributeError as exc:
            self.close()
            raise IncompatibleKafkaError(f"kafka-python's KafkaNetClient changed shape: {exc}") from exc
        try:
            self._net.start()
            with bootstrap_causes() as causes:
                try:
                    self._manager.bootstrap(timeout_ms=bootstrap_timeout_ms)
                except _kerr.KafkaTimeoutError as exc:
                    raise translate_bootstrap_failure(exc, causes, f"cannot bootstrap from {self._servers}") \
                        from exc
            versions = self._manager.broker_version_data
            self.broker_version: tuple[int, ...] = tuple(versions.broker_version)
            self.fetch_version: int = int(versions.api_version(
                FetchRequest, min_version=FETCH_MIN_VERSION, max_version=FETCH_MAX_VERSION))
        except Exception as exc:
            self.close()
            raise _translate(exc, f"cannot bootstrap from {self._servers}") from exc
        log.info("connected to Kafka %s at %s; Fetch v%d (read_committed, no fetch session)",
                 ".".join(map(str, self.broker_version)), self._servers, self.fetch_version)

    def __enter__(self) -> RawKafka:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections and stop the IO thread. Idempotent; never raises."""
        if self._closed:
            return
        self._closed = True
        try:
            self._client.close()  # manager.close() + selector.close(), which joins the IO thread
        except Exception:
            log.warning("error while closing the Kafka client", exc_info=True)

    # ----------------------------------------------------------------------------------------

    def fetch(self, offsets: Mapping[tuple[str, int], int], *, max_wait_ms: int = 500,
              max_bytes: int = 50 << 20, partition_max_bytes: int = 8 << 20,
              timeout_s: float = 30.0) -> dict[tuple[str, int], FetchedPartition]:
        """Fetch from each ``(topic, partition)`` at its offset; one FetchRequest per leader.

        Returns a result for every requested partition (possibly with empty ``records``: nothing
        new, or only an open transaction above the last stable offset; the caller loops).
        Retriable failures (leader moves, unknown leader epochs, connection errors, timeouts …)
        refresh the metadata and retry that partition with backoff until ``timeout_s``, then raise
        :class:`KafkaClientError` naming it.  Non-retriable broker errors (authorization, corrupt
        message …) raise at once; protocol/format mismatches raise :class:`IncompatibleKafkaError`.
        """
        if self._closed:
            raise KafkaClientError("the Kafka client is closed")
        for name, value in (("max_bytes", max_bytes), ("partition_max_bytes", partition_max_bytes),
                            ("max_wait_ms", max_wait_ms + 1)):
            if not 0 < value <= _INT32_MAX:
                raise ValueError(f"{name} out of range: {value}")
        if max_bytes + partition_max_bytes + _RESPONSE_OVERHEAD > self._receive_max:
            raise ValueError(f"max_bytes + partition_max_bytes ({max_bytes} + {partition_max_bytes}) "
                             f"exceed receive_message_max_bytes ({self._receive_max}) less overhead")
        wanted: dict[TopicPartitionKey, int] = {}
        for (topic, partition), offset in offsets.items():
            if offset < 0:
                raise ValueError(f"{topic}[{partition}]: fetch offset must be >= 0, got {offset}")
            wanted[(topic, partition)] = int(offset)
        if not wanted:
            return {}
        deadline = time.monotonic() + timeout_s
        self._rotation += 1
        try:
            result: dict[TopicPartitionKey, FetchedPartition] = self._manager.run(
                self._fetch_async, wanted, max_wait_ms, max_bytes, partition_max_bytes, deadline)
        except KafkaBackupError:
            raise
        except Exception as exc:
            raise _translate(exc, "fetch failed") from exc
        return result

    async def _fetch_async(self, wanted: dict[TopicPartitionKey, int], max_wait_ms: int,
                           max_bytes: int, partition_max_bytes: int,
                           deadline: float) -> dict[TopicPartitionKey, FetchedPartition]:
        """Runs on the IO thread: route, send, parse, retry until done or past ``deadline``."""
        results: dict[TopicPartitionKey, FetchedPartition] = {}
        # The broker fills a response in request order and gives a partition nothing when its
        # first batch does not fit in what is left of max_bytes (only the first partition may
        # exceed it, KIP-74).  Rotating the order on every call keeps late partitions from
        # starving while early ones have a backlog.
        pending = sorted(wanted)
        shift = self._rotation % len(pending)
        pending = pending[shift:] + pending[:shift]
        reasons: dict[TopicPartitionKey, str] = {}
        attempt = 0
        started = time.monotonic()
        while pending:
            retry: list[TopicPartitionKey] = []
            await self._ensure_leaders([tp for tp in pending if tp not in self._leaders], reasons,
                                       deadline)
            by_leader: dict[int, list[TopicPartitionKey]] = {}
            for tp in pending:
                leader = self._leaders.get(tp)
                if leader is None:
                    retry.append(tp)
                else:
                    by_leader.setdefault(leader[0], []).append(tp)
            sent = []
            for node_id, tps in by_leader.items():
                request = _fetch_request({tp: (wanted[tp], self._leaders[tp][1]) for tp in tps}, tps,
                                         max_wait_ms=max_wait_ms, max_bytes=max_bytes,
                                         partition_max_bytes=partition_max_bytes)
                sent.append((node_id, tps, self._send(request, node_id, max_wait_ms, deadline)))
            for node_id, tps, future in sent:
                try:
                    response = await self._until(future, deadline)
                except Exception as exc:
                    reason = self._request_failed(exc, node_id)
                    for tp in tps:
                        if not (getattr(exc, _PAST_DEADLINE, False) and tp in reasons):  # keep the real error
                            reasons[tp] = reason
                        retry.append(tp)
                    continue
                for tp, outcome in self._parse(response, node_id, tps, wanted).items():
                    if isinstance(outcome, FetchedPartition):
                        results[tp] = outcome
                    else:
                        reasons[tp] = outcome
                        self._leaders.pop(tp, None)
                        retry.append(tp)
            pending = retry
            if not pending:
                break
            now = time.monotonic()
            if now >= deadline:
                tp = next((tp for tp in pending if tp in reasons), pending[0])
                raise KafkaClientError(
                    f"fetch at offset {wanted[tp]} still failing after {attempt} retries in "
                    f"{now - started:.1f}s (the timeout): {reasons.get(tp, 'no leader known')}"
                    + (f" (and {len(pending) - 1} more partition(s))" if len(pending) > 1 else ""),
                    topic=tp[0], partition=tp[1])
            attempt += 1
            delay = min(_BACKOFF_MAX_S, _BACKOFF_INITIAL_S * 2 ** (attempt - 1)) * random.uniform(0.8, 1.2)
            log.debug("fetch: retrying %d partition(s) in %.2fs: %s", len(pending), delay,
                      {f"{t}[{p}]": reasons.get((t, p)) for t, p in pending})
            await self._net.sleep(min(delay, max(0.0, deadline - now)))
        if attempt:
            # Once per fetch that needed retries (never per retry): what failed and for how long.
            error = next(reversed(reasons.values()), "no leader known")
            log.info("fetch of %d partition(s) from %s recovered after %d retries in %.1fs (error: %s)",
                     len(wanted), self._servers, attempt, time.monotonic() - started, error)
        return {tp: results[tp] for tp in wanted}

    def _send(self, request: Any, node_id: int | None, max_wait_ms: int, deadline: float) -> Any:
        """Send on the IO thread; returns a kafka Future (a failed one for synchronous errors)."""
        remaining_ms = int((deadline - time.monotonic()) * 1000)
        # A fetch legitimately takes up to max_wait_ms; beyond that, wait no longer than the normal
        # request timeout nor (much) past the caller's deadline.  kafka-python closes the
        # connection when a request times out.
        timeout_ms = max_wait_ms + max(1000, min(self._request_timeout_ms, remaining_ms))
        try:
            return self._manager.send(request, node_id=node_id, request_timeout_ms=timeout_ms)
        except Exception as exc:  # e.g. UnknownBrokerIdError, a cached authentication failure
            return _KafkaFuture().failure(exc)

    async def _until(self, future: Any, deadline: float) -> Any:
        """Await a request's future, but no longer than ``deadline``.

        Why: kafka-python starts a request's timeout when the request is *sent*; one queued behind
        a connection that is still being set up (or a half-open one that swallows bytes until its
        own timeout closes it) waits that long first.  The deadline is the caller's, so it wins;
        the timeout is a retriable ``KafkaTimeoutError``, handled like any other, but marked so that
        it does not replace the error that made the request worth retrying in the first place.
        """
        try:
            return await self._manager.wait_for(future, max(1.0, (deadline - time.monotonic()) * 1000))
        except _kerr.KafkaTimeoutError as exc:
            setattr(exc, _PAST_DEADLINE, True)
            raise

    def _request_failed(self, exc: BaseException, node_id: int) -> str:
        """Classify a failed request: return a reason to retry, or raise."""
        if isinstance(exc, _kerr.UnknownBrokerIdError):
            # The leader is a broker kafka-python's cluster view has not seen yet: forgetting the
            # leaders makes _ensure_leaders re-learn them and refresh that view.
            for tp in [tp for tp, (node, _) in self._leaders.items() if node == node_id]:
                del self._leaders[tp]
            return f"broker {node_id} unknown to the client yet"
        if isinstance(exc, _kerr.KafkaError) and exc.retriable:
            for tp in [tp for tp, (node, _) in self._leaders.items() if node == node_id]:
                del self._leaders[tp]
            return f"request to broker {node_id} failed: {_describe(exc)}"
        raise _translate(exc, f"fetch request to broker {node_id} failed")

    def _parse(self, response: Any, node_id: int, tps: list[TopicPartitionKey],
               wanted: Mapping[TopicPartitionKey, int]) -> dict[TopicPartitionKey, _Outcome]:
        """Per requested partition: a result, or the reason (str) to retry it; raises otherwise."""
        out: dict[TopicPartitionKey, _Outcome] = {}
        version = response.API_VERSION
        if getattr(response, "malformed", None):
            raise KafkaClientError(f"broker {node_id} sent a malformed Fetch v{version} response for "
                                   f"{len(tps)} partition(s): {response.malformed}", topic=tps[0][0],
                                   partition=tps[0][1] if len(tps) == 1 else None)
        top_error = getattr(response, "error_code", 0) or 0
        if top_error:  # v7+: the whole request failed (e.g. throttled or invalid request)
            for tp in tps:
                out[tp] = _classify_partition_error(top_error, tp, wanted[tp], node_id, version)
            return out
        asked = set(tps)
        for topic_data in response.responses or ():
            for part in topic_data.partitions:
                tp = (topic_data.topic, part.partition_index)
                if tp not in asked:
                    continue
                code = part.error_code
                if code == 0:
                    out[tp] = _partition_result(tp, wanted[tp], part, node_id)
                elif code == _OFFSET_OUT_OF_RANGE:
                    out[tp] = FetchedPartition(
                        topic=tp[0], partition=tp[1], fetch_offset=wanted[tp], records=b"",
                        aborted_transactions=(), high_watermark=int(part.high_watermark),
                        last_stable_offset=int(part.last_stable_offset),
                        log_start_offset=int(part.log_start_offset), out_of_range=True)
                else:
                    out[tp] = _classify_partition_error(code, tp, wanted[tp], node_id, version)
        for tp in tps:
            out.setdefault(tp, f"broker {node_id} left the partition out of its fetch response")
        return out

    async def _ensure_leaders(self, missing: list[TopicPartitionKey], reasons: dict[TopicPartitionKey, str],
                              deadline: float) -> None:
        """Learn leaders (and epochs) for ``missing`` with our own MetadataRequest.

        Why not the cluster view kafka-python keeps: its metadata requests ask the broker to
        auto-create unknown topics (3.0.12 never passes ``allow_auto_create_topics`` on), and a
        backup must never create a topic.  Failures leave partitions without a leader, to retry.
        """
        if not missing:
            return
        topics = sorted({t for t, _ in missing})
        request = MetadataRequest(
            topics=[MetadataRequest.MetadataRequestTopic(name=t) for t in topics],
            allow_auto_topic_creation=False, include_cluster_authorized_operations=False,
            include_topic_authorized_operations=False, min_version=METADATA_MIN_VERSION)
        remaining_ms = int((deadline - time.monotonic()) * 1000)
        timeout_ms = max(1000, min(self._request_timeout_ms, remaining_ms))
        try:
            response = await self._until(self._manager.send(request, request_timeout_ms=timeout_ms), deadline)
        except Exception as exc:
            if isinstance(exc, _kerr.KafkaError) and exc.retriable:
                for tp in missing:
                    if not (getattr(exc, _PAST_DEADLINE, False) and tp in reasons):  # keep the real error
                        reasons[tp] = f"metadata request failed: {_describe(exc)}"
                return
            raise _translate(exc, "metadata request failed") from exc
        known_brokers = {b.node_id for b in response.brokers}
        by_topic = {t.name: t for t in response.topics}
        need_brokers = False
        for tp in missing:
            topic_md = by_topic.get(tp[0])
            if topic_md is None:
                reasons[tp] = "topic missing from the metadata response"
                continue
            error = _kerr.for_code(topic_md.error_code)
            if topic_md.error_code != 0:
                if not error.retriable:
                    raise translate_kafka_error(error(), "metadata", topic=tp[0])
                reasons[tp] = f"metadata: {error.__name__}"
                continue
            part = next((p for p in topic_md.partitions if p.partition_index == tp[1]), None)
            if part is None:
                reasons[tp] = "partition does not exist (per metadata)"
                continue
            leader = int(part.leader_id)
            if leader == _NO_LEADER or leader not in known_brokers:
                reasons[tp] = f"no leader ({_kerr.for_code(part.error_code).__name__})"
                continue
            if self._cluster.broker_metadata(leader) is None:
                need_brokers = True
            epoch = int(part.leader_epoch) if part.leader_epoch is not None else -1
            self._leaders[tp] = (leader, epoch)
        if need_brokers:
            # get_connection() looks brokers up in kafka-python's own cluster view; refresh it
            # (a no-topics metadata request, so nothing is auto-created).
            try:
                await self._cluster.refresh_metadata()
            except Exception as exc:
                if not (isinstance(exc, _kerr.KafkaError) and exc.retriable):
                    raise _translate(exc, "metadata refresh failed") from exc


def _partition_result(tp: TopicPartitionKey, offset: int, part: RawPartitionData,
                      node_id: int) -> FetchedPartition:
    """Keep whole batches only, from the one holding ``offset`` (or the next one) onwards.

    The broker cuts a response at the byte limits, so the last batch may be partial; it never
    sends a partial *first* batch (v3+ replaces that with nothing), so some progress is made
    whenever records come back.  The result is a view of the frame: trimming copies nothing.
    """
    view = part.records if part.records is not None else memoryview(b"")
    end = complete_length(view)
    start = end
    try:
        for header in scan(view[:end], check_crc=False):
            if header.next_offset > offset:
                start = header.position
                break
    except BatchFormatError as exc:
        raise KafkaClientError(f"broker {node_id} sent malformed record batches at offset "
                               f"{offset}: {exc}", topic=tp[0], partition=tp[1]) from exc
    records: bytes | memoryview = view[start:end].toreadonly() if end > start else b""
    return FetchedPartition(
        topic=tp[0], partition=tp[1], fetch_offset=offset, records=records,
        aborted_transactions=tuple(part.aborted_transactions or ()), high_watermark=int(part.high_watermark),
        last_stable_offset=int(part.last_stable_offset),
        log_start_offset=int(part.log_start_offset), out_of_range=False)


def _classify_partition_error(code: int, tp: TopicPartitionKey, offset: int, node_id: int,
                              version: int) -> str:
    """Return a retry reason for a retriable error code, or raise for anything else."""
    error = _kerr.for_code(code)
    name = getattr(error, "message", None) or error.__name__
    if getattr(error, "retriable", False):
        return f"broker {node_id}: {name}"
    where = f"fetch at offset {offset} from broker {node_id} (Fetch v{version})"
    if issubclass(error, _kerr.AuthorizationError):
        raise translate_kafka_error(error(), where, topic=tp[0], partition=tp[1])
    if code in _INCOMPATIBLE_CODES:
        raise IncompatibleKafkaError(f"{where}: {name}: {getattr(error, 'description', '')}".rstrip(": "),
                                     topic=tp[0], partition=tp[1])
    description = getattr(error, "description", "")
    raise KafkaClientError(f"{where}: {name}" + (f" ({description})" if description else ""),
                           topic=tp[0], partition=tp[1])


def _translate(exc: BaseException, what: str) -> KafkaBackupError:
    """Turn a kafka-python (or unexpected) exception into ours; callers ``raise ... from exc``."""
    return translate_kafka_error(exc, what)
