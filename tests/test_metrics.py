"""Counter, Gauge, Histogram and Timer on both backends (``backend`` fixture)."""

from __future__ import annotations

import asyncio
import inspect
import math
import threading
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pepperpy_core._backend import Backend
from tests.conftest import BACKENDS

pytestmark = pytest.mark.backend

# --- Counter -----------------------------------------------------------------


def test_counter_counts(backend: Backend) -> None:
    counter = backend.Counter()
    assert counter.value == 0
    counter.inc()
    counter.inc(5)
    counter.inc(0)
    counter.inc(True)
    counter.inc(None)
    assert counter.value == 8
    assert repr(counter) == "Counter(value=8)"


@pytest.mark.parametrize(
    ("n", "error"),
    [
        (-1, ValueError),
        (-(2**70), ValueError),
        (1.5, TypeError),
        (1.0, TypeError),
        ("1", TypeError),
        ([1], TypeError),
        (2**63, OverflowError),
    ],
)
def test_counter_refuses_bad_increments(backend: Backend, n: Any, error: type[Exception]) -> None:
    counter = backend.Counter()
    counter.inc(3)
    with pytest.raises(error):
        counter.inc(n)
    assert counter.value == 3


def test_counter_never_wraps(backend: Backend) -> None:
    counter = backend.Counter()
    for _ in range(2):
        counter.inc(2**63 - 1)
    counter.inc(1)
    assert counter.value == 2**64 - 1
    with pytest.raises(OverflowError):
        counter.inc(1)
    assert counter.value == 2**64 - 1


def test_counter_loses_nothing_under_threads(backend: Backend) -> None:
    counter = backend.Counter()
    per_thread = 1_000_000
    barrier = threading.Barrier(4)

    def work() -> None:
        inc = counter.inc
        barrier.wait()
        for _ in range(per_thread):
            inc()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counter.value == 4 * per_thread


# --- Gauge -------------------------------------------------------------------------


def test_gauge_goes_up_and_down(backend: Backend) -> None:
    gauge = backend.Gauge()
    assert gauge.value == 0.0
    gauge.set(10)
    gauge.inc()
    gauge.inc(2.5)
    gauge.dec()
    gauge.dec(20)
    assert gauge.value == -7.5
    assert isinstance(gauge.value, float)
    gauge.set(True)
    assert gauge.value == 1.0
    assert repr(gauge) == "Gauge(value=1.0)"


@pytest.mark.parametrize("op", ["set", "inc", "dec"])
@pytest.mark.parametrize(
    ("value", "error"),
    [
        (math.nan, ValueError),
        (math.inf, ValueError),
        (-math.inf, ValueError),
        ("1", TypeError),
        (None, TypeError),
        ([1], TypeError),
        (2**1100, OverflowError),
    ],
)
def test_gauge_refuses_what_is_not_a_finite_number(
    backend: Backend, op: str, value: Any, error: type[Exception]
) -> None:
    gauge = backend.Gauge()
    gauge.set(3)
    with pytest.raises(error):
        getattr(gauge, op)(value)
    assert gauge.value == 3.0


def test_gauge_refuses_a_step_that_would_leave_the_finite_range(backend: Backend) -> None:
    gauge = backend.Gauge()
    gauge.set(1e308)
    with pytest.raises(OverflowError, match="not be finite"):
        gauge.inc(1e308)
    assert gauge.value == 1e308
    gauge.set(-1e308)
    with pytest.raises(OverflowError, match="not be finite"):
        gauge.dec(1e308)
    assert gauge.value == -1e308


def test_gauge_loses_no_update_under_threads(backend: Backend) -> None:
    gauge = backend.Gauge()
    per_thread = 200_000
    barrier = threading.Barrier(4)

    def work(up: bool) -> None:
        step = gauge.inc if up else gauge.dec
        barrier.wait()
        for _ in range(per_thread):
            step(2)

    threads = [threading.Thread(target=work, args=(i % 2 == 0,)) for i in range(4)]
    gauge.set(7)
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert gauge.value == 7.0


# --- Histogram ---------------------------------------------------------------


def test_histogram_summary(backend: Backend) -> None:
    h = backend.Histogram()
    assert (h.count, h.sum, h.min, h.max) == (0, 0.0, None, None)
    assert h.quantile(0.5) is None
    for v in (0.002, 0.5, 3, 0.0):
        h.observe(v)
    assert h.count == 4
    assert h.sum == pytest.approx(3.502)
    assert (h.min, h.max) == (0.0, 3.0)
    assert h.quantile(0) == 0.0
    assert h.quantile(1) == 3.0
    assert h.bounds == list(backend.DEFAULT_BUCKETS)


def test_histogram_buckets_are_cumulative_and_exact(backend: Backend) -> None:
    h = backend.Histogram([0.1, 1.0, 2.5])
    for v in (0.05, 0.1, 0.1000001, 1.0, 2.0, 100.0):
        h.observe(v)
    assert h.buckets() == [(0.1, 2), (1.0, 4), (2.5, 5), (math.inf, 6)]
    assert backend.Histogram([]).buckets() == [(math.inf, 0)]


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, -0.001, -1])
def test_histogram_refuses_bad_durations(backend: Backend, value: float) -> None:
    h = backend.Histogram()
    h.observe(1.0)
    with pytest.raises(ValueError, match="finite and >= 0"):
        h.observe(value)
    assert (h.count, h.sum, h.min, h.max) == (1, 1.0, 1.0, 1.0)
    assert h.buckets()[-1] == (math.inf, 1)


@pytest.mark.parametrize("value", ["1", None, [1]])
def test_histogram_refuses_non_numbers(backend: Backend, value: Any) -> None:
    h = backend.Histogram()
    with pytest.raises(TypeError):
        h.observe(value)
    assert h.count == 0


@pytest.mark.parametrize("q", [-0.01, 1.01, math.nan, math.inf])
def test_quantile_outside_unit_interval(backend: Backend, q: float) -> None:
    h = backend.Histogram()
    h.observe(1.0)
    with pytest.raises(ValueError, match="0 <= q <= 1"):
        h.quantile(q)


@pytest.mark.parametrize(
    "buckets",
    [[1.0, 0.5], [0.5, 0.5], [-1.0, 1.0], [0.1, math.inf], [math.nan]],
)
def test_histogram_refuses_bad_buckets(backend: Backend, buckets: list[float]) -> None:
    with pytest.raises(ValueError, match="bucket bounds"):
        backend.Histogram(buckets)


def _nearest_rank(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    rank = min(max(math.ceil(q * len(ordered)), 1), len(ordered))
    return ordered[rank - 1]


durations = st.floats(min_value=1e-9, max_value=3600.0, allow_nan=False, allow_infinity=False)
quantiles = st.floats(min_value=0.0, max_value=1.0)


@given(samples=st.lists(durations, min_size=1, max_size=400), q=quantiles)
def test_quantile_error_is_within_the_stated_bound(samples: list[float], q: float) -> None:
    for module in BACKENDS:
        h = module.Histogram()
        for v in samples:
            h.observe(v)
        want = _nearest_rank(samples, q)
        got = h.quantile(q)
        assert got is not None
        assert abs(got - want) <= want * module.QUANTILE_RELATIVE_ERROR
        assert h.min <= got <= h.max


def test_quantile_bound_over_nine_decades() -> None:
    # 1 ns to 1 hour, log-uniform, with many ties broken across buckets.
    samples = [10 ** (-9 + 12.5 * i / 9_999) for i in range(10_000)]
    for module in BACKENDS:
        h = module.Histogram()
        for v in samples:
            h.observe(v)
        for q in (0.0, 0.001, 0.01, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 1.0):
            want = _nearest_rank(samples, q)
            got = h.quantile(q)
            assert abs(got - want) <= want * module.QUANTILE_RELATIVE_ERROR, q


@given(samples=st.lists(durations, min_size=1, max_size=100), q=quantiles)
def test_backends_agree_to_the_bit(samples: list[float], q: float) -> None:
    results = []
    for module in BACKENDS:
        h = module.Histogram([0.001, 0.1, 1.0, 100.0])
        for v in samples:
            h.observe(v)
        results.append((h.quantile(q), h.buckets(), h.count, h.min, h.max))
    assert all(r == results[0] for r in results)


# --- Timer -------------------------------------------------------------------


def test_timer_with_block(backend: Backend) -> None:
    h = backend.Histogram()
    timer = h.time()
    assert timer.histogram is h
    with timer as entered:
        assert entered is timer
        time.sleep(0.01)  # time: the work the timer times
    assert h.count == 1
    assert h.sum >= 0.009
    with timer:  # a timer can be reused once its block has ended
        pass
    assert h.count == 2


def test_timer_times_and_reraises_an_exception(backend: Backend) -> None:
    h = backend.Histogram()
    with pytest.raises(KeyError, match="inner"), h.time():
        raise KeyError("inner")
    assert h.count == 1


def test_timer_refuses_nesting_itself(backend: Backend) -> None:
    h = backend.Histogram()
    timer = h.time()
    with timer, pytest.raises(RuntimeError, match="already running"), timer:
        pass
    assert h.count == 1
    with pytest.raises(RuntimeError, match="without being started"):
        timer.__exit__(None, None, None)
    assert h.count == 1


def test_timer_async_with(backend: Backend) -> None:
    h = backend.Histogram()

    async def main() -> None:
        timer = h.time()
        async with timer as entered:
            assert entered is timer
            await asyncio.sleep(0.01)  # time: the work the timer times
        with pytest.raises(ValueError, match="boom"):
            async with h.time():
                raise ValueError("boom")

    asyncio.run(main())
    assert h.count == 2
    assert h.max is not None
    assert h.max >= 0.009


def test_timer_decorates_plain_functions(backend: Backend) -> None:
    h = backend.Histogram()

    @h.time()
    def add(a: int, b: int = 1) -> int:
        """Adds."""
        return a + b

    @h.time()
    def fail() -> None:
        raise LookupError("nope")

    assert add(2, b=3) == 5
    assert add.__name__ == "add"
    assert add.__doc__ == "Adds."
    with pytest.raises(LookupError):
        fail()
    assert h.count == 2


def test_timer_decorates_async_functions(backend: Backend) -> None:
    h = backend.Histogram()

    @h.time()
    async def fetch(n: int) -> int:
        await asyncio.sleep(0.01)
        return n * 2

    @h.time()
    async def fail() -> None:
        await asyncio.sleep(0)
        raise LookupError("nope")

    async def main() -> list[int]:
        results = await asyncio.gather(*(fetch(i) for i in range(10)))
        with pytest.raises(LookupError):
            await fail()
        return list(results)

    assert inspect.iscoroutinefunction(fetch)
    assert fetch.__name__ == "fetch"
    assert asyncio.run(main()) == [i * 2 for i in range(10)]
    assert h.count == 11
    assert h.max is not None
    assert h.max >= 0.009
