"""The pure-Python twin of the shared-memory metrics store
(``rust/algo/src/shm``): the same files, read and written with ``mmap``,
``struct`` and ``fcntl.flock`` (docs/multiprocess.md). Slower than the
extension; never different.

Every 8-byte field is read and written through ``memoryview.cast("Q")``:
one aligned 8-byte load or store, as the extension's atomics are. The
process's threads are serialised by a lock per slot (the extension uses
compare-and-swap), and a histogram's sequence lock is kept as the
extension keeps it.
"""

from __future__ import annotations

import contextlib
import errno
import math
import mmap
import os
import platform
import secrets
import struct
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from pepperpy_core.errors import MetricError

if sys.platform == "win32":  # no flock: shared directories are POSIX-only
    fcntl: Any = None
else:
    import fcntl

SEGMENT_MAGIC: Final = b"PPCMSEG1"
RUN_MAGIC: Final = b"PPCMRUN1"
VERSION: Final = 1
HEADER: Final = 64
_AT_USED: Final = 32
_AT_SERIAL: Final = 56
_RECORD_HEAD: Final = 16
_FLAG_RETAINED: Final = 1
_FOLDED: Final = 4
_KINDS: Final = {"counter": 1, "gauge": 2, "histogram": 3}
_KIND_NAMES: Final = {v: k for k, v in _KINDS.items()}
MODES: Final = ("sum", "max", "min", "latest", "pid")
_HISTOGRAM_HEAD: Final = 4
_FIRST_SIZE: Final = 16 * 1024
#: How long a reader waits for a histogram's writer that stays inside its
#: update (its sequence odd and unchanged) before it takes the values as
#: they are: one killed or stopped there never leaves (the native STALLED).
_STALLED: Final = 1.0
_U64: Final = 2**64
_INF_BITS: Final = struct.unpack("<Q", struct.pack("<d", math.inf))[0]
_NEG_INF_BITS: Final = struct.unpack("<Q", struct.pack("<d", -math.inf))[0]

LOCK: Final = "lock"
RUN: Final = "run"
RETAINED: Final = "retained.seg"


class StoreFormatError(MetricError):
    """A file in a shared metrics directory is not in this format."""


def _bits(value: float) -> int:
    return int(struct.unpack("<Q", struct.pack("<d", value))[0])


def _float(bits: int) -> float:
    return float(struct.unpack("<d", struct.pack("<Q", bits))[0])


def _align(n: int) -> int:
    return (n + 7) // 8 * 8


def _str16(text: str) -> bytes:
    raw = text.encode()
    if len(raw) > 0xFFFF:
        raise MetricError(
            "a series' name, label or description is too long for the shared format "
            "(65535 bytes each, 65534 labels or bounds)"
        )
    return struct.pack("<H", len(raw)) + raw


# --- records --------------------------------------------------------------------


@dataclass(frozen=True)
class Series:
    """A series as every process knows it (a record's metadata)."""

    kind: str
    mode: str
    namespace: str
    name: str
    labels: tuple[tuple[str, str], ...]
    description: str
    bounds: tuple[float, ...]

    def value_words(self) -> int:
        if self.kind == "counter":
            return 1
        if self.kind == "gauge":
            return 2
        return _HISTOGRAM_HEAD + len(self.bounds) + 1

    def _key(self) -> bytes:
        parts = [_str16(self.namespace), _str16(self.name), struct.pack("<H", len(self.labels))]
        for name, value in self.labels:
            parts.append(_str16(name))
            parts.append(_str16(value))
        return b"".join(parts)

    def identity(self) -> bytes:
        """Everything but the description: what names the series across processes."""
        head = bytes([_KINDS[self.kind], MODES.index(self.mode)])
        bounds = b"".join(struct.pack("<d", b) for b in self.bounds)
        return head + bounds + self._key()

    def record(self) -> tuple[bytes, int]:
        """The record with its values at zero, and where its values start."""
        if len(self.labels) > 0xFFFF or len(self.bounds) >= 0xFFFF:
            raise MetricError("too many labels or bounds for the shared format")
        description = self.description.encode()
        meta = self._key() + struct.pack("<I", len(description)) + description
        bounds_at = _align(_RECORD_HEAD + len(meta))
        values_at = bounds_at + 8 * len(self.bounds)
        length = values_at + 8 * self.value_words()
        mode = MODES.index(self.mode) if self.kind == "gauge" else 0
        out = bytearray(length)
        struct.pack_into(
            "<IBBHII",
            out,
            0,
            length,
            _KINDS[self.kind],
            mode,
            len(self.bounds),
            values_at,
            len(meta),
        )
        out[_RECORD_HEAD : _RECORD_HEAD + len(meta)] = meta
        for i, bound in enumerate(self.bounds):
            struct.pack_into("<d", out, bounds_at + 8 * i, bound)
        if self.kind == "histogram":
            struct.pack_into("<QQ", out, values_at + 16, _INF_BITS, _NEG_INF_BITS)
        return bytes(out), values_at


def _record_head(head: bytes) -> tuple[int, int]:
    if len(head) < _RECORD_HEAD:
        raise StoreFormatError("a record is cut short")
    length, _, _, _, values_at, _ = struct.unpack_from("<IBBHII", head, 0)
    if length < _RECORD_HEAD or length % 8 or values_at > length or values_at % 8:
        raise StoreFormatError("a record's length or layout is not valid")
    return length, values_at


class _Meta:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def take(self, n: int) -> bytes:
        if self.at + n > len(self.data):
            raise StoreFormatError("a record's metadata is cut short")
        out = self.data[self.at : self.at + n]
        self.at += n
        return out

    def text(self, size: str) -> str:
        (n,) = struct.unpack(size, self.take(struct.calcsize(size)))
        try:
            return self.take(n).decode()
        except UnicodeDecodeError:
            raise StoreFormatError("a record holds text that is not UTF-8") from None


def parse_record(data: bytes) -> tuple[Series, bytes, int] | list[int]:
    """A record from its bytes up to its values (a folded-ids record whole):
    (series, identity, offset of the values), or the folded ids."""
    length, values_at = _record_head(data)
    kind_byte, mode_byte, bound_count = struct.unpack_from("<BBH", data, 4)
    if kind_byte == _FOLDED:
        if len(data) < values_at + 8:
            raise StoreFormatError("a folded-ids record is cut short")
        (count,) = struct.unpack_from("<Q", data, values_at)
        if values_at + 8 + 8 * count > min(length, len(data)):
            raise StoreFormatError("a folded-ids record is cut short")
        return list(struct.unpack_from(f"<{count}Q", data, values_at + 8))
    kind = _KIND_NAMES.get(kind_byte)
    if kind is None:
        raise StoreFormatError(f"unknown record kind {kind_byte}")
    if kind == "gauge":
        if mode_byte >= len(MODES):
            raise StoreFormatError("unknown gauge mode")
        mode = MODES[mode_byte]
    else:
        mode = "sum"
    (meta_len,) = struct.unpack_from("<I", data, 12)
    meta = _Meta(data[_RECORD_HEAD : _RECORD_HEAD + meta_len])
    if len(meta.data) != meta_len:
        raise StoreFormatError("a record's metadata is cut short")
    namespace = meta.text("<H")
    name = meta.text("<H")
    (label_count,) = struct.unpack("<H", meta.take(2))
    labels = tuple((meta.text("<H"), meta.text("<H")) for _ in range(label_count))
    description = meta.text("<I")
    bounds_at = _align(_RECORD_HEAD + meta_len)
    if bounds_at + 8 * bound_count != values_at:
        raise StoreFormatError("a record's bounds do not end where its values start")
    if len(data) < values_at:
        raise StoreFormatError("a record's bounds are cut short")
    bounds = struct.unpack_from(f"<{bound_count}d", data, bounds_at)
    if kind != "histogram" and bound_count:
        raise StoreFormatError("only a histogram has bounds")
    series = Series(kind, mode, namespace, name, labels, description, tuple(bounds))
    if values_at + 8 * series.value_words() != length:
        raise StoreFormatError("a record's values do not fill it")
    return series, series.identity(), values_at


def _folded_record(ids: list[int]) -> bytes:
    length = _RECORD_HEAD + 8 + 8 * len(ids)
    head = struct.pack("<IBBHII", length, _FOLDED, 0, 0, _RECORD_HEAD, 0)
    return head + struct.pack(f"<Q{len(ids)}Q", len(ids), *ids)


@dataclass(frozen=True)
class Header:
    flags: int
    generation: bytes
    used: int
    pid: int
    id: int
    serial: int


def segment_header(generation: bytes, pid: int, ident: int, flags: int) -> bytes:
    out = bytearray(HEADER)
    out[:8] = SEGMENT_MAGIC
    struct.pack_into("<II", out, 8, VERSION, flags)
    out[16:32] = generation
    struct.pack_into("<QIIQ", out, _AT_USED, HEADER, pid, 0, ident)
    return bytes(out)


def parse_header(data: bytes) -> Header:
    if len(data) < HEADER or data[:8] != SEGMENT_MAGIC:
        raise StoreFormatError("not a pepperpy-core metrics segment")
    version, flags = struct.unpack_from("<II", data, 8)
    if version != VERSION:
        raise StoreFormatError(f"a metrics segment of format version {version}, not {VERSION}")
    used, pid, _, ident, serial = struct.unpack_from("<QIIQQ", data, _AT_USED)
    return Header(flags, bytes(data[16:32]), used, pid, ident, serial)


# --- values ------------------------------------------------------------------------


@dataclass
class Totals:
    """A histogram's values: per-bucket counts (+Inf last), sum, min, max."""

    bounds: tuple[float, ...]
    counts: list[int]
    sum: float = 0.0
    min: float = math.inf
    max: float = -math.inf

    @classmethod
    def from_words(cls, bounds: tuple[float, ...], words: list[int]) -> Totals:
        counts = list(words[_HISTOGRAM_HEAD : _HISTOGRAM_HEAD + len(bounds) + 1])
        return cls(bounds, counts, _float(words[1]), _float(words[2]), _float(words[3]))

    def to_words(self) -> list[int]:
        return [0, _bits(self.sum), _bits(self.min), _bits(self.max), *self.counts]

    def add(self, other: Totals) -> None:
        self.counts = [min(a + b, _U64 - 1) for a, b in zip(self.counts, other.counts, strict=True)]
        self.sum += other.sum
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    @property
    def count(self) -> int:
        return min(sum(self.counts), _U64 - 1)

    def cumulative(self) -> list[tuple[float, int]]:
        out = []
        total = 0
        for upper, n in zip((*self.bounds, math.inf), self.counts, strict=True):
            total = min(total + n, _U64 - 1)
            out.append((upper, total))
        return out

    def quantile(self, q: float) -> float | None:
        """As ``Totals::quantile`` in the extension: linear within the bucket
        of the nearest rank, clamped to [min, max]."""
        count = self.count
        if not count:
            return None
        lo, hi = self.min, self.max
        if q <= 0.0:
            return lo
        if q >= 1.0:
            return hi
        rank = float(min(max(math.ceil(q * count), 1), count))
        below = 0
        for i, n in enumerate(self.counts):
            through = below + n
            if n > 0 and through >= rank:
                lower = lo if i == 0 else max(self.bounds[i - 1], lo)
                upper = min(self.bounds[i] if i < len(self.bounds) else hi, hi)
                share = (rank - below) / n
                return min(max(lower + (upper - lower) * share, lo), hi)
            below = through
        return hi


class _Map:
    """A shared read-write mapping of a file's first bytes, reached a word
    at a time."""

    def __init__(self, fd: int, length: int) -> None:
        self.mm = mmap.mmap(fd, length, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.words = memoryview(self.mm).cast("Q")
        self.length = length

    def load(self, at: int) -> int:
        return int(self.words[at >> 3])

    def store(self, at: int, value: int) -> None:
        self.words[at >> 3] = value

    def read(self, at: int, n: int) -> bytes:
        return self.mm[at : at + n]

    def write(self, at: int, data: bytes) -> None:
        # Unpublished bytes (past `used`): no reader looks at them yet.
        for i in range(0, len(data), 8):
            self.words[(at + i) >> 3] = int.from_bytes(data[i : i + 8], "little")


def _now_ns() -> int:
    return time.time_ns()


class Slot:
    """Where one series of this process keeps its values."""

    __slots__ = ("at", "bounds", "lock", "map")

    def __init__(self, mapping: _Map, at: int, bounds: tuple[float, ...]) -> None:
        self.map = mapping
        self.at = at
        self.bounds = bounds
        self.lock = threading.Lock()

    def add(self, n: int) -> None:
        with self.lock:
            value = self.map.load(self.at) + n
            if value >= _U64:
                raise OverflowError("counter would exceed 2**64 - 1")
            self.map.store(self.at, value)

    def count(self) -> int:
        return self.map.load(self.at)

    def set(self, value: float) -> None:
        with self.lock:
            self.map.store(self.at, _bits(value))
            self.map.store(self.at + 8, _now_ns())

    def update(self, change: Callable[[float], float]) -> None:
        with self.lock:
            value = change(_float(self.map.load(self.at)))
            if not math.isfinite(value):
                raise OverflowError("gauge value would not be finite")
            self.map.store(self.at, _bits(value))
            self.map.store(self.at + 8, _now_ns())

    def gauge(self) -> float:
        return _float(self.map.load(self.at))

    def observe(self, value: float) -> None:
        m, at = self.map, self.at
        with self.lock:
            seq = m.load(at)
            m.store(at, (seq + 1) % _U64)
            bucket = _bisect_left(self.bounds, value)
            counts = at + 8 * _HISTOGRAM_HEAD
            m.store(counts + 8 * bucket, (m.load(counts + 8 * bucket) + 1) % _U64)
            m.store(at + 8, _bits(_float(m.load(at + 8)) + value))
            if value < _float(m.load(at + 16)):
                m.store(at + 16, _bits(value))
            if value > _float(m.load(at + 24)):
                m.store(at + 24, _bits(value))
            m.store(at, (seq + 2) % _U64)

    def totals(self) -> Totals:
        words = _read_consistent(self.map, self.at, _HISTOGRAM_HEAD + len(self.bounds) + 1)
        return Totals.from_words(self.bounds, words)


def _bisect_left(bounds: tuple[float, ...], value: float) -> int:
    lo, hi = 0, len(bounds)
    while lo < hi:
        mid = (lo + hi) // 2
        if bounds[mid] < value:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _read_consistent(m: _Map, at: int, words: int, stalled: float = _STALLED) -> list[int]:
    """``words`` words of a histogram's values at ``at``, read under its
    sequence lock; as they are once its writers made no progress for
    ``stalled`` seconds (or ten times that in all: every update moves the
    sequence, so busy writers cannot hold a reader longer)."""
    tries = 0
    began = since = 0.0
    seen = -1
    while True:
        before = m.load(at)
        if before % 2 == 0:
            out = [before, *(m.load(at + 8 * i) for i in range(1, words))]
            if m.load(at) == before:
                return out
        now = time.monotonic()
        if tries == 0:
            began = since = now
        if before != seen:
            seen, since = before, now
        if now - since >= stalled or now - began >= 10 * stalled:
            return [m.load(at + 8 * i) for i in range(words)]
        tries += 1
        # Long inside: a preempted or stopped writer; no core spent on it.
        time.sleep(0 if tries < 64 else 0.0001)


Value = int | tuple[float, int] | Totals


def _value(series: Series, words: list[int]) -> Value:
    if series.kind == "counter":
        return words[0]
    if series.kind == "gauge":
        return (_float(words[0]), words[1])
    return Totals.from_words(series.bounds, words)


def _read_value(series: Series, m: _Map, at: int) -> Value:
    if series.kind == "counter":
        return m.load(at)
    if series.kind == "gauge":
        return (_float(m.load(at)), m.load(at + 8))
    words = _read_consistent(m, at, series.value_words())
    return Totals.from_words(series.bounds, words)


# --- the run -----------------------------------------------------------------------


@dataclass
class Run:
    generation: bytes
    boot: bytes
    anchors: list[tuple[int, int]] = field(default_factory=list)

    def encode(self) -> bytes:
        out = [RUN_MAGIC, struct.pack("<II", VERSION, len(self.anchors)), self.generation]
        out.append(self.boot)
        out.extend(struct.pack("<IIQ", g, 0, s) for g, s in self.anchors)
        return b"".join(out)

    @classmethod
    def parse(cls, data: bytes) -> Run:
        if len(data) < 48 or data[:8] != RUN_MAGIC:
            raise StoreFormatError("not a pepperpy-core metrics run file")
        version, count = struct.unpack_from("<II", data, 8)
        if version != VERSION:
            raise StoreFormatError(f"a metrics run file of format version {version}, not {VERSION}")
        if len(data) < 48 + 16 * count:
            raise StoreFormatError("a metrics run file is cut short")
        anchors = [
            (g, s)
            for g, _, s in (struct.unpack_from("<IIQ", data, 48 + 16 * i) for i in range(count))
        ]
        return cls(bytes(data[16:32]), bytes(data[32:48]), anchors)


def boot_id() -> bytes:
    """This boot's id as bytes (Linux), else zeros."""
    try:
        text = Path("/proc/sys/kernel/random/boot_id").read_text()
    except OSError:
        return bytes(16)
    digits = "".join(c for c in text if c in "0123456789abcdefABCDEF")
    return bytes.fromhex(digits[:32].ljust(32, "0"))


def _stat_fields(pid: str) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    _, _, rest = text.rpartition(")")
    return rest.split()


def _start_time(pid: str) -> int | None:
    fields = _stat_fields(pid)
    if fields is None or len(fields) < 20:
        return None
    try:
        return int(fields[19])
    except ValueError:
        return None


def own_anchor() -> tuple[int, int] | None:
    """This process's group and its leader's start time (Linux)."""
    fields = _stat_fields("self")
    if fields is None or len(fields) < 3:
        return None
    group = int(fields[2])
    start = _start_time(str(group))
    return None if start is None else (group, start)


def anchor_alive(anchor: tuple[int, int]) -> bool:
    return _start_time(str(anchor[0])) == anchor[1]


# --- the directory ---------------------------------------------------------------


@contextlib.contextmanager
def _dir_lock(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _alive(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as error:
        if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return True
        raise
    fcntl.flock(fd, fcntl.LOCK_UN)
    return False


def _open_segment(path: Path) -> int | None:
    try:
        return os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return None


def _read_header(fd: int, path: Path) -> Header:
    try:
        return parse_header(os.pread(fd, HEADER, 0))
    except StoreFormatError as error:
        raise StoreFormatError(f"{path}: {error}") from None


def _open_with_header(path: Path) -> tuple[int, Header] | None:
    """As ``dir::open_with_header``: None if gone, or if its owner died
    before writing its header (the file is removed)."""
    fd = _open_segment(path)
    if fd is None:
        return None
    try:
        return fd, _read_header(fd, path)
    except StoreFormatError:
        blank = os.fstat(fd).st_size < HEADER or os.pread(fd, 8, 0) == bytes(8)
        if blank and not _alive(fd):
            os.close(fd)
            _remove(path)
            return None
        os.close(fd)
        raise
    except BaseException:
        os.close(fd)
        raise


def _segment_names(directory: Path) -> list[str]:
    return sorted(n for n in os.listdir(directory) if n.endswith(".seg") and n != RETAINED)


@dataclass
class _Found:
    path: Path
    fd: int
    header: Header
    alive: bool


def _find_segments(directory: Path) -> list[_Found]:
    out = []
    for name in _segment_names(directory):
        path = directory / name
        opened = _open_with_header(path)
        if opened is None:
            continue
        fd, header = opened
        try:
            out.append(_Found(path, fd, header, _alive(fd)))
        except BaseException:
            os.close(fd)
            raise
    return out


def _close(found: Iterable[_Found]) -> None:
    for f in found:
        with contextlib.suppress(OSError):
            os.close(f.fd)


def _close_fd(fd: int, pid: int) -> None:
    if os.getpid() == pid:
        with contextlib.suppress(OSError):
            os.close(fd)


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _replace(directory: Path, name: str, data: bytes) -> None:
    tmp = directory / f"{name}.tmp"
    tmp.write_bytes(data)
    tmp.replace(directory / name)


def _read_run(directory: Path) -> Run | None:
    try:
        data = (directory / RUN).read_bytes()
    except FileNotFoundError:
        return None
    try:
        return Run.parse(data)
    except StoreFormatError as error:
        raise StoreFormatError(f"{directory / RUN}: {error}") from None


def _records(data: bytes, used: int) -> Iterator[tuple[Series, bytes, Value] | list[int]]:
    at, end = HEADER, min(used, len(data))
    while at < end:
        length, _ = _record_head(data[at : at + _RECORD_HEAD])
        record = data[at : at + length]
        if len(record) != length:
            raise StoreFormatError("a record runs past the end")
        parsed = parse_record(record)
        if isinstance(parsed, list):
            yield parsed
        else:
            series, identity, values_at = parsed
            words = list(struct.unpack_from(f"<{series.value_words()}Q", record, values_at))
            yield series, identity, _value(series, words)
        at += length


@dataclass
class _Retained:
    header: Header | None = None
    series: list[tuple[Series, bytes, Value]] = field(default_factory=list)
    folded: list[int] = field(default_factory=list)


def _read_retained(directory: Path) -> _Retained:
    try:
        data = (directory / RETAINED).read_bytes()
    except FileNotFoundError:
        return _Retained()
    out = _Retained(parse_header(data))
    assert out.header is not None
    for item in _records(data, out.header.used):
        if isinstance(item, list):
            out.folded = item
        else:
            out.series.append(item)
    return out


def _fold(directory: Path, generation: bytes, dead: list[_Found], rewrite: bool) -> None:
    """Folds the dead segments into retained.seg, then unlinks them."""
    old = _read_retained(directory)
    kept: dict[bytes, list[Any]] = {}  # identity -> [series, value]

    def keep(series: Series, identity: bytes, value: Value) -> None:
        if series.kind == "gauge":
            return
        found = kept.get(identity)
        if found is None:
            kept[identity] = [series, value]
            return
        if isinstance(found[1], Totals) and isinstance(value, Totals):
            found[1].add(value)
        elif isinstance(found[1], int) and isinstance(value, int):
            found[1] = min(found[1] + value, _U64 - 1)
        if not found[0].description and series.description:
            found[0] = series

    for item in old.series:
        keep(*item)
    folded = []
    for segment in dead:
        if segment.header.id not in old.folded:
            size = os.fstat(segment.fd).st_size
            data = os.pread(segment.fd, size, 0)
            header = parse_header(data)
            for record in _records(data, header.used):
                if not isinstance(record, list):
                    keep(*record)
            folded.append(segment.header.id)
    if folded or rewrite:
        serial = ((old.header.serial if old.header else 0) + 1) % _U64
        parts = [bytearray(segment_header(generation, 0, secrets.randbits(64), _FLAG_RETAINED))]
        for series, value in kept.values():
            record, values_at = series.record()
            raw = bytearray(record)
            words = [value] if isinstance(value, int) else value.to_words()
            struct.pack_into(f"<{len(words)}Q", raw, values_at, *words)
            parts.append(raw)
        parts.append(bytearray(_folded_record(folded)))
        out = bytearray(b"".join(parts))
        struct.pack_into("<Q", out, _AT_USED, len(out))
        struct.pack_into("<Q", out, _AT_SERIAL, serial)
        _replace(directory, RETAINED, bytes(out))
    for segment in dead:
        _remove(segment.path)


def _join(directory: Path, previous: str) -> tuple[Run, str | None]:
    """With the directory locked: as ``dir::join`` in the extension."""
    boot = boot_id()
    me = own_anchor()
    found = _find_segments(directory)
    try:
        run = _read_run(directory)
        live = next((s for s in found if s.alive), None)
        if run is None and live is not None:
            run = Run(live.header.generation, boot, [])
        current = (
            run is not None
            and run.boot == boot
            and (live is not None or any(anchor_alive(a) for a in run.anchors))
        )
        retained = (directory / RETAINED).exists()
        notice = None
        if current:
            assert run is not None
            before = list(run.anchors)
            run.anchors = [a for a in run.anchors if anchor_alive(a)]
            if me is not None and me not in run.anchors:
                run.anchors.append(me)
            if run.anchors != before:
                _replace(directory, RUN, run.encode())
            ours = [s for s in found if not s.alive and s.header.generation == run.generation]
            for other in found:
                if not other.alive and other.header.generation != run.generation:
                    _remove(other.path)
            if ours:
                _fold(directory, run.generation, ours, rewrite=False)
            return run, None
        new = Run(secrets.token_bytes(16), boot, [me] if me is not None else [])
        if run is not None or found or retained:
            what = (
                f"{directory} holds the metrics of a previous run of the service "
                f"({len(found)} segment(s) of exited processes"
                f"{' and their retained totals' if retained else ''})"
            )
            if previous == "error":
                raise MetricError(what)
            if previous == "discard":
                for segment in found:
                    _remove(segment.path)
                _remove(directory / RETAINED)
                notice = (
                    f"{what}: discarded, so they are not added to this run's "
                    '(previous_run="keep" keeps them)'
                )
            else:
                _fold(directory, new.generation, found, rewrite=True)
        for name in os.listdir(directory):
            if name.endswith(".tmp"):
                _remove(directory / name)
        _replace(directory, RUN, new.encode())
        return new, notice
    finally:
        _close(found)


# --- the store --------------------------------------------------------------------

_EPOCH = 0
_STORES: weakref.WeakValueDictionary[str, _Store] = weakref.WeakValueDictionary()
_STORES_LOCK = threading.Lock()


def fork_epoch() -> int:
    return _EPOCH


def after_fork() -> None:
    """In a child after ``os.fork()``: its metrics move to a segment of its own."""
    global _EPOCH, _STORES_LOCK  # noqa: PLW0603
    _EPOCH += 1
    _STORES_LOCK = threading.Lock()
    for store in list(_STORES.values()):
        store._forget()


@dataclass
class _Peer:
    fd: int
    header: Header
    map: _Map | None = None
    parsed_to: int = HEADER
    records: list[tuple[int, int]] = field(default_factory=list)  # (entry, values at)


@dataclass
class _Family:
    namespace: str
    name: str
    kind: str
    mode: str
    label_names: tuple[str, ...]
    bounds: tuple[float, ...]
    description: str
    entries: list[int] = field(default_factory=list)


class _Table:
    def __init__(self) -> None:
        self.entries: list[tuple[Series, _Family | None]] = []
        self.index: dict[bytes, int] = {}
        self.families: list[_Family] = []
        self.by_name: dict[tuple[str, str], _Family] = {}

    def entry(self, series: Series, identity: bytes) -> int:
        found = self.index.get(identity)
        if found is not None:
            family = self.entries[found][1]
            if family is not None and not family.description and series.description:
                family.description = series.description
            return found
        at = len(self.entries)
        names = tuple(n for n, _ in series.labels)
        family = self.by_name.get((series.namespace, series.name))
        if family is None:
            family = _Family(
                series.namespace,
                series.name,
                series.kind,
                series.mode,
                names,
                series.bounds,
                series.description,
            )
            self.families.append(family)
            self.by_name[(series.namespace, series.name)] = family
        elif (family.kind, family.mode, family.label_names, family.bounds) != (
            series.kind,
            series.mode,
            names,
            series.bounds,
        ):
            family = None  # defined otherwise: kept out of the aggregate
        if family is not None:
            family.entries.append(at)
            if not family.description:
                family.description = series.description
        self.entries.append((series, family))
        self.index[identity] = at
        return at


class _Store:
    """One process's view of a shared directory (``shm::Store``)."""

    def __init__(self, directory: Path, previous: str) -> None:
        self.directory = directory
        self.previous = previous
        self._lock = threading.Lock()
        self._epoch: int | None = None
        self._fd: int | None = None
        self._maps: list[_Map] = []
        self._len = 0
        self._used = 0
        self._slots: dict[bytes, Slot] = {}
        self._peers: dict[str, _Peer] = {}
        self._retained_mark: tuple[int, int] | None = None
        self._retained_values: list[tuple[int, Value]] = []
        self._table = _Table()
        self.notices: list[str] = []
        with self._lock:
            self._ensure_joined()

    def _forget(self) -> None:
        self._lock = threading.Lock()
        if self._fd is not None:
            # The child's copy only: the parent keeps its lock.
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def _ensure_joined(self) -> None:
        if self._epoch == _EPOCH and self._fd is not None:
            return
        self._fd = None
        self._slots = {}
        with _dir_lock(self.directory):
            run, notice = _join(self.directory, self.previous)
            if notice is not None:
                self.notices.append(notice)
            self._create_segment(run.generation)
        self._epoch = _EPOCH

    def _create_segment(self, generation: bytes) -> None:
        pid = os.getpid()
        ident = secrets.randbits(64)
        path = self.directory / f"{pid}-{ident:016x}.seg"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        # Released with the store, as the extension's file is (a forked
        # child's copy is closed by after_fork instead).
        weakref.finalize(self, _close_fd, fd, os.getpid())
        os.ftruncate(fd, _FIRST_SIZE)
        mapping = _Map(fd, _FIRST_SIZE)
        header = segment_header(generation, pid, ident, 0)
        # The magic last: a segment whose owner is killed before it is
        # written starts with zeros, which a join or scrape removes.
        mapping.write(8, header[8:])
        mapping.write(0, header[:8])
        self._fd, self._maps, self._len, self._used = fd, [mapping], _FIRST_SIZE, HEADER

    def slot(self, series: Series) -> Slot:
        """This process's slot for ``series``, made on first use."""
        with self._lock:
            self._ensure_joined()
            identity = series.identity()
            found = self._slots.get(identity)
            if found is not None:
                return found
            record, values_at = series.record()
            end = self._used + len(record)
            assert self._fd is not None
            if end > self._len:
                length = max(self._len * 2, (end + 4095) // 4096 * 4096)
                os.ftruncate(self._fd, length)
                # Old mappings stay with the slots made through them.
                self._maps.append(_Map(self._fd, length))
                self._len = length
            mapping = self._maps[-1]
            mapping.write(self._used, record)
            mapping.store(_AT_USED, end)
            made = Slot(mapping, self._used + values_at, series.bounds)
            self._used = end
            self._slots[identity] = made
            return made

    def collect(self, namespace: str) -> list[tuple[_Family, list[tuple[int, int | None, Value]]]]:
        """Every series of ``namespace`` summed over the processes."""
        with self._lock, _dir_lock(self.directory):
            run = _read_run(self.directory)
            if run is None:
                return []
            names = _segment_names(self.directory)
            for name in [n for n in self._peers if n not in names]:
                os.close(self._peers.pop(name).fd)
            dead: list[_Found] = []
            for name in names:
                peer = self._peers.get(name)
                if peer is None:
                    opened = _open_with_header(self.directory / name)
                    if opened is None:
                        continue
                    peer = self._peers[name] = _Peer(*opened)
                if not _alive(peer.fd):
                    del self._peers[name]
                    dead.append(_Found(self.directory / name, peer.fd, peer.header, False))
            if dead:
                ours = [d for d in dead if d.header.generation == run.generation]
                for other in dead:
                    if other.header.generation != run.generation:
                        _remove(other.path)
                try:
                    _fold(self.directory, run.generation, ours, rewrite=False)
                finally:
                    _close(dead)
            self._refresh_retained(run.generation)
            for peer in self._peers.values():
                if peer.header.generation == run.generation:
                    self._parse_new(peer)
            return self._aggregate(namespace)

    def _refresh_retained(self, generation: bytes) -> None:
        fd = _open_segment(self.directory / RETAINED)
        header = None
        if fd is not None:
            try:
                header = _read_header(fd, self.directory / RETAINED)
            finally:
                os.close(fd)
        mark = (
            (header.serial, header.id)
            if header is not None and header.generation == generation
            else None
        )
        if mark == self._retained_mark:
            return
        self._retained_values = []
        if mark is not None:
            for series, identity, value in _read_retained(self.directory).series:
                self._retained_values.append((self._table.entry(series, identity), value))
        self._retained_mark = mark

    def _parse_new(self, peer: _Peer) -> None:
        mapped = peer.map.length if peer.map is not None else 0
        used_now = peer.map.load(_AT_USED) if peer.map is not None else sys.maxsize
        if used_now > mapped:
            length = os.fstat(peer.fd).st_size
            if length < HEADER:
                return
            peer.map = _Map(peer.fd, length)
        m = peer.map
        assert m is not None
        used = min(m.load(_AT_USED), m.length)
        while peer.parsed_to + _RECORD_HEAD <= used:
            at = peer.parsed_to
            length, values_at = _record_head(m.read(at, _RECORD_HEAD))
            if at + length > used:
                break
            parsed = parse_record(m.read(at, values_at))
            if not isinstance(parsed, list):
                series, identity, _ = parsed
                peer.records.append((self._table.entry(series, identity), at + values_at))
            peer.parsed_to = at + length

    def _aggregate(
        self, namespace: str
    ) -> list[tuple[_Family, list[tuple[int, int | None, Value]]]]:
        table = self._table
        accs: dict[int, Any] = {}

        def add(entry: int, value: Value, pid: int) -> None:
            series = table.entries[entry][0]
            acc = accs.get(entry)
            if isinstance(value, Totals):
                if acc is None:
                    accs[entry] = Totals(
                        value.bounds, list(value.counts), value.sum, value.min, value.max
                    )
                else:
                    acc.add(value)
            elif isinstance(value, int):
                accs[entry] = value if acc is None else min(acc + value, _U64 - 1)
            elif series.mode == "pid":
                accs.setdefault(entry, []).append((pid, value[0]))
            elif acc is None:
                accs[entry] = value
            else:
                v, at = value
                a, a_at = acc
                if series.mode == "sum":
                    accs[entry] = (a + v, a_at)
                elif series.mode == "max":
                    accs[entry] = (max(a, v), a_at)
                elif series.mode == "min":
                    accs[entry] = (min(a, v), a_at)
                elif at >= a_at:
                    accs[entry] = value

        for entry, value in self._retained_values:
            add(entry, value, 0)
        for peer in self._peers.values():
            if peer.map is None:
                continue
            for entry, at in peer.records:
                series = table.entries[entry][0]
                if series.namespace == namespace:
                    add(entry, _read_value(series, peer.map, at), peer.header.pid)
        out = []
        for family in table.families:
            if family.namespace != namespace:
                continue
            rows: list[tuple[int, int | None, Value]] = []
            for entry in family.entries:
                acc = accs.get(entry)
                if acc is None:
                    continue
                if isinstance(acc, list):
                    rows.extend((entry, pid, (v, 0)) for pid, v in sorted(acc, key=lambda p: p[0]))
                else:
                    rows.append((entry, None, acc))
            if rows:
                out.append((family, rows))
        return out

    def series(self, entry: int) -> Series:
        return self._table.entries[entry][0]


#: CPUs that keep one core's stores in order for the others (x86-TSO).
_STORE_ORDERED: Final = frozenset({"x86_64", "amd64", "i386", "i686", "x86"})


def open_store(directory: str | os.PathLike[str], previous: str) -> _Store:
    """The store of ``directory`` in this process (one per directory), joined."""
    if previous not in ("discard", "keep", "error"):
        raise ValueError(f"previous_run must be 'discard', 'keep' or 'error', not {previous!r}")
    if sys.byteorder != "little":
        raise MetricError("the shared metrics format is little-endian; this machine is not")
    if fcntl is None:
        raise MetricError("shared metrics directories need POSIX file locks (flock)")
    if platform.machine().lower() not in _STORE_ORDERED:
        # Python has no memory fences: this twin's sequence locks are right
        # only where the CPU keeps stores in order (x86); elsewhere a reader
        # could see half an observation. Refused rather than wrong.
        raise MetricError(
            f"shared metrics on the pure-Python backend need an x86 CPU, not "
            f"{platform.machine()!r}: install the native build (pip install .)"
        )
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    path = path.resolve()
    with _STORES_LOCK:
        store = _STORES.get(str(path))
        if store is None:
            store = _STORES[str(path)] = _Store(path, previous)
        return store


def open_private(directory: str | os.PathLike[str], previous: str = "discard") -> _Store:
    """A store of its own, as if of another process (tests)."""
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    return _Store(path.resolve(), previous)
