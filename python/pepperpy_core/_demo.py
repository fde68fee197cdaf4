"""The demo application of ``python -m pepperpy_core demo``, built only from the
library: a database that fails to connect twice and succeeds on retry, a
cache in front of it, an API module that depends on both, a state module
counting requests, and metrics over all of it."""

from __future__ import annotations

import asyncio
import itertools
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TextIO

import pepperpy_core
from pepperpy_core import Application
from pepperpy_core.module import (
    CachedModule,
    DependentModule,
    MetricsModule,
    ModuleConfig,
    ModuleState,
    RetryModule,
    StateModule,
)


class Database(RetryModule):
    """Pretends to be a database: refuses the first two connections."""

    def __init__(self, refusals: int = 2) -> None:
        super().__init__(ModuleConfig(name="database", version="2.1.0"))
        self.max_retries = 5
        self.delay = 0.02
        self.jitter = 0.0
        self.refusals = refusals
        self.connections = 0
        self.queries = 0

    async def connect(self) -> None:
        self.connections += 1
        await asyncio.sleep(0.005)
        if self.connections <= self.refusals:
            raise ConnectionError(f"connection refused (attempt {self.connections})")

    async def initialize(self) -> None:
        await self.retry(self.connect)

    async def query(self, key: str) -> str:
        self.queries += 1
        await asyncio.sleep(0.002)  # a round trip
        return f"row:{key}"

    async def cleanup(self) -> None:
        await asyncio.sleep(0.002)


class Cache(CachedModule):
    """The hot rows, in a native FIFOCache."""

    def __init__(self, size: int) -> None:
        super().__init__(ModuleConfig(name="cache", version="1.4.0"), maxsize=size)


@dataclass(frozen=True)
class Traffic:
    """What the API has served."""

    served: int = 0
    failed: int = 0


class Stats(StateModule[Traffic]):
    """Keeps the traffic counters as typed, versioned state."""

    def __init__(self) -> None:
        super().__init__(ModuleConfig(name="stats"), initial=Traffic())


class Api(DependentModule, MetricsModule):
    """Serves reads through the cache, from the database on a miss."""

    def __init__(self, db: Database, cache: Cache, stats: Stats) -> None:
        super().__init__(
            ModuleConfig(name="api", version="0.3.0", dependencies=["database>=2,<3", "cache>=1.0"])
        )
        self.db = db
        self.cache = cache
        self.stats = stats

    async def get(self, key: str) -> str:
        with self.timer("request_seconds"):
            try:
                value = await self.cache.get_or_load(key, lambda: self.db.query(key))
            except Exception as error:
                self.record_failure(type(error).__name__)
                await self.stats.update_state(lambda t: replace(t, failed=t.failed + 1))
                raise
            self.record_success()
            await self.stats.update_state(lambda t: replace(t, served=t.served + 1))
            return str(value)


def _table(out: TextIO, title: str, header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=True)]
    line = "  ".join("-" * w for w in widths)
    print(f"\n{title}", file=out)
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)), file=out)
    print(line, file=out)
    for row in rows:
        cells = (
            c.rjust(w) if i else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        print("  ".join(cells), file=out)


async def run_demo(
    out: TextIO,
    *,
    requests: int = 2000,
    keys: int = 200,
    seed: int = 1,
    serve: int | None = None,
) -> int:
    """Start the demo application, serve ``requests`` reads over ``keys`` keys,
    print what happened, and stop; returns the exit status. With ``serve``
    (a port, 0 for any), keep running with the HTTP endpoints on loopback
    until SIGINT or SIGTERM. A signal stops the application cleanly; the
    status is then 128 plus its number (130 for Ctrl-C)."""
    db = Database()
    cache = Cache(size=max(keys // 2, 1))
    stats = Stats()
    api = Api(db, cache, stats)
    app = Application(
        api,
        start_timeout=10,
        stop_timeout=10,
        health_timeout=1,
        http=None if serve is None else f"127.0.0.1:{serve}",
    )
    began: dict[str, float] = {}  # module -> when its initialize() began
    stopping: list[str] = []  # modules, in the order their cleanup began
    t0 = time.perf_counter()

    def note(module: object, old: object, new: object) -> None:
        name = getattr(module, "name", "?")
        if new is ModuleState.INITIALIZING:
            began[name] = time.perf_counter() - t0
        elif new is ModuleState.CLEANING_UP:
            stopping.append(name)

    app.add_listener(note)
    print(f"pepperpy-core {pepperpy_core.__version__}, backend: {pepperpy_core.BACKEND}", file=out)
    print(f"starting {len(app.plan())} modules: {' -> '.join(app.plan())}", file=out)

    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    interrupted: signal.Signals | None = None

    def on_signal(sig: signal.Signals) -> None:
        nonlocal interrupted
        if interrupted is not None:  # the stop under way is bounded by stop_timeout
            print(f"\n{sig.name} again: already stopping", file=out, flush=True)
            return
        interrupted = sig
        if main is not None:
            main.cancel()

    with _signal(loop, signal.SIGINT, on_signal), _signal(loop, signal.SIGTERM, on_signal):
        try:
            t0 = time.perf_counter()
            await app.start()
            _startup_table(out, app, began)
            print(
                f"\ndatabase connected after {db.connections} attempts "
                f"({db.stats.failures} refused, retried with backoff)",
                file=out,
            )
            rng = random.Random(seed)
            elapsed = await _traffic(api, rng, requests, keys)
            await _report(out, app, api, cache, db, stats, requests, elapsed)
            if serve is not None:
                await _serve(out, app, api, rng, keys)
        except asyncio.CancelledError:
            if interrupted is None:
                raise
            print(f"\n{interrupted.name}: stopping cleanly", file=out)
        finally:
            await app.stop()
    _table(
        out,
        "Shutdown: modules in the order they began to stop (dependents first)",
        ("module", "took"),
        [(name, f"{app.stop_durations[name] * 1e3:.1f} ms") for name in stopping],
    )
    print("\nall modules stopped cleanly", file=out)
    return 0 if interrupted is None else 128 + interrupted


def _startup_table(out: TextIO, app: Application, began: dict[str, float]) -> None:
    _table(
        out,
        "Start-up: modules in the order they began; independent ones begin together",
        ("module", "version", "began at", "took"),
        [
            (
                name,
                _version(app, name),
                f"{at * 1e3:.1f} ms",
                f"{app.start_durations[name] * 1e3:.1f} ms",
            )
            for name, at in sorted(began.items(), key=lambda item: item[1])
        ],
    )


async def _traffic(api: Api, rng: random.Random, requests: int, keys: int) -> float:
    """Serve ``requests`` reads of ``keys`` keys (a few hot ones), 100 at a
    time, each batch made as it is served (memory stays flat); the seconds."""
    population = range(keys)
    ranks = list(itertools.accumulate(1 / (rank + 1) for rank in population))
    started = time.perf_counter()
    for done in range(0, requests, 100):
        batch = rng.choices(population, cum_weights=ranks, k=min(100, requests - done))
        await asyncio.gather(*(api.get(f"user:{k}") for k in batch))
    return time.perf_counter() - started


async def _serve(out: TextIO, app: Application, api: Api, rng: random.Random, keys: int) -> None:
    """Keep the application up for curl, with a trickle of requests so that
    the numbers move, until cancelled (by the signal handler)."""
    base = f"http://127.0.0.1:{app.http_port}"
    print(f"\nserving on {base} (loopback only); try:", file=out)
    for path in ("/metrics", "/livez", "/startupz", "/readyz", "/health"):
        print(f"  curl {base}{path}", file=out)
    print("Ctrl-C stops the application", file=out, flush=True)
    while True:
        await api.get(f"user:{rng.randrange(keys)}")
        await asyncio.sleep(0.2)


def _version(app: Application, name: str) -> str:
    for module in app.modules:
        if module.name == name:
            return str(module.version)
    return "?"


async def _report(
    out: TextIO,
    app: Application,
    api: Api,
    cache: Cache,
    db: Database,
    stats: Stats,
    requests: int,
    elapsed: float,
) -> None:
    traffic = await stats.get_state()
    loads = cache.cache_stats()
    latency = api.metrics.histogram("request_seconds", {"module": "api"})
    print(
        f"\nserved {traffic.served} of {requests} requests in {elapsed * 1e3:.0f} ms "
        f"({requests / elapsed:,.0f} req/s); state version {stats.state_version}",
        file=out,
    )
    health = await app.health()
    _table(
        out,
        f"Health: {health.status}",
        ("module", "status", "detail", "latency"),
        [
            (m.name, m.status, m.detail, f"{m.latency * 1e6:.0f} us")
            for m in health.modules.values()
        ],
    )

    def ms(q: float) -> str:
        value = latency.quantile(q)
        return "-" if value is None else f"{value * 1e3:.3f} ms"

    hit_rate = loads.hits / max(loads.hits + loads.misses, 1)
    _table(
        out,
        "Metrics",
        ("metric", "value"),
        [
            ("requests ok", str(api.successes())),
            ("cache hits / misses", f"{loads.hits} / {loads.misses} ({hit_rate:.0%} hits)"),
            ("loads (one per missing key in flight)", str(loads.loads)),
            ("database queries", str(db.queries)),
            ("cache entries", f"{len(cache.cache)} of {cache.cache.maxsize}"),
            ("latency p50 / p90 / p99", f"{ms(0.5)} / {ms(0.9)} / {ms(0.99)}"),
            ("database connect attempts", str(db.stats.attempts)),
        ],
    )


class _signal:
    """Route ``sig`` to ``handler`` inside the block (where the platform allows)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sig: signal.Signals,
        handler: Callable[[signal.Signals], None],
    ) -> None:
        self.loop = loop
        self.sig = sig
        self.handler = handler
        self.installed = False

    def __enter__(self) -> None:
        try:
            self.loop.add_signal_handler(self.sig, self.handler, self.sig)
            self.installed = True
        except (NotImplementedError, RuntimeError):  # not the main thread, or Windows
            self.installed = False

    def __exit__(self, *exc: object) -> None:
        if self.installed:
            self.loop.remove_signal_handler(self.sig)
