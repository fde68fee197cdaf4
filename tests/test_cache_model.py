"""Hypothesis drives every available FIFOCache and a reference model with the
same random operations and compares every observable result after each step."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from tests.conftest import BACKENDS

pytestmark = pytest.mark.backend

MISSING = object()


@dataclass(frozen=True)
class Collide:
    """Distinct keys sharing one hash: exercises the equality path."""

    n: int

    def __hash__(self) -> int:
        return 11


def _fresh(text: str) -> str:
    """An equal string that is a different object from ``text``."""
    return "".join([text[:1], text[1:]])


keys = st.one_of(
    st.integers(min_value=-3, max_value=12),
    st.sampled_from(["alpha", "beta", "gamma"]).map(_fresh),
    st.builds(Collide, st.integers(min_value=0, max_value=4)),
)
values = st.integers()


class Model:
    """The contract in a dozen lines, on an OrderedDict."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.data: OrderedDict[Any, Any] = OrderedDict()
        self.hits = self.misses = self.inserts = self.evictions = 0

    def read(self, key: Any) -> Any:
        if key in self.data:
            self.hits += 1
            return self.data[key]
        self.misses += 1
        return MISSING

    def set(self, key: Any, value: Any) -> None:
        if key in self.data:
            self.data[key] = value
            return
        if len(self.data) >= self.maxsize:
            self.data.popitem(last=False)
            self.evictions += 1
        self.data[key] = value
        self.inserts += 1


class CacheComparison(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.caches: list[Any] = []
        self.model = Model(1)

    @initialize(maxsize=st.integers(min_value=1, max_value=8))
    def make(self, maxsize: int) -> None:
        self.caches = [b.FIFOCache(maxsize) for b in BACKENDS]
        self.model = Model(maxsize)

    def all_return(self, expected: Any, call: Any) -> None:
        for cache in self.caches:
            assert call(cache) == expected, type(cache).__module__

    @rule(key=keys, value=values)
    def set(self, key: Any, value: Any) -> None:
        self.model.set(key, value)
        for cache in self.caches:
            assert cache.set(key, value) is None

    @rule(key=keys, value=values)
    def setitem(self, key: Any, value: Any) -> None:
        self.model.set(key, value)
        for cache in self.caches:
            cache[key] = value

    @rule(key=keys, default=st.none() | values)
    def get(self, key: Any, default: Any) -> None:
        got = self.model.read(key)
        self.all_return(default if got is MISSING else got, lambda c: c.get(key, default))

    @rule(key=keys)
    def getitem(self, key: Any) -> None:
        got = self.model.read(key)
        for cache in self.caches:
            if got is MISSING:
                with pytest.raises(KeyError) as info:
                    cache[key]
                assert info.value.args == (key,)
            else:
                assert cache[key] == got

    @rule(key=keys)
    def contains(self, key: Any) -> None:
        self.all_return(key in self.model.data, lambda c: key in c)

    @rule(key=keys, with_default=st.booleans())
    def pop(self, key: Any, with_default: bool) -> None:
        expected = self.model.data.pop(key, MISSING)
        for cache in self.caches:
            if with_default:
                result = cache.pop(key, MISSING)
                assert result is expected if expected is MISSING else result == expected
            else:
                try:
                    assert cache.pop(key) == expected
                except KeyError:
                    assert expected is MISSING

    @rule(wanted=st.lists(keys, max_size=5))
    def get_many(self, wanted: list[Any]) -> None:
        expected = {}
        for key in wanted:
            got = self.model.read(key)
            if got is not MISSING:
                expected[key] = got
        self.all_return(expected, lambda c: c.get_many(wanted))

    @rule(pairs=st.lists(st.tuples(keys, values), max_size=5))
    def set_many(self, pairs: list[tuple[Any, Any]]) -> None:
        for key, value in pairs:
            self.model.set(key, value)
        for cache in self.caches:
            cache.set_many(pairs)

    @rule()
    def clear(self) -> None:
        self.model.data.clear()
        for cache in self.caches:
            cache.clear()

    @invariant()
    def same_contents_and_stats(self) -> None:
        m = self.model
        for cache in self.caches:
            assert cache.items() == list(m.data.items())
            assert cache.keys() == list(m.data.keys())
            assert cache.values() == list(m.data.values())
            assert list(cache) == list(m.data)
            assert len(cache) == len(m.data)
            s = cache.stats()
            assert (s.hits, s.misses, s.inserts, s.evictions) == (
                m.hits,
                m.misses,
                m.inserts,
                m.evictions,
            )


TestCacheComparison = CacheComparison.TestCase
