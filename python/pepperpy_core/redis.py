"""RedisCache: a cache on a Redis server or Redis Cluster (the ``redis``
extra, redis-py's asyncio client), and the shared store of a TieredCache.

- Keys are str (valid UTF-8), stored under ``prefix``; values go through a
  Serializer (JSON and bytes by default, see ``serializers``). Every call is
  bounded by ``timeout``; a server that cannot be reached or does not answer
  in time (or a cluster that is down) raises CacheUnavailableError. A stored
  value that cannot be decoded, or a key that holds a list or a hash, is a
  miss, logged once per key, never an exception.
- Names in Redis: a value is at ``prefix + key`` as it is (a key that starts
  with NUL gets one more, so no key can take the name of what the cache
  keeps beside it, which always starts ``prefix + NUL``): a key's load lock
  (``NUL l``), a tag's set of keys (``NUL t``), the announcements' channel
  (``NUL i``). On a cluster a key's lock and channel share its hash slot.
- Every write and delete announces its keys, in the same round trip (one Lua
  script: SET then PUBLISH, or SPUBLISH on a cluster): the TieredCaches on
  the prefix drop their copies. On a cluster, announcements use sharded
  pub/sub (Redis 7+): one channel per hash slot, each subscribed on its
  master.
- As a TieredCache's store (``protocols.RemoteStore``): reads give each
  value's time left to live; ``claim`` finds the value or takes the key's
  load lock (SET NX PX with a random token) in one round trip, ``commit``
  stores the loaded value, releases the lock and announces the key in
  another; locks are renewed while a loader runs, and released only by
  their owner.
- A full connection pool is back-pressure, not an outage: commands wait for
  a connection (within the timeout); never more are sent at once than the
  pool holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, Generic, Protocol, TypeVar, overload

# redis-py through _redis_client, which names the extra to install if it is missing.
from pepperpy_core._redis_client import (
    DEFAULT_URL,
    Client,
    RedisCluster,
    _errors,
    aioredis,
    key_slot,
    make_client,
)
from pepperpy_core._seconds import seconds, seconds_or_none
from pepperpy_core.errors import CacheUnavailableError, CorruptValueError
from pepperpy_core.serializers import JSON, Serializer
from pepperpy_core.stores import Claim, Invalidation, Stored

if TYPE_CHECKING:
    from redis.asyncio.client import PubSub

__all__ = ["DEFAULT_URL", "RedisCache", "RedisModule", "TieredCache", "make_client"]

V = TypeVar("V")
D = TypeVar("D")

_log: Final = logging.getLogger("pepperpy_core.redis")
_MISSING: Final = object()
_SLOTS: Final = 16384
#: Errors that mean "the cluster cannot serve this now", not "a bad command".
_CLUSTER_TROUBLE: Final = (
    _errors.ClusterDownError,
    _errors.TryAgainError,
    _errors.MovedError,
    _errors.AskError,
    _errors.MasterDownError,
    _errors.BusyLoadingError,
    _errors.RedisClusterException,
    _errors.SlotNotCoveredError,
)
#: A full pool: another connection frees up in a moment.
_POOL_FULL: Final = getattr(_errors, "MaxConnectionsError", ())
#: Each script's SHA-1 digest, by which Redis knows it.
_DIGESTS: dict[str, str] = {}

# --- the scripts: each one round trip, all keys of one (cluster) slot -------------------------

# Values and their time left; a key that is not a string value reads as
# missing, with -3 for "another type" (logged by the client).
_FETCH: Final = """
local out = {}
for i, name in ipairs(KEYS) do
  local v = redis.pcall('get', name)
  if type(v) == 'string' then
    out[2*i-1] = v
    out[2*i] = redis.call('pttl', name)
  else
    out[2*i-1] = false
    out[2*i] = (type(v) == 'table' and v.err) and -3 or -2
  end
end
return out
"""
# ARGV: publish command, channel, message, px ('' for none), values n,
# members m, then n values, then m members. KEYS: the n value names, then
# tag sets, each given the m members and an expiry no shorter than theirs.
_WRITE: Final = """
local n, m, px = tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[4]
for i = 1, n do
  if px == '' then redis.call('set', KEYS[i], ARGV[6+i])
  else redis.call('set', KEYS[i], ARGV[6+i], 'px', px) end
end
for j = n+1, #KEYS do
  local before = redis.call('pttl', KEYS[j])
  for k = 7+n, 6+n+m do redis.call('sadd', KEYS[j], ARGV[k]) end
  if px == '' then
    if before ~= -2 then redis.call('persist', KEYS[j]) end
  elseif before == -2 or (before >= 0 and before < tonumber(px)) then
    redis.call('pexpire', KEYS[j], px)
  end
end
if ARGV[1] == '' then return 0 end
return redis.call(ARGV[1], ARGV[2], ARGV[3])
"""
_REMOVE: Final = """
local gone = 0
for _, name in ipairs(KEYS) do gone = gone + redis.call('del', name) end
redis.call(ARGV[1], ARGV[2], ARGV[3])
return gone
"""
# The tag's keys, and the tag forgotten, in one step.
_TAKE_TAG: Final = """
local members = redis.call('smembers', KEYS[1])
redis.call('del', KEYS[1])
return members
"""
# {1, value, pttl} | {2} (the lock is ours) | {3, '', lock pttl}.
_CLAIM: Final = """
if ARGV[3] == '' then
  local v = redis.pcall('get', KEYS[1])
  if type(v) == 'string' then return {1, v, redis.call('pttl', KEYS[1])} end
end
if redis.call('set', KEYS[2], ARGV[1], 'nx', 'px', ARGV[2]) then return {2} end
local left = redis.call('pttl', KEYS[2])
if left == -1 then  -- a lock that would never expire (not one of ours): bound it
  redis.call('pexpire', KEYS[2], ARGV[2])
  left = tonumber(ARGV[2])
end
return {3, '', left}
"""
_COMMIT: Final = """
if ARGV[6] == '' then redis.call('set', KEYS[1], ARGV[5])
else redis.call('set', KEYS[1], ARGV[5], 'px', ARGV[6]) end
if redis.call('get', KEYS[2]) == ARGV[4] then redis.call('del', KEYS[2]) end
return redis.call(ARGV[1], ARGV[2], ARGV[3])
"""
_RELEASE: Final = """
if redis.call('get', KEYS[1]) == ARGV[4] then redis.call('del', KEYS[1]) end
return redis.call(ARGV[1], ARGV[2], ARGV[3])
"""
_RENEW: Final = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""


def check_key(key: object, what: str = "a Redis cache key") -> str:
    """``key`` if it is a str Redis can hold (valid UTF-8); TypeError or ValueError."""
    if type(key) is not str:
        raise TypeError(f"{what} must be a str, not {type(key).__name__}")
    try:
        key.encode()
    except UnicodeEncodeError:
        raise ValueError(
            f"{what} must be valid UTF-8 text; {key!r} has a lone surrogate "
            "(from os.fsdecode of bytes that are not UTF-8, say)"
        ) from None
    return key


def _slot_tags() -> list[str]:
    """For each hash slot, a short string whose slot it is: ``{tag}`` in a
    name puts the name in that slot."""
    alphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    tags: list[str | None] = [None] * _SLOTS
    left = _SLOTS
    for length in (1, 2, 3, 4):
        for letters in itertools.product(alphabet, repeat=length):
            tag = "".join(letters)
            slot = key_slot(tag.encode())
            if tags[slot] is None:
                tags[slot] = tag
                left -= 1
                if not left:
                    return [t for t in tags if t is not None]
    raise AssertionError("no tag found for some hash slot")  # (four characters always do)


_TAGS: list[str] = []


def _tag_of(slot: int) -> str:
    if not _TAGS:
        _TAGS.extend(_slot_tags())
    return _TAGS[slot]


class _Names:
    """Where a cache keeps things in Redis (see this module's doc)."""

    __slots__ = ("cluster", "prefix")

    def __init__(self, prefix: str, cluster: bool) -> None:
        self.prefix = prefix
        self.cluster = cluster

    def value(self, key: str) -> str:
        return self.prefix + ("\0" + key if key[:1] == "\0" else key)

    def slot(self, key: str) -> int:
        return key_slot(self.value(key).encode())

    def lock(self, key: str) -> str:
        if self.cluster:
            return f"{self.prefix}\0l{{{_tag_of(self.slot(key))}}}{key}"
        return f"{self.prefix}\0l:{key}"

    def tag(self, tag: str) -> str:
        return f"{self.prefix}\0t:{tag}"

    def channel(self, slot: int | None = None) -> str:
        if slot is None or not self.cluster:
            return f"{self.prefix}\0i"
        return f"{self.prefix}\0i{{{_tag_of(slot)}}}"


class _HasClient(Protocol):
    """Anything that owns a client for others to use (a RedisModule)."""

    @property
    def client(self) -> Client: ...


class RedisCache(Generic[V]):
    """A cache on Redis or Redis Cluster, and a TieredCache's shared store
    (see this module's doc).

    ``client`` is a redis-py asyncio client (``Redis`` or ``RedisCluster``)
    or a RedisModule (whose client exists once it has started); without one,
    the cache makes its own for ``url`` and closes it in ``aclose()``."""

    def __init__(
        self,
        client: Client | _HasClient | None = None,
        *,
        url: str | None = None,
        prefix: str = "pepperpy:",
        ttl: float | None = None,
        serializer: Serializer = JSON,
        timeout: float = 1.0,
    ) -> None:
        if client is not None and url is not None:
            raise TypeError("give RedisCache a client or a url, not both")
        if client is not None and not (
            isinstance(client, aioredis.Redis | RedisCluster) or hasattr(type(client), "client")
        ):
            raise TypeError(
                "client must be a redis.asyncio.Redis, a RedisCluster or a RedisModule, "
                f"not {type(client).__name__}"
            )
        check_key(prefix, "prefix")
        opened = prefix.find("{")
        if opened >= 0 and prefix.find("}", opened) < 0:
            raise ValueError(
                f"prefix {prefix!r} opens a hash tag it does not close: Redis Cluster "
                "would spread a key and its lock over two slots"
            )
        if not (
            callable(getattr(serializer, "dumps", None))
            and callable(getattr(serializer, "loads", None))
        ):
            raise TypeError("serializer must have dumps(value) -> bytes and loads(bytes)")
        self.prefix = prefix
        self.ttl = seconds_or_none(ttl, "ttl")
        self.serializer = serializer
        self.timeout = seconds(timeout, "timeout")
        self._source = client
        self._own: Client | None = None
        if client is None:
            self._own = make_client(url if url is not None else DEFAULT_URL, self.timeout)
        self._slots: asyncio.Semaphore | None = None  # commands in flight, at most the pool's size
        self._slots_for: object = None
        self._reported: set[str] = set()  # unreadable keys already logged
        #: Reads that found a value this cache cannot read (a miss each), so far.
        self.unreadable = 0
        #: Messages on the channel that were not announcements, so far.
        self.malformed = 0
        self._malformed_logged = float("-inf")

    @property
    def client(self) -> Client:
        """The redis-py client this cache uses."""
        if self._own is not None:
            return self._own
        source = self._source
        if isinstance(source, aioredis.Redis | RedisCluster):
            return source
        assert source is not None
        return source.client

    @property
    def cluster(self) -> bool:
        """Whether the client is a Redis Cluster client."""
        return isinstance(self.client, RedisCluster)

    def _names(self) -> _Names:
        return _Names(self.prefix, self.cluster)

    # --- calling Redis -------------------------------------------------------------------------

    def _pool_slots(self, client: Client) -> asyncio.Semaphore:
        """At most as many commands at once as the pool has connections (less
        the one a subscription holds), so a full pool is never an error."""
        if self._slots is None or self._slots_for is not client:
            if isinstance(client, RedisCluster):
                size = getattr(client, "max_connections", 100)
            else:
                size = getattr(client.connection_pool, "max_connections", 100)
            self._slots = asyncio.Semaphore(max(1, min(size, 2**20) - 2))
            self._slots_for = client
        return self._slots

    async def _call(self, what: str, command: Callable[[Client], Awaitable[Any]]) -> Any:
        """Run one command within the timeout; CacheUnavailableError if the
        server cannot be reached, does not answer in time, or (a cluster)
        cannot serve the key now. A cancellation of the caller is always
        honoured: on Python 3.11, redis-py's ``asyncio.wait_for`` around a
        socket write can swallow one that arrives as the write completes; it
        is raised here once the reply is read (so the connection goes back
        to the pool clean)."""
        task = asyncio.current_task()
        cancels = task.cancelling() if task is not None else 0
        client = self.client
        try:
            # Waiting for a free connection is not the server's fault: the
            # timeout starts with the command (each holder is bounded by it).
            async with self._pool_slots(client), asyncio.timeout(self.timeout):
                while True:
                    try:
                        result = await command(client)
                        break
                    except _POOL_FULL:  # used by others too: wait for a connection
                        await asyncio.sleep(0.001)
            if task is not None and task.cancelling() > cancels:
                raise asyncio.CancelledError
            return result
        except TimeoutError as error:
            raise CacheUnavailableError(
                f"redis did not answer {what} within {self.timeout} s"
            ) from error
        except _CLUSTER_TROUBLE as error:
            raise CacheUnavailableError(f"redis cannot serve {what} now: {error}") from error
        except _errors.ResponseError:
            raise
        except (_errors.RedisError, OSError) as error:
            raise CacheUnavailableError(f"redis could not run {what}: {error}") from error

    async def _script(self, name: str, source: str, keys: list[str], args: list[Any]) -> Any:
        """Run a script by its digest (loading it when the server does not
        know it yet), one round trip in the common case."""
        digest = _DIGESTS.get(source)
        if digest is None:
            digest = _DIGESTS[source] = hashlib.sha1(source.encode()).hexdigest()

        async def run(client: Client) -> Any:
            try:
                return await client.evalsha(digest, len(keys), *keys, *args)
            except _errors.NoScriptError:
                await client.script_load(source)
                return await client.evalsha(digest, len(keys), *keys, *args)

        return await self._call(f"the {name} script", run)

    def _decode(self, name: str, data: bytes) -> Any:
        """The value in ``data``, or the missing marker (logged once per key)."""
        try:
            return self.serializer.loads(data)
        except CorruptValueError as error:
            self._report(name, f"holds a value this cache cannot read ({error})")
        except Exception as error:  # a serializer's own failure: a miss too
            self._report(name, f"holds a value this cache cannot read ({error!r})")
        return _MISSING

    def _report(self, name: str, what: str) -> None:
        self.unreadable += 1
        if name not in self._reported:
            if len(self._reported) > 10_000:
                self._reported.clear()
            self._reported.add(name)
            _log.warning("redis key %r %s: a miss (said once per key)", name, what)

    def _millis(self, ttl: float | None) -> int | None:
        limit = seconds_or_none(ttl, "ttl") if ttl is not None else self.ttl
        return None if limit is None else max(1, round(limit * 1000))

    def _announcement(self, origin: str, keys: Sequence[str]) -> str:
        return json.dumps({"o": origin, "k": list(keys)}, separators=(",", ":"))

    def _publish(self) -> str:
        return "spublish" if self.cluster else "publish"

    # --- reads ---------------------------------------------------------------------------------

    @overload
    async def get(self, key: str, default: None = None, /) -> V | None: ...
    @overload
    async def get(self, key: str, default: V | D, /) -> V | D: ...
    async def get(self, key: str, default: object = None, /) -> object:
        """The value of ``key``, or ``default`` when it is missing or unreadable."""
        name = self._names().value(check_key(key))
        try:
            data = await self._call("GET", lambda c: c.get(name))
        except _errors.ResponseError as error:  # the key holds a list, a hash...: not ours
            self._report(name, f"is not a cache value ({error})")
            return default
        if data is None:
            return default
        value = self._decode(name, data)
        return default if value is _MISSING else value

    async def get_many(self, keys: Iterable[str]) -> dict[str, V]:
        """The keys that are present (and readable): one MGET (on a cluster,
        one per hash slot, sent at once)."""
        wanted = list(dict.fromkeys(check_key(k) for k in keys))
        if not wanted:
            return {}
        names = self._names()
        out: dict[str, V] = {}
        for group in self._by_slot(wanted):
            values = [names.value(k) for k in group]

            async def mget(client: Client, values: list[str] = values) -> list[Any]:
                return list(await client.mget(values))

            found = await self._call("MGET", mget)
            for key, name, data in zip(group, values, found, strict=True):
                if data is not None:
                    value = self._decode(name, data)
                    if value is not _MISSING:
                        out[key] = value
        return out

    async def fetch(self, keys: Sequence[str]) -> dict[str, Stored[V]]:
        """The keys present and readable, each with its time left to live,
        in one round trip (one per hash slot on a cluster)."""
        wanted = list(dict.fromkeys(check_key(k) for k in keys))
        names = self._names()
        groups = self._by_slot(wanted)
        replies = await asyncio.gather(
            *(self._script("fetch", _FETCH, [names.value(k) for k in g], []) for g in groups)
        )
        out: dict[str, Stored[V]] = {}
        for group, reply in zip(groups, replies, strict=True):
            for index, key in enumerate(group):
                data, left = reply[2 * index], reply[2 * index + 1]
                if data is None:
                    if left == -3:
                        self._report(names.value(key), "is not a cache value")
                    continue
                value = self._decode(names.value(key), data)
                if value is not _MISSING:
                    out[key] = Stored(value, left / 1000 if left >= 0 else None)
        return out

    def _by_slot(self, keys: list[str]) -> list[list[str]]:
        """``keys`` grouped by hash slot on a cluster (one group otherwise)."""
        if not self.cluster:
            return [keys] if keys else []
        names = self._names()
        groups: dict[int, list[str]] = {}
        for key in keys:
            groups.setdefault(names.slot(key), []).append(key)
        return list(groups.values())

    # --- writes --------------------------------------------------------------------------------

    async def set(
        self, key: str, value: V, *, ttl: float | None = None, tags: Sequence[str] = ()
    ) -> None:
        """Store ``value`` (TypeError, and nothing written, if the serializer
        refuses it) and announce it; ``ttl`` (else the cache's default)
        bounds its life; ``tags`` name groups that ``invalidate_tag`` drops."""
        await self.write([(key, value)], ttl=ttl, tags=tags, origin="")

    async def set_many(
        self,
        items: Mapping[str, V] | Iterable[tuple[str, V]],
        *,
        ttl: float | None = None,
        tags: Sequence[str] = (),
    ) -> None:
        """Store every pair and announce them in one round trip; every value
        is serialized first, so one the serializer refuses means nothing is
        written."""
        pairs = list(items.items() if isinstance(items, Mapping) else items)
        await self.write(pairs, ttl=ttl, tags=tags, origin="")

    async def write(
        self,
        items: Sequence[tuple[str, V]],
        *,
        ttl: float | None = None,
        tags: Sequence[str] = (),
        origin: str,
    ) -> int:
        """``set_many`` for a TieredCache: how many subscribers heard it (on
        a cluster, the fewest of any slot's channel)."""
        encoded = {check_key(k): self.serializer.dumps(v) for k, v in items}
        tag_names = [check_key(t, "a tag") for t in tags]
        if not encoded:
            return 0
        names = self._names()
        px = self._millis(ttl)
        pxarg = "" if px is None else str(px)
        keys = list(encoded)
        if not self.cluster:
            return int(
                await self._script(
                    "write",
                    _WRITE,
                    [names.value(k) for k in keys] + [names.tag(t) for t in tag_names],
                    [
                        "publish",
                        names.channel(),
                        self._announcement(origin, keys),
                        pxarg,
                        len(keys),
                        len(keys) if tag_names else 0,
                        *encoded.values(),
                        *(keys if tag_names else ()),
                    ],
                )
            )
        heard = await asyncio.gather(
            *(
                self._script(
                    "write",
                    _WRITE,
                    [names.value(k) for k in group],
                    [
                        "spublish",
                        names.channel(names.slot(group[0])),
                        self._announcement(origin, group),
                        pxarg,
                        len(group),
                        0,
                        *(encoded[k] for k in group),
                    ],
                )
                for group in self._by_slot(keys)
            )
        )
        for tag in tag_names:  # after the values: a tag never names a key not written
            await self._script(
                "write", _WRITE, [names.tag(tag)], ["", "", "", pxarg, 0, len(keys), *keys]
            )
        return min(int(h) for h in heard)

    async def delete(self, key: str) -> bool:
        """Remove ``key`` and announce it; whether it was there."""
        return await self.remove([key], origin="") > 0

    async def remove(self, keys: Sequence[str], *, origin: str) -> int:
        """Delete the keys and announce them; how many existed."""
        wanted = list(dict.fromkeys(check_key(k) for k in keys))
        names = self._names()
        gone = await asyncio.gather(
            *(
                self._script(
                    "remove",
                    _REMOVE,
                    [names.value(k) for k in group],
                    [
                        self._publish(),
                        names.channel(names.slot(group[0]) if self.cluster else None),
                        self._announcement(origin, group),
                    ],
                )
                for group in self._by_slot(wanted)
            )
        )
        return sum(int(g) for g in gone)

    async def invalidate_tag(self, tag: str, *, origin: str = "") -> tuple[str, ...]:
        """Remove every key written with ``tag`` and announce them; those keys."""
        name = self._names().tag(check_key(tag, "a tag"))
        members = await self._script("take_tag", _TAKE_TAG, [name], [])
        keys = [m.decode() if isinstance(m, bytes) else str(m) for m in members]
        if keys:
            await self.remove(keys, origin=origin)
        return tuple(keys)

    # --- one load across processes -------------------------------------------------------------

    async def claim(self, key: str, lock_ttl: float) -> Claim[V]:
        """The stored value, or the key's load lock for ``lock_ttl`` seconds,
        or how long another's lock has left, in one round trip."""
        names = self._names()
        check_key(key)
        token = secrets.token_hex(16)
        millis = max(1, round(seconds(lock_ttl, "lock_ttl") * 1000))
        skip = ""
        while True:
            reply = await self._script(
                "claim", _CLAIM, [names.value(key), names.lock(key)], [token, millis, skip]
            )
            if reply[0] == 1:
                value = self._decode(names.value(key), reply[1])
                if value is _MISSING:  # unreadable: a miss, so claim the lock
                    skip = "1"
                    continue
                left = reply[2]
                return Claim(found=Stored(value, left / 1000 if left >= 0 else None))
            if reply[0] == 2:
                return Claim(token=token)
            return Claim(wait=max(reply[2], 1) / 1000)

    async def commit(self, key: str, token: str, value: V, *, origin: str) -> None:
        """Store what the lock's owner loaded (with the cache's ``ttl``),
        release the lock if ``token`` still holds it, announce the key."""
        names = self._names()
        data = self.serializer.dumps(value)
        px = self._millis(None)
        await self._script(
            "commit",
            _COMMIT,
            [names.value(key), names.lock(key)],
            [
                self._publish(),
                names.channel(names.slot(key) if self.cluster else None),
                self._announcement(origin, [key]),
                token,
                data,
                "" if px is None else str(px),
            ],
        )

    async def release(self, key: str, token: str, *, origin: str) -> None:
        """Release the lock without a value and announce the key (waiters retry)."""
        names = self._names()
        await self._script(
            "release",
            _RELEASE,
            [names.lock(key)],
            [
                self._publish(),
                names.channel(names.slot(key) if self.cluster else None),
                self._announcement(origin, [key]),
                token,
            ],
        )

    async def renew(self, key: str, token: str, lock_ttl: float) -> bool:
        """Extend the lock to ``lock_ttl`` seconds if ``token`` still holds it."""
        millis = max(1, round(lock_ttl * 1000))
        return bool(await self._script("renew", _RENEW, [self._names().lock(key)], [token, millis]))

    # --- the announcements ---------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[AsyncIterator[Invalidation]]:
        """The announcements on this prefix, from now on (see RemoteStore)."""
        subscription = _ClusterSubscription(self) if self.cluster else _Subscription(self)
        try:
            await subscription.open()
        except BaseException:
            await subscription.close()
            raise
        try:
            yield subscription
        finally:
            await subscription.close()

    def _parse(self, data: object) -> Invalidation | None:
        """An announcement, or None for a message that is not one (counted)."""
        try:
            if isinstance(data, bytes):
                data = data.decode()
            if not isinstance(data, str) or len(data) > 10_000_000:
                raise ValueError("not a message of this cache")
            message = json.loads(data)
            origin, keys = message["o"], message["k"]
            if not isinstance(origin, str) or not isinstance(keys, list):
                raise ValueError("not a message of this cache")
            return Invalidation(origin, tuple(k for k in keys if isinstance(k, str)))
        except Exception:  # RecursionError from a deeply nested one too
            self.malformed += 1
            now = time.monotonic()
            if now >= self._malformed_logged + 60:
                self._malformed_logged = now
                _log.warning(
                    "%d malformed message(s) on %r so far (ignored; said once a minute)",
                    self.malformed,
                    self._names().channel(),
                )
            return None

    async def aclose(self) -> None:
        """Close the client if this cache made it."""
        if self._own is not None:
            await self._own.aclose()

    def __repr__(self) -> str:
        return f"RedisCache(prefix={self.prefix!r}, ttl={self.ttl}, serializer={self.serializer!r})"


async def _confirmed(pubsub: PubSub, kind: str, count: int, each: float) -> None:
    """Wait for ``count`` confirmations of kind ``kind`` (subscribe,
    ssubscribe), at most ``each`` seconds for each."""
    while count:
        message = await pubsub.get_message(timeout=each)
        _honour_cancel()
        if message is not None and message.get("type") == kind:
            count -= 1


class _Subscription:
    """The announcements of one Redis server, as an async iterator."""

    def __init__(self, cache: RedisCache[Any]) -> None:
        self._cache = cache
        self._pubsub: PubSub | None = None
        self._last_ping = 0.0

    async def open(self) -> None:
        cache = self._cache
        try:
            pubsub = self._pubsub = cache.client.pubsub()
            async with asyncio.timeout(cache.timeout):
                await pubsub.subscribe(cache._names().channel())
                await _confirmed(pubsub, "subscribe", 1, cache.timeout)
        except (_errors.RedisError, OSError, TimeoutError) as error:
            raise CacheUnavailableError(f"redis could not subscribe: {error!r}") from error
        self._last_ping = time.monotonic()

    def __aiter__(self) -> _Subscription:
        return self

    async def __anext__(self) -> Invalidation:
        cache, pubsub = self._cache, self._pubsub
        assert pubsub is not None
        interval = max(cache.timeout, 1.0)
        try:
            while True:
                message = await pubsub.get_message(timeout=interval)
                _honour_cancel()
                if time.monotonic() - self._last_ping >= interval:
                    # A server that went away is noticed within this interval.
                    async with asyncio.timeout(cache.timeout):
                        await pubsub.ping()
                    self._last_ping = time.monotonic()
                kind = None if message is None else message.get("type")
                if kind == "subscribe":
                    # redis-py reconnected and subscribed again by itself:
                    # what was announced in between is lost.
                    raise CacheUnavailableError("the subscription was renewed: announcements lost")
                if kind == "message":  # (not a pong)
                    parsed = cache._parse(message.get("data"))
                    if parsed is not None:
                        return parsed
        except (_errors.RedisError, OSError, TimeoutError) as error:
            raise CacheUnavailableError(f"lost the announcements: {error!r}") from error

    async def close(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            await _close_quietly(pubsub)


class _ClusterSubscription:
    """The announcements of a Redis Cluster: on each master, its slots'
    channels (sharded pub/sub), read together. A slot that moves, or a
    master that goes, ends it (the TieredCache subscribes afresh)."""

    def __init__(self, cache: RedisCache[Any]) -> None:
        self._cache = cache
        self._pubsubs: list[PubSub] = []
        self._clients: list[aioredis.Redis] = []
        self._readers: list[asyncio.Task[None]] = []
        self._queue: asyncio.Queue[Invalidation | BaseException] = asyncio.Queue()

    async def open(self) -> None:
        cache = self._cache
        client = cache.client
        assert isinstance(client, RedisCluster)
        names = cache._names()
        try:
            async with asyncio.timeout(max(cache.timeout, 10.0)):
                await client.initialize()
                owners: dict[str, tuple[Any, list[str]]] = {}
                for slot in range(_SLOTS):
                    channel = names.channel(slot)
                    node = client.get_node_from_key(channel)
                    if node is None:
                        raise _errors.SlotNotCoveredError(f"no master serves {channel!r}")
                    owners.setdefault(node.name, (node, []))[1].append(channel)
                for node, channels in owners.values():
                    pool = aioredis.ConnectionPool(
                        connection_class=node.connection_class, **node.connection_kwargs
                    )
                    single = aioredis.Redis(connection_pool=pool)
                    self._clients.append(single)
                    pubsub = single.pubsub()
                    self._pubsubs.append(pubsub)
                    for channel in channels:  # one slot each: sent without waiting
                        await pubsub.ssubscribe(channel)
                    await _confirmed(pubsub, "ssubscribe", len(channels), cache.timeout)
        except (_errors.RedisError, OSError, TimeoutError, *_CLUSTER_TROUBLE) as error:
            with contextlib.suppress(Exception):
                await client.nodes_manager.initialize()  # the topology, afresh next time
            raise CacheUnavailableError(f"redis cluster could not subscribe: {error!r}") from error
        self._readers = [asyncio.ensure_future(self._read(p)) for p in self._pubsubs]

    async def _read(self, pubsub: PubSub) -> None:
        cache = self._cache
        interval = max(cache.timeout, 1.0)
        last_ping = time.monotonic()
        try:
            while True:
                message = await pubsub.get_message(timeout=interval)
                _honour_cancel()
                if time.monotonic() - last_ping >= interval:
                    async with asyncio.timeout(cache.timeout):
                        await pubsub.ping()
                    last_ping = time.monotonic()
                if message is None:
                    continue
                kind = message.get("type")
                if kind == "ssubscribe":  # redis-py subscribed again by itself: some lost
                    raise CacheUnavailableError("the subscription was renewed: announcements lost")
                if kind == "smessage":
                    parsed = cache._parse(message.get("data"))
                    if parsed is not None:
                        self._queue.put_nowait(parsed)
                elif kind == "sunsubscribe":  # a slot moved: subscribe afresh
                    raise CacheUnavailableError("a hash slot moved to another master")
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self._queue.put_nowait(error)

    def __aiter__(self) -> _ClusterSubscription:
        return self

    async def __anext__(self) -> Invalidation:
        item = await self._queue.get()
        if isinstance(item, CacheUnavailableError):
            raise item
        if isinstance(item, BaseException):
            raise CacheUnavailableError(f"lost the announcements: {item!r}") from item
        return item

    async def close(self) -> None:
        readers, self._readers = self._readers, []
        for reader in readers:
            reader.cancel()
        if readers:
            await asyncio.wait(readers)
        for pubsub in self._pubsubs:
            await _close_quietly(pubsub)
        for single in self._clients:
            with contextlib.suppress(Exception):
                await single.aclose()
        self._pubsubs, self._clients = [], []


def _honour_cancel() -> None:
    """Raise CancelledError if this task was asked to stop and the client
    swallowed it (redis-py's ``asyncio.wait_for`` can, on Python 3.11)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def _close_quietly(pubsub: PubSub) -> None:
    try:
        async with asyncio.timeout(1.0):
            # Through a typed name: redis-py annotates aclose since 8.2 and not
            # before, so a call of it directly type-checks under only one.
            close: Callable[[], Awaitable[None]] = pubsub.aclose
            await close()
    except (_errors.RedisError, OSError, TimeoutError):
        pass


# The tier and the module, importable from here as before.
from pepperpy_core.module.redis import RedisModule  # noqa: E402
from pepperpy_core.tier import TieredCache  # noqa: E402
