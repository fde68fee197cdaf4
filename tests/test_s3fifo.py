"""S3FIFOCache's policy, on both backends: hand-worked cases of each rule,
then whole seeded traces on which it must make exactly the decisions of the
reference model (``s3fifo_model.py``): the same hits, the same keys kept.

What S3FIFOCache shares with FIFOCache (the mapping contract, hostile keys,
threads, copies, re-entrancy) is tested with it in test_cache.py,
test_cache_nesting.py and test_differential.py.
"""

from __future__ import annotations

import copy
import itertools
import pickle
import random
from dataclasses import dataclass
from typing import Any

import pytest

from pepperpy_core._backend import Backend
from pepperpy_core._fallback.sketch import Sketch
from tests.s3fifo_model import S3FIFO, CountMin4


def _policy(cache: Any) -> tuple[list[tuple[Any, int, bool]], bool]:
    """(key, freq, in main) per entry in order, and whether it has evicted:
    the policy's state, as a copy keeps it."""
    _, items, _, _, (bits, evicted) = cache.__reduce__()[2]
    return [(k, b & 3, b >= 4) for (k, _), b in zip(items, bits, strict=True)], evicted


def _filled(backend: Backend, maxsize: int, keys: list[Any]) -> Any:
    cache = backend.S3FIFOCache(maxsize)
    for key in keys:
        cache[key] = key
    return cache


# --- each rule, worked by hand (maxsize 10: small's share 1, main's 9, ghost 9) ---


def test_until_the_first_eviction_new_keys_fill_main_once_small_has_its_share(
    backend: Backend,
) -> None:
    cache = _filled(backend, 10, list(range(10)))
    assert _policy(cache) == ([(0, 0, False), *((k, 0, True) for k in range(1, 10))], False)
    cache[10] = 10  # full: small's oldest (0, unread) leaves; 10 joins small
    assert _policy(cache) == ([(10, 0, False), *((k, 0, True) for k in range(1, 10))], True)
    assert cache.stats().evictions == 1


def test_a_scan_leaves_through_small_and_main_keeps_what_is_read(backend: Backend) -> None:
    cache = _filled(backend, 10, list(range(10)))
    for key in range(1, 10):
        cache.get(key)
    for key in range(100, 200):  # one-hit wonders: each evicts the one before
        cache[key] = key
    assert cache.keys() == [199, *range(1, 10)]
    assert cache.stats().evictions == 100


def test_a_key_read_in_small_moves_to_main_with_its_freq_cleared(backend: Backend) -> None:
    cache = _filled(backend, 10, list(range(10)))
    cache[10] = 10  # 0 leaves; 10 is small's
    cache.get(10)
    cache[11] = 11  # 10 moves to main (freq 0); main is over its share: 1 leaves
    entries, _ = _policy(cache)
    assert entries == [(11, 0, False), *((k, 0, True) for k in range(2, 10)), (10, 0, True)]


def test_a_key_unread_in_small_leaves(backend: Backend) -> None:
    cache = _filled(backend, 10, list(range(10)))
    cache[10] = 10
    assert 10 in cache  # not a use
    cache[11] = 11
    assert 10 not in cache
    assert cache.keys() == [11, *range(1, 10)]


def test_main_gives_a_read_key_another_round_with_one_less(backend: Backend) -> None:
    cache = _filled(backend, 10, list(range(10)))
    for _ in range(5):
        cache.get(1)  # freq stops at 3
    cache.get(2)
    # Main over its share (two promoted from small) makes main evict: 1 and 2
    # go round with 2 and 0 left, 3 leaves.
    for key in (10, 11):
        cache[key] = key
        cache.get(key)
        cache.get(key)
    cache[12] = 12
    cache[13] = 13
    entries, _ = _policy(cache)
    assert (1, 2, True) in entries
    assert (2, 0, True) in entries
    assert 3 not in cache


def test_a_key_back_while_the_ghost_remembers_it_goes_to_main(backend: Backend) -> None:
    cache = _filled(backend, 10, list(range(10)))
    cache[10] = 10  # 0 leaves small unread: its hash to the ghost
    cache[0] = "back"
    entries, _ = _policy(cache)
    assert entries[-1] == (0, 0, True)
    assert 10 not in cache  # room was made from small first
    # Forgotten after that: leaving again from small puts it back in the ghost.
    cache[0] = "again"  # an overwrite: a use, in place
    assert _policy(cache)[0][-1] == (0, 1, True)


def test_a_key_back_from_the_ghost_displaces_mains_victim_only_if_inserted_more_often(
    backend: Backend,
) -> None:
    cache = _filled(backend, 10, list(range(10)))
    cache[10] = 10  # 0 leaves small unread: to the ghost
    cache[0] = 0  # inserted twice, main's victim (1) once: 0 enters main; 10 leaves
    for key in range(2, 10):
        cache.get(key)
    # 10 is back, inserted twice. Main is over its share: 1 (unread) leaves.
    # Main's CLOCK turns 2..9 (freq 1 -> 0) and stops at 0, inserted twice
    # too: a tie keeps the victim where it is, and 10 goes to small.
    cache[10] = 10
    assert _policy(cache)[0] == [
        (10, 0, False),
        (0, 0, True),
        *((k, 0, True) for k in range(2, 10)),
    ]
    cache[11] = 11  # 10 leaves small for the ghost again
    cache[10] = 10  # 11 leaves small; 10, inserted three times, beats 0
    entries, _ = _policy(cache)
    assert entries[0] == (0, 0, True)
    assert entries[-1] == (10, 0, True)


def _ten_displaces_zero(cache: Any) -> bool:
    """The tie of the test above, played on an empty cache of maxsize 10:
    whether 10, back from the ghost, displaced 0 (it does only if the sketch
    counted 10 before)."""
    assert len(cache) == 0
    for key in range(10):
        cache[key] = key
    cache[10] = 10
    cache[0] = 0
    for key in range(2, 10):
        cache.get(key)
    cache[10] = 10
    return bool(_policy(cache)[0][-1] == (10, 0, True))


@pytest.mark.parametrize("how", ["clear", "copy", "pickle"])
def test_clear_and_copies_forget_what_the_sketch_counted(backend: Backend, how: str) -> None:
    cache = backend.S3FIFOCache(10)
    for _ in range(3):
        cache[10] = 10  # counted: a new key each time
        del cache[10]  # not counted, and forgets nothing
    clone = pickle.loads(pickle.dumps(cache)) if how == "pickle" else copy.copy(cache)
    if how == "clear":
        clone = cache
        clone.clear()
    else:
        assert _ten_displaces_zero(cache)  # 10 counted five times, 0 twice
    assert not _ten_displaces_zero(clone)  # twice each: the tie keeps 0


def test_an_overwrite_is_a_use_and_in_is_not(backend: Backend) -> None:
    cache = _filled(backend, 10, list(range(10)))
    cache[10] = 10
    assert 10 in cache
    cache[10] = "again"
    cache.set(10, "and again")
    assert _policy(cache)[0][0] == (10, 2, False)
    cache[11] = 11  # written: promoted
    assert _policy(cache)[0][-1] == (10, 0, True)
    assert cache[10] == "and again"
    assert _policy(cache)[0][-1] == (10, 1, True)
    assert cache.stats().hits == 1  # the overwrites were uses, not hits


def test_get_many_uses_every_key_it_finds(backend: Backend) -> None:
    cache = _filled(backend, 10, list(range(10)))
    cache[10] = 10
    assert cache.get_many([10, 99, 10]) == {10: 10}
    assert _policy(cache)[0][0] == (10, 2, False)
    assert (cache.stats().hits, cache.stats().misses) == (2, 1)


def test_clear_forgets_the_ghost_and_starts_the_warm_up_again(backend: Backend) -> None:
    cache = _filled(backend, 10, list(range(20)))
    cache.clear()
    for key in range(10):
        cache[key] = key
    assert _policy(cache) == ([(0, 0, False), *((k, 0, True) for k in range(1, 10))], False)
    cache[10] = 10
    cache[19] = 19  # was in the ghost before the clear: small's now
    assert _policy(cache)[0][0] == (19, 0, False)


def test_pop_takes_a_key_from_its_queue_and_leaves_the_ghost(backend: Backend) -> None:
    cache = _filled(backend, 10, list(range(10)))
    cache[10] = 10  # 0 to the ghost
    assert cache.pop(5) == 5
    assert cache.pop(10) == 10
    cache[0] = 0  # still remembered
    assert _policy(cache)[0][-1] == (0, 0, True)
    assert len(cache) == 9


@pytest.mark.parametrize("how", ["copy", "deepcopy", "pickle"])
def test_a_copy_keeps_queues_and_freqs_and_forgets_the_ghost(backend: Backend, how: str) -> None:
    cache = _filled(backend, 10, list(range(11)))  # 0 is in the ghost
    cache.get(3)
    cache.get(10)
    take = {"copy": copy.copy, "deepcopy": copy.deepcopy, "pickle": pickle.loads}[how]
    clone = take(pickle.dumps(cache)) if how == "pickle" else take(cache)
    assert _policy(clone) == _policy(cache)
    cache[0] = 0
    clone[0] = 0
    assert _policy(cache)[0][-1] == (0, 0, True)  # readmitted by the ghost
    assert _policy(clone)[0][0] == (0, 0, False)  # a new key to the clone


@pytest.mark.parametrize("maxsize", [1, 2, 3])
def test_tiny_caches(backend: Backend, maxsize: int) -> None:
    model: S3FIFO[int, int] = S3FIFO(maxsize)
    cache = backend.S3FIFOCache(maxsize)
    rng = random.Random(maxsize)
    for step in range(2_000):
        key = rng.randrange(5)
        if rng.random() < 0.5:
            assert cache.get(key) == model.get(key)
        else:
            cache[key] = step
            model.set(key, step)
        assert cache.keys() == model.keys()
    assert _stats(cache) == _stats(model)


# --- the pure twin's sketch ---------------------------------------------------


@pytest.mark.parametrize("maxsize", [1, 3, 50, 1000])
def test_the_pure_sketch_counts_as_the_models_sparse_then_dense(maxsize: int) -> None:
    sketch = Sketch(maxsize)
    model = CountMin4(2 * maxsize, 10 * maxsize)
    rng = random.Random(maxsize)
    went_dense = False
    for step in range(30 * maxsize + 200):
        # Skewed, negative and huge hashes: some counters saturate.
        h = rng.choice([rng.randrange(4 * maxsize), -rng.randrange(2**63), rng.getrandbits(64)])
        h = h if step % 3 else h % (1 + step % 7)
        sketch.increment(h)
        model.increment(h)
        went_dense |= sketch.is_dense()
        assert sketch.estimate(h) == model.estimate(h)
    assert all(sketch.estimate(h) == model.estimate(h) for h in range(-50, 8 * maxsize))
    assert went_dense


def test_the_pure_sketch_of_a_huge_cache_allocates_what_it_counts() -> None:
    sketch = Sketch(2**32 - 2)
    for h in range(1_000):
        sketch.increment(h)
        sketch.increment(h)
    assert not sketch.is_dense()
    assert sketch.estimate(7) == 2


# --- whole traces against the model -----------------------------------------


def _zipf(keys: int, requests: int, skew: float, seed: int) -> list[int]:
    """Seeded Zipf draws over ``keys`` keys, ranks mapped through a permutation."""
    rng = random.Random(seed)
    perm = list(range(keys))
    rng.shuffle(perm)
    weights = list(itertools.accumulate(1 / (rank + 1) ** skew for rank in range(keys)))
    return [perm[r] for r in rng.choices(range(keys), cum_weights=weights, k=requests)]


def _traces() -> dict[str, list[int]]:
    zipf = _zipf(2_000, 40_000, 1.0, seed=23)
    scan = list(zipf)
    for start in range(0, len(scan), 8_000):  # scans of keys never seen again
        scan[start : start + 2_000] = range(10_000 + start, 12_000 + start)
    return {
        "zipf-0.8": _zipf(2_000, 40_000, 0.8, seed=23),
        "zipf-1.2": _zipf(2_000, 40_000, 1.2, seed=23),
        "scan+zipf": scan,
        "loop": [k % 2_500 for k in range(40_000)],
    }


TRACES = _traces()


def _stats(cache: Any) -> tuple[int, int, int, int]:
    s = cache.stats()
    return (s.hits, s.misses, s.inserts, s.evictions)


def _read_through(cache: Any, requests: list[Any]) -> int:
    hits = 0
    get, put = cache.get, cache.set
    for key in requests:
        if get(key) is None:
            put(key, 1)
        else:
            hits += 1
    return hits


@pytest.mark.parametrize("maxsize", [20, 200, 700])
@pytest.mark.parametrize("trace", sorted(TRACES))
def test_hits_and_keys_kept_are_the_models(backend: Backend, trace: str, maxsize: int) -> None:
    model: S3FIFO[int, int] = S3FIFO(maxsize)
    # The model's shares are floats of maxsize; at these sizes they are the
    # caches' integer shares.
    assert (model.small_target, model.ghost_size) == (max(1, maxsize // 100), maxsize * 9 // 10)
    requests = TRACES[trace]
    cache = backend.S3FIFOCache(maxsize)
    hits = _read_through(cache, requests)
    assert hits == _read_through(model, requests)
    assert _stats(cache) == _stats(model)
    assert cache.keys() == model.keys()
    assert hits > (0 if trace == "loop" else len(requests) // 10)


@dataclass(frozen=True)
class _Shared:
    """Keys sharing hashes ten to one, with more hashes (200) than the ghost
    holds (54): the ghost holds each hash once, made its newest again when
    another key of that hash leaves small, and forgets its oldest (a ghost
    that kept a hash in place would keep other keys: measured on this trace)."""

    n: int

    def __hash__(self) -> int:
        return self.n % 200


def test_keys_that_share_hashes_get_the_models_decisions(backend: Backend) -> None:
    requests = [_Shared(k) for k in _zipf(2_000, 20_000, 0.8, seed=5)]
    model: S3FIFO[_Shared, int] = S3FIFO(60)
    cache = backend.S3FIFOCache(60)
    assert _read_through(cache, requests) == _read_through(model, requests)
    assert _stats(cache) == _stats(model)
    assert cache.keys() == model.keys()
