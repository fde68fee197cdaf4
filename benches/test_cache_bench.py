"""FIFOCache against its peers, and S3FIFOCache's hot paths (``native-s3fifo``,
``python-s3fifo``: get hit and miss, set with eviction). Each benchmark runs a
batch of ``OPS`` operations; divide by it for the cost of one. Ratios:
``python benches/report.py``."""

from __future__ import annotations

import enum
from typing import Any

import pytest

from benches._subjects import NO_SUBSCRIPT, s3_subjects, subjects

OPS = 1_000
SUBJECTS = subjects()
NAMES = list(SUBJECTS)
S3 = s3_subjects()
SUBJECTS.update(S3)
#: The groups S3FIFOCache takes part in.
WITH_S3 = NAMES + list(S3)


def _filled(name: str, maxsize: int, keys: list[Any]) -> Any:
    cache = SUBJECTS[name](maxsize)
    for key in keys:
        cache[key] = key
    return cache


@pytest.mark.parametrize("name", WITH_S3)
def test_get_hit(benchmark: Any, name: str) -> None:
    keys = [f"key-{i}" for i in range(OPS)]
    cache = _filled(name, OPS, keys)
    get = cache.get

    def run() -> None:
        for key in keys:
            get(key)

    benchmark.group = "get hit (str keys)"
    benchmark(run)


@pytest.mark.parametrize("name", [n for n in NAMES if n not in NO_SUBSCRIPT])
def test_getitem_hit(benchmark: Any, name: str) -> None:
    keys = [f"key-{i}" for i in range(OPS)]
    cache = _filled(name, OPS, keys)

    def run() -> None:
        for key in keys:
            cache[key]

    benchmark.group = "cache[key], a hit (str keys)"
    benchmark(run)


@pytest.mark.parametrize("name", [n for n in NAMES if n not in NO_SUBSCRIPT])
def test_contains(benchmark: Any, name: str) -> None:
    keys = [f"key-{i}" for i in range(OPS)]
    cache = _filled(name, OPS, keys)
    probes = keys[::2] + [f"other-{i}" for i in range(OPS // 2)]

    def run() -> None:
        for key in probes:
            key in cache  # noqa: B015 - the lookup is what is measured

    benchmark.group = "key in cache, half present (str keys)"
    benchmark(run)


@pytest.mark.parametrize("name", WITH_S3)
def test_get_miss(benchmark: Any, name: str) -> None:
    cache = _filled(name, OPS, [f"key-{i}" for i in range(OPS)])
    missing = [f"other-{i}" for i in range(OPS)]
    get = cache.get

    def run() -> None:
        for key in missing:
            get(key)

    benchmark.group = "get miss (str keys)"
    benchmark(run)


def _set_evicting(benchmark: Any, name: str, maxsize: int, keys: list[Any], group: str) -> None:
    # Keys cycle through 2 * maxsize distinct values: each one was evicted
    # maxsize inserts ago, so every set inserts a new key and evicts one.
    # "dict" does the same work by hand, inline: insert, then delete the key
    # inserted maxsize sets ago; it is the floor for a bounded map.
    # S3FIFOCache is filled with other keys: it keeps 99% of what fills it
    # (in main) while new keys go through small, so cycling keys that filled
    # it would measure overwrites. Cycled keys never come back while the
    # ghost remembers them (2 * maxsize apart), so each set evicts from small
    # (and the sketch counts each new key).
    fill = [("fill", n) for n in range(maxsize)] if name in S3 else keys[:maxsize]
    cache = _filled(name, maxsize, fill)
    pairs = [(key, keys[(i - maxsize) % len(keys)]) for i, key in enumerate(keys)]
    batches = [pairs[i : i + OPS] for i in range(0, len(pairs), OPS)]
    position = [maxsize // OPS]

    def run() -> None:
        at = position[0]
        for key, _ in batches[at]:
            cache[key] = 1
        position[0] = (at + 1) % len(batches)

    def run_dict() -> None:
        at = position[0]
        for key, oldest in batches[at]:
            cache[key] = 1
            del cache[oldest]
        position[0] = (at + 1) % len(batches)

    benchmark.group = group
    benchmark(run_dict if name == "dict" else run)
    assert len(cache) == maxsize


@pytest.mark.parametrize("name", WITH_S3)
def test_set_evicting_str(benchmark: Any, name: str) -> None:
    keys = [f"key-{i}" for i in range(2 * OPS)]
    _set_evicting(benchmark, name, OPS, keys, "set with eviction (str keys, maxsize 1k)")


@pytest.mark.parametrize("name", WITH_S3)
def test_set_evicting_int(benchmark: Any, name: str) -> None:
    keys = list(range(10**6, 10**6 + 2 * OPS))
    _set_evicting(benchmark, name, OPS, keys, "set with eviction (int keys, maxsize 1k)")


# cachetools and the spec's dict FIFO are left out at 1M: their eviction scans
# grow with size and one round would take minutes.
@pytest.mark.parametrize("name", [n for n in WITH_S3 if n not in {"cachetools", "spec-dict-fifo"}])
def test_set_evicting_int_1m(benchmark: Any, name: str) -> None:
    maxsize = 1_000_000
    keys = list(range(10**7, 10**7 + 2 * maxsize))
    _set_evicting(benchmark, name, maxsize, keys, "set with eviction (int keys, maxsize 1M)")


@pytest.mark.parametrize("name", NAMES)
def test_get_many_100(benchmark: Any, name: str) -> None:
    keys = [f"key-{i}" for i in range(OPS)]
    cache = _filled(name, OPS, keys)
    wanted = keys[::10]
    if hasattr(cache, "get_many"):
        get_many = cache.get_many
    else:

        def get_many(ks: list[Any]) -> dict[Any, Any]:
            return {k: v for k in ks if (v := cache.get(k)) is not None}

    def run() -> None:
        for _ in range(10):
            get_many(wanted)

    benchmark.group = "get_many of 100 keys"
    benchmark(run)


@pytest.mark.parametrize("name", NAMES)
def test_set_many_100(benchmark: Any, name: str) -> None:
    cache = SUBJECTS[name](OPS)
    batches = [[(f"key-{b}-{i}", i) for i in range(100)] for b in range(20)]
    if hasattr(cache, "set_many"):
        set_many = cache.set_many
    else:

        def set_many(pairs: list[tuple[Any, Any]]) -> None:
            for k, v in pairs:
                cache[k] = v

    def run() -> None:
        for batch in batches[:10]:
            set_many(batch)
        batches.append(batches.pop(0))

    benchmark.group = "set_many of 100 keys"
    benchmark(run)


#: OPS distinct members each, equal to the ints and strs 0..OPS-1 and "k0"...
_LEVELS = enum.IntEnum("_LEVELS", {f"L{n}": n for n in range(OPS)})
_COLOURS = enum.StrEnum("_COLOURS", {f"C{n}": f"k{n}" for n in range(OPS)})

#: Subjects with ``pop``.
WITH_POP = [n for n in NAMES if hasattr(SUBJECTS[n](1), "pop")]
SIZES = [1_000, 100_000]


def _with_plain_keys(name: str, kind: str, size: int) -> tuple[Any, list[Any]]:
    """A cache of ``size`` builtin keys, and OPS distinct enum members equal
    to the last OPS of them (a scan from the oldest would pass all others)."""
    cache = SUBJECTS[name](2 * size)
    members: list[Any] = list(_LEVELS if kind == "IntEnum" else _COLOURS)
    for n in range(size - OPS):
        cache[f"other-{n}"] = n
    for member in members:
        cache[member._value_] = 0
    return cache, members


@pytest.mark.parametrize("size", SIZES, ids=["1k", "100k"])
@pytest.mark.parametrize("kind", ["IntEnum", "StrEnum"])
@pytest.mark.parametrize("name", WITH_POP)
def test_set_enum_key(benchmark: Any, name: str, kind: str, size: int) -> None:
    # Each set overwrites the entry of the equal builtin key: its cost must
    # not grow with the entries (a scan for the stored key would).
    cache, members = _with_plain_keys(name, kind, size)

    def run() -> None:
        for member in members:
            cache[member] = 1

    benchmark.group = f"set, {kind} keys over equal stored keys ({size:,} entries)"
    benchmark(run)


@pytest.mark.parametrize("size", SIZES, ids=["1k", "100k"])
@pytest.mark.parametrize("kind", ["IntEnum", "StrEnum"])
@pytest.mark.parametrize("name", WITH_POP)
def test_pop_enum_key(benchmark: Any, name: str, kind: str, size: int) -> None:
    cache, members = _with_plain_keys(name, kind, size)
    half = members[: OPS // 2]

    def run() -> None:
        for member in half:
            cache.pop(member)
            cache[member._value_] = 0

    benchmark.group = (
        f"pop with {kind} keys, then set the builtin key back, per op ({size:,} entries)"
    )
    benchmark(run)
