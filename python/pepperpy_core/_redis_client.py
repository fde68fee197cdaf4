"""The redis-py client the Redis store and RedisModule share (the ``redis``
extra): how one is made, and the error that names the extra when redis-py
is missing."""

from __future__ import annotations

from typing import Any, Final

try:
    import redis.asyncio as aioredis
    from redis import exceptions as _errors
    from redis.asyncio.cluster import RedisCluster
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.crc import key_slot
except ImportError as exc:  # tests/test_redis.py hides redis-py to check this
    raise ImportError(
        "the Redis cache tier needs redis-py: install the extra with "
        "`pip install 'pepperpy-core[redis]'`",
        name="redis",
    ) from exc

__all__ = [
    "DEFAULT_URL",
    "Client",
    "RedisCluster",
    "_errors",
    "aioredis",
    "key_slot",
    "make_client",
]

#: A single server's client or a Redis Cluster's.
Client = aioredis.Redis | RedisCluster

#: Where a client connects when no URL is given.
DEFAULT_URL: Final = "redis://127.0.0.1:6379/0"


def make_client(url: str, timeout: float, *, cluster: bool = False) -> Client:
    """A client for ``url`` (a Redis Cluster client with ``cluster``) whose
    sockets time out after ``timeout`` seconds and which retries a command
    once on a fresh connection (the first use of a pooled connection after
    the server restarted fails)."""
    if not isinstance(url, str):
        raise TypeError(f"url must be a str, not {type(url).__name__}")
    # No socket timeout of redis-py's own (redis-py 8 reads with 5 s by
    # default): every call here is bounded by the cache's timeout already.
    options: dict[str, Any] = {"socket_connect_timeout": timeout, "socket_timeout": None}
    if cluster:
        return RedisCluster.from_url(url, **options)
    return aioredis.Redis.from_url(url, retry=Retry(NoBackoff(), 1), **options)
