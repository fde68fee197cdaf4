"""RedisModule: a module that owns a Redis client (and its connection pool)
for other modules, on a single server or a Redis Cluster (the ``redis``
extra)."""

from __future__ import annotations

import asyncio
from typing import Any

from pepperpy_core._redis_client import DEFAULT_URL, Client, _errors, make_client
from pepperpy_core._seconds import seconds
from pepperpy_core.errors import CacheUnavailableError, LifecycleError
from pepperpy_core.module.resource import ResourceModule


class RedisModule(ResourceModule):
    """Owns a redis-py client for other modules: ``initialize()`` connects
    and PINGs (CacheUnavailableError if the server does not answer),
    ``health_check()`` is a PING within ``timeout``, ``cleanup()`` closes the
    pool. ``cluster=True`` makes a Redis Cluster client (``url`` names any
    node)."""

    def __init__(
        self,
        config: Any = None,
        *,
        url: str = DEFAULT_URL,
        timeout: float = 1.0,
        cluster: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(config, **kwargs)
        if not isinstance(url, str):
            raise TypeError(f"url must be a str, not {type(url).__name__}")
        if not isinstance(cluster, bool):
            raise TypeError(f"cluster must be a bool, not {type(cluster).__name__}")
        self.url = url
        self.timeout = seconds(timeout, "timeout")
        self.cluster = cluster
        self._client: Client | None = None

    @property
    def client(self) -> Client:
        """The client; LifecycleError before the module has started."""
        if self._client is None:
            raise LifecycleError(f"{self.name} has not started: it has no Redis client yet")
        return self._client

    async def initialize(self) -> None:
        client = make_client(self.url, self.timeout, cluster=self.cluster)
        try:
            async with asyncio.timeout(self.timeout * (5 if self.cluster else 1)):
                await client.ping()
        except BaseException as error:
            await client.aclose()
            if isinstance(
                error, _errors.RedisError | _errors.RedisClusterException | OSError | TimeoutError
            ):
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
        except (_errors.RedisError, _errors.RedisClusterException, OSError, TimeoutError):
            return False
