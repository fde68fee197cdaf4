"""Pure-Python Counter, Gauge, Histogram and Timer: the same algorithm, buckets and
errors as the Rust extension (see ``rust/metrics.rs`` and ``rust/algo/src/histogram.rs``)."""

from __future__ import annotations

import itertools
import math
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Final, Literal, ParamSpec, TypeVar

from pepperpy_core._timing import timed
from pepperpy_core.kinds import samples

P = ParamSpec("P")
R = TypeVar("R")

#: prometheus_client's default bucket bounds, in seconds.
DEFAULT_BUCKETS: Final = [
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
]

_SUB_BITS: Final = 6
_SUB: Final = 1 << _SUB_BITS
_MIN_EXP: Final = -34
_MAX_EXP: Final = 22
_MIN_VALUE: Final = 2.0**_MIN_EXP
#: A quantile's largest relative error against the nearest-rank sample, for
#: samples from 2**-34 s (58 ps) to 2**22 s (48 days).
QUANTILE_RELATIVE_ERROR: Final = 1.0 / (2 << _SUB_BITS)
_MAX_COUNT: Final = 2**64 - 1
#: The largest single increment, as in the extension (a C long).
_MAX_STEP: Final = 2**63 - 1


class Counter:
    """A monotonically increasing count; increments are atomic."""

    __slots__ = ("__weakref__", "_lock", "_value")

    def __init__(self) -> None:
        self._value = 0
        self._lock = threading.Lock()

    def inc(self, n: int | None = None) -> None:
        """Add ``n`` (an int >= 0; None or nothing means 1)."""
        n = counter_step(n)
        with self._lock:
            value = self._value + n
            if value > _MAX_COUNT:
                raise OverflowError("counter would exceed 2**64 - 1")
            self._value = value

    @property
    def value(self) -> int:
        return self._value

    def __repr__(self) -> str:
        return f"Counter(value={self._value})"


class Gauge:
    """A value that goes up and down; updates are atomic."""

    __slots__ = ("__weakref__", "_lock", "_value")

    def __init__(self) -> None:
        self._value = 0.0
        self._lock = threading.Lock()

    def set(self, value: float) -> None:
        """Set the value (a finite number)."""
        value = _finite("value", value)
        with self._lock:  # an inc() in flight must not overwrite it
            self._value = value

    def inc(self, amount: float = 1.0) -> None:
        """Add ``amount`` (a finite number, 1 by default)."""
        amount = _finite("step", amount)
        with self._lock:
            self._value = _checked(self._value + amount)

    def dec(self, amount: float = 1.0) -> None:
        """Subtract ``amount`` (a finite number, 1 by default)."""
        amount = _finite("step", amount)
        with self._lock:
            self._value = _checked(self._value - amount)

    @property
    def value(self) -> float:
        return self._value

    def __repr__(self) -> str:
        return f"Gauge(value={self._value!r})"


def counter_step(n: int | None) -> int:
    """A counter's step: an int (or ``__index__``) from 0 to 2**63 - 1, 1 for None."""
    if n is None:
        return 1
    if type(n) is not int:
        n = _as_int(n)
    if n < 0:
        raise ValueError(f"a counter only goes up: inc() needs n >= 0, got {n}")
    if n > _MAX_STEP:
        raise OverflowError("Python int too large to convert to C long")
    return n


def finite(what: str, value: object) -> float:
    """``value`` as a finite float, else ValueError naming ``what``."""
    return _finite(what, value)


def _finite(what: str, value: object) -> float:
    number = as_float(value)
    if not math.isfinite(number):
        raise ValueError(f"a gauge {what} must be a finite number, got {number!r}")
    return number


def _checked(value: float) -> float:
    if not math.isfinite(value):
        raise OverflowError("gauge value would not be finite")
    return value


def _as_int(n: object) -> int:
    """``n`` as an int, accepting what ``__index__`` accepts (as the extension does)."""
    index = getattr(type(n), "__index__", None)
    if index is None:
        raise TypeError(f"'{type(n).__name__}' object cannot be interpreted as an integer")
    return int(index(n))


def as_float(value: object) -> float:
    """``value`` as a float, accepting what C's PyFloat_AsDouble accepts."""
    if isinstance(value, float):
        return float(value)
    for name in ("__float__", "__index__"):
        convert = getattr(type(value), name, None)
        if convert is not None:
            return float(convert(value))
    raise TypeError(f"must be real number, not {type(value).__name__}")


def _check_bounds(buckets: Iterable[float] | None) -> list[float]:
    bounds = [as_float(b) for b in (DEFAULT_BUCKETS if buckets is None else buckets)]
    for b in bounds:
        if not math.isfinite(b) or b < 0:
            raise ValueError(
                f"bucket bounds must be finite and >= 0 (+Inf is always added), got {b}"
            )
    if any(a >= b for a, b in itertools.pairwise(bounds)):
        raise ValueError("bucket bounds must be strictly increasing")
    return bounds


def seconds(value: object) -> float:
    """``value`` as a duration: finite and >= 0, else ValueError."""
    return _seconds(value)


def _seconds(value: object) -> float:
    seconds = as_float(value)
    if not (math.isfinite(seconds) and seconds >= 0):
        raise ValueError(f"a duration must be finite and >= 0 seconds, got {seconds}")
    return seconds


class Histogram:
    """Distribution of durations in seconds; quantile error at most 1/128."""

    __slots__ = (
        "__weakref__",
        "_above",
        "_below",
        "_bound_counts",
        "_bounds",
        "_count",
        "_lock",
        "_max",
        "_min",
        "_octaves",
        "_sum",
    )

    def __init__(self, buckets: Iterable[float] | None = None) -> None:
        self._bounds = _check_bounds(buckets)
        self._bound_counts = [0] * (len(self._bounds) + 1)
        self._octaves: dict[int, list[int]] = {}
        self._below = 0
        self._above = 0
        self._count = 0
        self._sum = 0.0
        self._min = math.inf
        self._max = -math.inf
        self._lock = threading.Lock()

    def observe(self, seconds: float) -> None:
        """Record one duration (finite, >= 0, in seconds)."""
        seconds = _seconds(seconds)
        with self._lock:
            self._record(seconds)

    def _record(self, seconds: float) -> None:
        if seconds < _MIN_VALUE:
            self._below += 1
        else:
            mantissa, exp = math.frexp(seconds)  # seconds = mantissa * 2**exp, 0.5 <= m < 1
            exp -= 1
            if exp >= _MAX_EXP:
                self._above += 1
            else:
                sub = int((mantissa * 2.0 - 1.0) * _SUB)
                octave = self._octaves.get(exp - _MIN_EXP)
                if octave is None:
                    octave = self._octaves[exp - _MIN_EXP] = [0] * _SUB
                octave[sub] += 1
        self._bound_counts[bisect_left(self._bounds, seconds)] += 1
        self._count += 1
        self._sum += seconds
        self._min = min(self._min, seconds)
        self._max = max(self._max, seconds)

    @property
    def count(self) -> int:
        return self._count

    @property
    def sum(self) -> float:
        return self._sum

    @property
    def min(self) -> float | None:
        """The smallest sample, or None before the first."""
        return self._min if self._count else None

    @property
    def max(self) -> float | None:
        """The largest sample, or None before the first."""
        return self._max if self._count else None

    @property
    def bounds(self) -> list[float]:
        """The exported bucket bounds, without the implied +Inf."""
        return list(self._bounds)

    def quantile(self, q: float) -> float | None:
        """The estimated q-quantile (q in [0, 1]), or None before the first sample."""
        q = as_float(q)
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile needs 0 <= q <= 1, got {q}")
        with self._lock:
            if not self._count:
                return None
            if q == 0.0:
                return self._min
            if q == 1.0:
                return self._max
            rank = min(max(math.ceil(q * self._count), 1), self._count)
            seen = self._below
            if seen >= rank:
                return self._min
            for octave in sorted(self._octaves):
                base = 2.0 ** (_MIN_EXP + octave)
                width = base / _SUB
                for sub, n in enumerate(self._octaves[octave]):
                    seen += n
                    if seen >= rank:
                        mid = base + width * (sub + 0.5)
                        return min(max(mid, self._min), self._max)
            return self._max

    def buckets(self) -> list[tuple[float, int]]:
        """(upper bound, cumulative count) for each exported bucket, +Inf last."""
        with self._lock:
            out = []
            total = 0
            for upper, n in zip([*self._bounds, math.inf], self._bound_counts, strict=True):
                total += n
                out.append((upper, total))
            return out

    def time(self) -> Timer:
        """A new Timer that records into this histogram."""
        return Timer(self)

    def __repr__(self) -> str:
        return f"Histogram(count={self._count}, sum={self._sum})"


class Timer:
    """Times one block at a time (``with``, ``async with``) into a Histogram
    with ``time.perf_counter``; called on a function, times every call."""

    __slots__ = ("__weakref__", "_histogram", "_started")

    def __init__(self, histogram: Histogram) -> None:
        self._histogram = histogram
        self._started: float | None = None

    @property
    def histogram(self) -> Histogram:
        """The histogram this timer records into."""
        return self._histogram

    def _start(self) -> None:
        if self._started is not None:
            raise RuntimeError("this timer is already running; take a new one for each block")
        self._started = time.perf_counter()

    def _stop(self) -> None:
        now = time.perf_counter()
        started = self._started
        if started is None:
            raise RuntimeError("timer stopped without being started")
        self._started = None
        with self._histogram._lock:
            self._histogram._record(max(now - started, 0.0))

    def __enter__(self) -> Timer:
        self._start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        self._stop()
        return False

    async def __aenter__(self) -> Timer:
        self._start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        self._stop()
        return False

    def __call__(self, func: Callable[P, R]) -> Callable[P, R]:
        """Decorate ``func`` so that every call is timed."""
        return timed(self._histogram, func)


def call_key(name: object, labels: object) -> object | None:
    """The key a registry lookup is remembered under: the name alone, or the
    name followed by each label name and value in the dict's order; None when
    the call has another shape (it then always takes the slow path). The
    native RegistryCore builds the same keys."""
    if type(name) is not str:
        return None
    if labels is None:
        return name
    if type(labels) is not dict:
        return None
    parts: list[object] = [name]
    for key, value in list(labels.items()):
        if type(key) is not str or type(value) is not str:
            return None
        parts.append(key)
        parts.append(value)
    return tuple(parts)


class RegistryCore:
    """The lookup half of a MetricsRegistry: ``counter(name)``, ``gauge(name)``,
    ``histogram(name)`` and ``timer(name)`` for a metric that exists are one
    dict lookup; any other call goes to the subclass's ``_lookup``."""

    __slots__ = ("__dict__", "__weakref__", "_counters", "_gauges", "_histograms")

    def __init__(self) -> None:
        self._counters: dict[object, Counter] = {}
        self._gauges: dict[object, Gauge] = {}
        self._histograms: dict[object, Histogram] = {}

    def _new_counter(self) -> Counter:
        """A new Counter of this backend."""
        return Counter()

    def _new_gauge(self) -> Gauge:
        """A new Gauge of this backend."""
        return Gauge()

    def _new_histogram(self, bounds: Iterable[float]) -> Histogram:
        """A new Histogram of this backend with these bucket bounds."""
        return Histogram(bounds)

    #: The exposition lines of a family's series (the native backend's are
    #: written in Rust: render.rs).
    _samples = staticmethod(samples)

    def _lookup(
        self,
        kind: Literal["counter", "gauge", "histogram", "timer"],
        name: str,
        labels: Mapping[str, str] | None = None,
        *,
        description: str = "",
        buckets: Iterable[float] | None = None,
        mode: Literal["sum", "max", "min", "latest", "pid"] | None = None,
    ) -> Any:
        """Check, create and remember a metric (MetricsRegistry does)."""
        raise NotImplementedError

    def counter(
        self, name: str, labels: Mapping[str, str] | None = None, *, description: str = ""
    ) -> Counter:
        """The counter called ``name`` with these label values, made on first use."""
        if not description:
            found = self._counters.get(call_key(name, labels))
            if found is not None:
                return found
        made = self._lookup("counter", name, labels, description=description)
        assert isinstance(made, Counter)
        return made

    def gauge(
        self,
        name: str,
        labels: Mapping[str, str] | None = None,
        *,
        description: str = "",
        mode: Literal["sum", "max", "min", "latest", "pid"] | None = None,
    ) -> Gauge:
        """The gauge called ``name`` with these label values, made on first use."""
        if not description and mode is None:
            found = self._gauges.get(call_key(name, labels))
            if found is not None:
                return found
        if mode is not None:
            made = self._lookup("gauge", name, labels, description=description, mode=mode)
        else:
            made = self._lookup("gauge", name, labels, description=description)
        assert isinstance(made, Gauge)
        return made

    def histogram(
        self,
        name: str,
        labels: Mapping[str, str] | None = None,
        *,
        description: str = "",
        buckets: Iterable[float] | None = None,
    ) -> Histogram:
        """The histogram called ``name`` with these label values, made on first use."""
        if not description and buckets is None:
            found = self._histograms.get(call_key(name, labels))
            if found is not None:
                return found
        made = self._lookup("histogram", name, labels, description=description, buckets=buckets)
        assert isinstance(made, Histogram)
        return made

    def timer(
        self,
        name: str,
        labels: Mapping[str, str] | None = None,
        *,
        description: str = "",
        buckets: Iterable[float] | None = None,
    ) -> Timer:
        """A new Timer recording into the histogram called ``name``."""
        if not description and buckets is None:
            found = self._histograms.get(call_key(name, labels))
            if found is not None:
                return Timer(found)
        made = self._lookup("timer", name, labels, description=description, buckets=buckets)
        assert isinstance(made, Timer)
        return made
