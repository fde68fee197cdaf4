"""Type-checked by ``mypy --strict`` in CI, never run: the caches are generic."""

from __future__ import annotations

from typing import assert_type

from pepperpy_core import CacheStats, FIFOCache, S3FIFOCache, _native
from pepperpy_core.module import CachedModule

cache: FIFOCache[str, int] = FIFOCache(10)
assert_type(cache.get("a"), int | None)
assert_type(cache.get("a", 0), int)
assert_type(cache.get("a", "x"), int | str)
assert_type(cache["a"], int)
assert_type(cache.pop("a"), int)
assert_type(cache.pop("a", None), int | None)
assert_type(cache.keys(), list[str])
assert_type(cache.values(), list[int])
assert_type(cache.items(), list[tuple[str, int]])
assert_type(cache.get_many(["a", "b"]), dict[str, int])
assert_type(cache.stats(), CacheStats)
assert_type(cache.stats().hits, int)
assert_type(cache.maxsize, int)
cache.set_many({"a": 1})
cache.set_many([("a", 1)])

native: _native.FIFOCache[str, int] = _native.FIFOCache(10)
assert_type(native.get("a"), int | None)
assert_type(native["a"], int)
assert_type(native.items(), list[tuple[str, int]])

aliased = FIFOCache[str, int](5)
assert_type(aliased, FIFOCache[str, int])

s3: S3FIFOCache[str, int] = S3FIFOCache(10)
assert_type(s3.get("a"), int | None)
assert_type(s3.get("a", "x"), int | str)
assert_type(s3["a"], int)
assert_type(s3.pop("a", None), int | None)
assert_type(s3.items(), list[tuple[str, int]])
assert_type(s3.get_many(["a"]), dict[str, int])
assert_type(s3.stats(), CacheStats)
native_s3: _native.S3FIFOCache[str, int] = _native.S3FIFOCache(10)
assert_type(native_s3.get("a"), int | None)
assert_type(native_s3.keys(), list[str])

# Expiry: a time to live per cache or per write, a time to idle, a clock.
expiring: FIFOCache[str, int] = FIFOCache(10, ttl=60, tti=5.5, clock=lambda: 0.0)
expiring.set("a", 1, ttl=2.5)
expiring.set_many({"a": 1}, ttl=3)
assert_type(expiring.stats().expirations, int)
s3_expiring: S3FIFOCache[str, int] = S3FIFOCache(10, ttl=60)
s3_expiring.set("a", 1, ttl=1)
native_expiring: _native.FIFOCache[str, int] = _native.FIFOCache(10, tti=1)
native_expiring.set("a", 1, ttl=1)

# The cache a CachedModule makes: its policy and expiry.
CachedModule(maxsize=100, policy="s3fifo", ttl=60, tti=5.5)
CachedModule(policy="fifo")
