"""A shared cache tier on Redis (the ``redis`` extra): RedisCache,
TieredCache and RedisModule, on redis-py's asyncio client.

- ``RedisCache``: the async cache protocol on a Redis server. Keys are str,
  stored under ``prefix``; values go through a Serializer (JSON and bytes by
  default, see ``serializers``). Every call is bounded by ``timeout``; a
  server that cannot be reached or does not answer in time raises
  CacheUnavailableError. A stored value that cannot be decoded is a miss,
  logged, never an exception.
- ``TieredCache(local, remote)``: reads the local cache, then Redis (filling
  the local cache); writes both. Every write and delete publishes the keys on
  a channel, and every TieredCache on the same prefix drops its local copy
  when the message arrives. A read that raced with a write never leaves the
  old value behind locally (see ``_version``). While the subscription is
  down, local copies are served as they are; when it comes back the local
  cache is cleared, because messages may have been missed.
- ``TieredCache.load(key, loader)``: one loader call per key across every
  process: a lock in Redis (a random token, an expiry renewed while the
  loader runs, released only by its owner with a compare-and-delete in one
  server-side step); the others wait for the value the owner writes, and
  load themselves if the owner fails or dies (its lock expires).
- ``RedisModule``: a ResourceModule that owns the client (and its pool):
  health is a PING within the timeout, cleanup closes the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar, overload

from pepperpy_core._seconds import seconds, seconds_or_none
from pepperpy_core.cache import LocalCache, Peek
from pepperpy_core.errors import CacheUnavailableError, CorruptValueError, LifecycleError
from pepperpy_core.module.resource import ResourceModule
from pepperpy_core.protocols import CacheProtocol
from pepperpy_core.serializers import JSON, Serializer

try:
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import RedisError, ResponseError
except ImportError as exc:  # tests/test_redis.py hides redis-py to check this
    raise ImportError(
        "the Redis cache tier needs redis-py: install the extra with "
        "`pip install 'pepperpy-core[redis]'`",
        name="redis",
    ) from exc

if TYPE_CHECKING:
    from redis.asyncio.client import PubSub

__all__ = ["RedisCache", "RedisModule", "TieredCache"]

V = TypeVar("V")
D = TypeVar("D")

_log: Final = logging.getLogger("pepperpy_core.redis")
_MISSING: Final = object()
DEFAULT_URL: Final = "redis://127.0.0.1:6379/0"

# Release and renew a lock only if it still holds our token: one step on the
# server, so a lock that expired and was taken by another is never touched.
_UNLOCK: Final = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""
_RENEW: Final = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""


def make_client(url: str, timeout: float) -> aioredis.Redis:
    """A client for ``url`` whose sockets time out after ``timeout`` seconds
    and which retries a command once on a fresh connection (the first use
    of a pooled connection after the server restarted fails)."""
    if not isinstance(url, str):
        raise TypeError(f"url must be a str, not {type(url).__name__}")
    return aioredis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 1),
    )


def _key(key: object) -> str:
    if type(key) is not str:
        raise TypeError(f"a Redis cache key must be a str, not {type(key).__name__}")
    return key


class RedisCache(Generic[V]):
    """The async cache protocol on a Redis server (see this module's doc).

    ``client`` is a redis-py asyncio client or a RedisModule (whose client
    exists once it has started); without one, the cache makes its own for
    ``url`` and closes it in ``aclose()``."""

    def __init__(
        self,
        client: aioredis.Redis | RedisModule | None = None,
        *,
        url: str | None = None,
        prefix: str = "pepperpy:",
        ttl: float | None = None,
        serializer: Serializer = JSON,
        timeout: float = 1.0,
    ) -> None:
        if client is not None and url is not None:
            raise TypeError("give RedisCache a client or a url, not both")
        if client is not None and not isinstance(client, aioredis.Redis | RedisModule):
            raise TypeError(
                "client must be a redis.asyncio.Redis or a RedisModule, "
                f"not {type(client).__name__}"
            )
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, not {type(prefix).__name__}")
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
        self._own: aioredis.Redis | None = None
        if client is None:
            self._own = make_client(url if url is not None else DEFAULT_URL, self.timeout)
        self._scripts: dict[str, Any] = {}

    @property
    def client(self) -> aioredis.Redis:
        """The redis-py client this cache uses."""
        if self._own is not None:
            return self._own
        if isinstance(self._source, RedisModule):
            return self._source.client
        assert self._source is not None
        return self._source

    @property
    def channel(self) -> str:
        """Where the TieredCaches on this prefix publish invalidations."""
        return f"{self.prefix}__invalidate__"

    async def _call(self, what: str, command: Callable[[], Awaitable[Any]]) -> Any:
        """Run one command within the timeout; CacheUnavailableError if the
        server cannot be reached or does not answer in time. A cancellation
        of the caller is always honoured: on Python 3.11, redis-py's
        ``asyncio.wait_for`` around a socket write can swallow one that
        arrives as the write completes; it is raised here once the reply is
        read (so the connection goes back to the pool clean)."""
        task = asyncio.current_task()
        cancels = task.cancelling() if task is not None else 0
        try:
            async with asyncio.timeout(self.timeout):
                result = await command()
            if task is not None and task.cancelling() > cancels:
                raise asyncio.CancelledError
            return result
        except TimeoutError as error:
            raise CacheUnavailableError(
                f"redis did not answer {what} within {self.timeout} s"
            ) from error
        except ResponseError:
            raise
        except (RedisError, OSError) as error:
            raise CacheUnavailableError(f"redis could not run {what}: {error}") from error

    def _decode(self, key: str, data: bytes) -> Any:
        try:
            return self.serializer.loads(data)
        except CorruptValueError as error:
            _log.warning(
                "redis key %r holds a value this cache cannot read (%s): a miss", key, error
            )
            return _MISSING

    # --- the async protocol ---------------------------------------------------------

    @overload
    async def get(self, key: str, default: None = None, /) -> V | None: ...
    @overload
    async def get(self, key: str, default: V | D, /) -> V | D: ...
    async def get(self, key: str, default: object = None, /) -> object:
        """The value of ``key``, or ``default`` when it is missing or unreadable."""
        name = self.prefix + _key(key)
        try:
            data = await self._call("GET", lambda: self.client.get(name))
        except ResponseError as error:  # the key holds a list, a hash...: not ours
            _log.warning("redis key %r is not a cache value (%s): a miss", name, error)
            return default
        if data is None:
            return default
        value = self._decode(name, data)
        return default if value is _MISSING else value

    async def set(self, key: str, value: V, *, ttl: float | None = None) -> None:
        """Store ``value`` (TypeError, and nothing written, if the serializer
        refuses it); ``ttl`` (else the cache's default) bounds its life."""
        name = self.prefix + _key(key)
        data = self.serializer.dumps(value)
        millis = self._millis(ttl)
        await self._call("SET", lambda: self.client.set(name, data, px=millis))

    async def delete(self, key: str) -> bool:
        """Remove ``key``; whether it was there."""
        name = self.prefix + _key(key)
        return bool(await self._call("DEL", lambda: self.client.delete(name)))

    async def get_many(self, keys: Iterable[str]) -> dict[str, V]:
        """The keys that are present (and readable), in one round trip (MGET)."""
        wanted = list(dict.fromkeys(_key(k) for k in keys))
        if not wanted:
            return {}
        names = [self.prefix + k for k in wanted]
        found: list[bytes | None] = await self._call("MGET", lambda: self.client.mget(names))
        out: dict[str, V] = {}
        for key, name, data in zip(wanted, names, found, strict=True):
            if data is not None:
                value = self._decode(name, data)
                if value is not _MISSING:
                    out[key] = value
        return out

    async def set_many(
        self, items: Mapping[str, V] | Iterable[tuple[str, V]], *, ttl: float | None = None
    ) -> None:
        """Store every pair in one round trip; every value is serialized
        first, so one the serializer refuses means nothing is written."""
        pairs = list(items.items() if isinstance(items, Mapping) else items)
        encoded = {self.prefix + _key(k): self.serializer.dumps(v) for k, v in pairs}
        if not encoded:
            return
        millis = self._millis(ttl)
        if millis is None:
            await self._call("MSET", lambda: self.client.mset(encoded))
            return

        async def pipelined() -> Any:
            pipe = self.client.pipeline(transaction=False)
            for name, data in encoded.items():
                pipe.set(name, data, px=millis)
            return await pipe.execute()

        await self._call("SET (pipelined)", pipelined)

    def _millis(self, ttl: float | None) -> int | None:
        limit = seconds_or_none(ttl, "ttl") if ttl is not None else self.ttl
        return None if limit is None else max(1, round(limit * 1000))

    # --- what a TieredCache needs --------------------------------------------------------

    async def lock(self, key: str, ttl: float) -> str | None:
        """Take the lock of ``key`` for ``ttl`` seconds: its token, or None if
        another holds it."""
        token = secrets.token_hex(16)
        name = f"{self.prefix}__lock__:{_key(key)}"
        millis = max(1, round(ttl * 1000))
        taken = await self._call("SET NX", lambda: self.client.set(name, token, nx=True, px=millis))
        return token if taken else None

    async def unlock(self, key: str, token: str) -> bool:
        """Release the lock of ``key`` if ``token`` still holds it."""
        name = f"{self.prefix}__lock__:{_key(key)}"
        return bool(await self._script("unlock", _UNLOCK, [name], [token]))

    async def renew(self, key: str, token: str, ttl: float) -> bool:
        """Extend the lock of ``key`` to ``ttl`` seconds if ``token`` holds it."""
        name = f"{self.prefix}__lock__:{_key(key)}"
        return bool(await self._script("renew", _RENEW, [name], [token, max(1, round(ttl * 1000))]))

    async def peek_lock(self, key: str) -> tuple[Any, bool]:
        """(the value of ``key`` or the missing marker, whether its lock is
        held), in one round trip."""
        name = self.prefix + _key(key)
        lock = f"{self.prefix}__lock__:{key}"

        async def both() -> Any:
            pipe = self.client.pipeline(transaction=False)
            pipe.get(name)
            pipe.exists(lock)
            return await pipe.execute()

        try:
            data, held = await self._call("GET+EXISTS", both)
        except ResponseError:
            return _MISSING, False
        value = _MISSING if data is None else self._decode(name, data)
        return value, bool(held)

    async def _script(self, name: str, source: str, keys: list[str], args: list[Any]) -> Any:
        script = self._scripts.get(name)
        if script is None or script.registered_client is not self.client:
            script = self._scripts[name] = self.client.register_script(source)
        return await self._call(f"the {name} script", lambda: script(keys=keys, args=args))

    async def publish(self, message: str) -> None:
        """Publish ``message`` on this prefix's invalidation channel."""
        await self._call("PUBLISH", lambda: self.client.publish(self.channel, message))

    async def aclose(self) -> None:
        """Close the client if this cache made it."""
        if self._own is not None:
            await self._own.aclose()

    def __repr__(self) -> str:
        return f"RedisCache(prefix={self.prefix!r}, ttl={self.ttl}, serializer={self.serializer!r})"


class TieredCache(Generic[V]):
    """A local cache in front of a RedisCache, kept coherent across
    processes (see this module's doc)."""

    def __init__(
        self,
        local: LocalCache[str, V] | CacheProtocol[str, V] | int,
        remote: RedisCache[V],
        *,
        lock_ttl: float = 10.0,
        wait_poll: float = 0.05,
    ) -> None:
        if not isinstance(remote, RedisCache):
            raise TypeError(f"remote must be a RedisCache, not {type(remote).__name__}")
        self.local: LocalCache[str, V] = (
            local if isinstance(local, LocalCache) else LocalCache(local)
        )
        self.remote = remote
        self.lock_ttl = seconds(lock_ttl, "lock_ttl")
        self.wait_poll = seconds(wait_poll, "wait_poll")
        # Moves on at every change to any key (ours or announced): a read
        # from Redis fills the local cache only if it did not move meanwhile.
        self._version = 0
        self._origin = secrets.token_hex(8)  # our messages, skipped on arrival
        self._listener: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self._arrivals: dict[str, asyncio.Event] = {}  # keys someone waits for
        self.received = 0  # invalidation messages from others, so far
        self.peek = self.local.peek

    # --- reads --------------------------------------------------------------------------

    #: The local copy of a key (else ``default``), without waiting for
    #: anything: the local cache's own read (see LocalCache.peek).
    peek: Peek[str, V]

    def _put(self, key: str, value: V, ttl: float | None = None) -> None:
        self.local.put(key, value, ttl=ttl)
        self.peek = self.local.peek  # a first time to live changes how it reads

    def _clear_local(self) -> None:
        self._version += 1
        self.local.clear()
        self.peek = self.local.peek

    @overload
    async def get(self, key: str, default: None = None, /) -> V | None: ...
    @overload
    async def get(self, key: str, default: V | D, /) -> V | D: ...
    async def get(self, key: str, default: object = None, /) -> object:
        """The local copy, else the value in Redis (then kept locally), else
        ``default``; Redis unreachable is a miss."""
        local: Any = self.peek(key, _MISSING)
        if local is not _MISSING:
            return local
        self._listen()
        before = self._version
        try:
            value: Any = await self.remote.get(key, _MISSING)
        except CacheUnavailableError as error:
            _log.warning("%s: serving without redis", error)
            return default
        if value is _MISSING:
            return default
        if self._version == before:  # no change announced while we read
            self._put(key, value)
        return value

    async def get_many(self, keys: Iterable[str]) -> dict[str, V]:
        """Local copies, and the rest from Redis in one round trip."""
        found: dict[str, V] = {}
        missing: list[str] = []
        for key in keys:
            value = self.peek(_key(key), _MISSING)
            if value is _MISSING:
                missing.append(key)
            else:
                found[key] = value  # type: ignore[assignment]
        if missing:
            self._listen()
            before = self._version
            try:
                remote = await self.remote.get_many(missing)
            except CacheUnavailableError as error:
                _log.warning("%s: serving without redis", error)
                return found
            if self._version == before:
                for key, value in remote.items():
                    self._put(key, value)
            found.update(remote)
        return found

    # --- writes -------------------------------------------------------------------------

    async def set(self, key: str, value: V, *, ttl: float | None = None) -> None:
        """Write Redis, then the local copy, then tell the other processes.
        CacheUnavailableError (the local copy dropped) if Redis cannot be
        written; TypeError, and nothing written, if the value cannot be stored."""
        await self.set_many([(key, value)], ttl=ttl)

    async def set_many(
        self, items: Mapping[str, V] | Iterable[tuple[str, V]], *, ttl: float | None = None
    ) -> None:
        """``set`` for every pair, in one round trip and one message."""
        pairs = list(items.items() if isinstance(items, Mapping) else items)
        if not pairs:
            return
        for key, value in pairs:
            _key(key)
            self.remote.serializer.dumps(value)  # refuse before anything changes
        self._listen()
        self._version += 1
        mine = self._version
        try:
            await self.remote.set_many(pairs, ttl=ttl)
        except BaseException:
            self._version += 1
            for key, _ in pairs:
                self.local.drop(key)
            raise
        raced = self._version != mine  # someone changed something meanwhile
        self._version += 1
        for key, value in pairs:
            if raced:
                self.local.drop(key)
            else:
                self._put(key, value, ttl if ttl is not None else self.remote.ttl)
        await self._announce([k for k, _ in pairs])

    async def delete(self, key: str) -> bool:
        """Remove ``key`` here, in Redis and in every other process's local cache."""
        self._listen()
        self._version += 1
        self.local.drop(_key(key))
        try:
            existed = await self.remote.delete(key)
        finally:
            self._version += 1
            self.local.drop(key)
        await self._announce([key])
        return existed

    def clear(self) -> None:
        """Forget the local copies (Redis, which other processes share, keeps its keys)."""
        self._clear_local()

    async def _announce(self, keys: list[str]) -> None:
        message = json.dumps({"o": self._origin, "k": keys})
        try:
            await self.remote.publish(message)
        except CacheUnavailableError as error:
            _log.warning("%s: other processes keep their copies of %d key(s)", error, len(keys))

    # --- one load across processes ----------------------------------------------------------

    async def load(self, key: str, loader: Callable[[], Awaitable[V]]) -> V:
        """The value of ``key`` from Redis, else from ``loader()`` run once
        across every process sharing this Redis (see this module's doc); the
        loaded value is written. Redis unreachable: the loader runs here."""
        _key(key)
        self._listen()
        while True:
            try:
                token = await self.remote.lock(key, self.lock_ttl)
            except CacheUnavailableError as error:
                _log.warning("%s: loading %r without the shared lock", error, key)
                return await self._load_here(key, loader)
            if token is not None:
                return await self._load_locked(key, loader, token)
            value = await self._wait_for(key)
            if value is not _MISSING:
                return value  # type: ignore[no-any-return]
            # The owner released the lock without a value (its loader failed,
            # or it died and the lock expired): try to take it ourselves.

    async def _load_here(self, key: str, loader: Callable[[], Awaitable[V]]) -> V:
        value = await loader()
        try:
            await self.set(key, value)
        except CacheUnavailableError:
            self._put(key, value)
        return value

    async def _load_locked(self, key: str, loader: Callable[[], Awaitable[V]], token: str) -> V:
        renewing = asyncio.ensure_future(self._renew(key, token))
        try:
            before = self._version
            found: Any = await self.remote.get(key, _MISSING)  # written since our miss?
            if found is not _MISSING:
                if self._version == before:
                    self._put(key, found)
                return found  # type: ignore[no-any-return]
            value = await loader()
            try:
                await self.set(key, value)
            except CacheUnavailableError as error:
                _log.warning("%s: %r is cached only here", error, key)
                self._put(key, value)
            return value
        finally:
            renewing.cancel()
            await asyncio.wait([renewing])
            # A cancellation here leaves the unlock running to its end in a
            # task of its own; if Redis is gone, the lock expires by itself.
            with contextlib.suppress(CacheUnavailableError):
                await asyncio.shield(self.remote.unlock(key, token))

    async def _renew(self, key: str, token: str) -> None:
        """Keep the lock while the loader runs (a third of its life at a time)."""
        while True:
            await asyncio.sleep(self.lock_ttl / 3)
            try:
                if not await self.remote.renew(key, token, self.lock_ttl):
                    _log.warning("the lock of %r was lost while its loader ran", key)
                    return
            except CacheUnavailableError:
                continue

    async def _wait_for(self, key: str) -> Any:
        """Wait until the lock's owner writes ``key`` (its message wakes us;
        otherwise we look every ``wait_poll`` seconds): the value, or the
        missing marker once the lock is free without one."""
        arrived = self._arrivals.get(key)
        if arrived is None:
            arrived = self._arrivals[key] = asyncio.Event()
        try:
            while True:
                try:
                    async with asyncio.timeout(self.wait_poll):
                        await arrived.wait()
                except TimeoutError:
                    pass
                arrived.clear()
                before = self._version
                value, held = await self.remote.peek_lock(key)
                if value is not _MISSING:
                    if self._version == before:
                        self._put(key, value)
                    return value
                if not held:
                    return _MISSING
        finally:
            if self._arrivals.get(key) is arrived:
                del self._arrivals[key]

    # --- the subscription ---------------------------------------------------------------------

    def _listen(self) -> None:
        """Start listening for other processes' changes, if not yet."""
        if self._listener is None or self._listener.done():
            self._listener = asyncio.ensure_future(self._listening())

    async def subscribed(self) -> None:
        """Wait until invalidations are being received (bound it with
        ``asyncio.timeout``: while Redis is down, that is forever)."""
        self._listen()
        await self._subscribed.wait()

    async def _listening(self) -> None:
        backoff = 0.05
        while True:
            pubsub: PubSub | None = None
            try:
                pubsub = self.remote.client.pubsub()
                async with asyncio.timeout(self.remote.timeout):
                    await pubsub.subscribe(self.remote.channel)
                    await self._confirmed(pubsub)
                # Messages may have been missed while we were not subscribed.
                self._clear_local()
                self._subscribed.set()
                backoff = 0.05
                await self._receive(pubsub)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, TimeoutError) as error:
                if self._subscribed.is_set():
                    _log.warning("lost the invalidation channel (%r); reconnecting", error)
                self._subscribed.clear()
            finally:
                if pubsub is not None:
                    await _close_quietly(pubsub)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    async def _confirmed(self, pubsub: PubSub) -> None:
        while True:
            message = await pubsub.get_message(timeout=self.remote.timeout)
            _honour_cancel()
            if message is not None and message.get("type") == "subscribe":
                return

    async def _receive(self, pubsub: PubSub) -> None:
        last_ping = time.monotonic()
        interval = max(self.remote.timeout, 1.0)
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=interval)
            _honour_cancel()
            if message is not None and message.get("type") == "message":  # not a pong
                self._apply(message.get("data"))
            if time.monotonic() - last_ping >= interval:
                # A server that went away is noticed within this interval.
                async with asyncio.timeout(self.remote.timeout):
                    await pubsub.ping()
                last_ping = time.monotonic()

    def _apply(self, data: object) -> None:
        try:
            message = json.loads(data)  # type: ignore[arg-type]
            origin, keys = message["o"], message["k"]
        except (TypeError, ValueError, KeyError):
            _log.warning("ignored a malformed invalidation message: %r", data)
            return
        if origin == self._origin or not isinstance(keys, list):
            return
        self.received += 1
        self._version += 1
        for key in keys:
            if isinstance(key, str):
                self.local.drop(key)
                arrived = self._arrivals.get(key)
                if arrived is not None:
                    arrived.set()

    async def aclose(self) -> None:
        """Stop listening (a later call starts again)."""
        listener, self._listener = self._listener, None
        self._subscribed.clear()
        while listener is not None and not listener.done():
            listener.cancel()  # again, if the client swallowed the first one
            await asyncio.wait([listener], timeout=0.1)

    def __getitem__(self, key: str) -> V:
        """The local copy of ``key`` (KeyError if there is none): what
        ``CachedModule.get_or_load`` reads first, without waiting."""
        value: Any = self.peek(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value  # type: ignore[no-any-return]

    def __len__(self) -> int:
        return len(self.local)

    def __repr__(self) -> str:
        return f"TieredCache({self.local!r}, {self.remote!r})"


def _honour_cancel() -> None:
    """Raise CancelledError if this task was asked to stop and the client
    swallowed it (redis-py's ``asyncio.wait_for`` can, on Python 3.11)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def _close_quietly(pubsub: PubSub) -> None:
    try:
        async with asyncio.timeout(1.0):
            await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
    except (RedisError, OSError, TimeoutError):
        pass


class RedisModule(ResourceModule):
    """Owns a redis-py client (and its connection pool) for other modules:
    ``initialize()`` connects and PINGs (CacheUnavailableError if the server
    does not answer), ``health_check()`` is a PING within ``timeout``,
    ``cleanup()`` closes the pool."""

    def __init__(
        self, config: Any = None, *, url: str = DEFAULT_URL, timeout: float = 1.0, **kwargs: Any
    ) -> None:
        super().__init__(config, **kwargs)
        if not isinstance(url, str):
            raise TypeError(f"url must be a str, not {type(url).__name__}")
        self.url = url
        self.timeout = seconds(timeout, "timeout")
        self._client: aioredis.Redis | None = None

    @property
    def client(self) -> aioredis.Redis:
        """The client; LifecycleError before the module has started."""
        if self._client is None:
            raise LifecycleError(f"{self.name} has not started: it has no Redis client yet")
        return self._client

    async def initialize(self) -> None:
        client = make_client(self.url, self.timeout)
        try:
            async with asyncio.timeout(self.timeout):
                await client.ping()
        except BaseException as error:
            await client.aclose()
            if isinstance(error, RedisError | OSError | TimeoutError):
                raise CacheUnavailableError(
                    f"{self.name}: redis did not answer PING within {self.timeout} s: {error!r}"
                ) from error
            raise
        self._client = client
        self.add_resource(client, close=self._close)
        await super().initialize()

    async def _close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def health_check(self) -> bool:
        """True if the server answers PING within the timeout."""
        client = self._client
        if client is None:
            return False
        try:
            async with asyncio.timeout(self.timeout):
                return bool(await client.ping())
        except (RedisError, OSError, TimeoutError):
            return False
