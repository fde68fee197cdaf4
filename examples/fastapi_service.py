"""A FastAPI service on pepperpy-core, to copy: replace the two modules with
your own (a database pool, a client of another service) and keep the rest.

    python examples/fastapi_service.py --port 8000

- The Application starts its modules, in dependency order, when uvicorn
  starts, and stops them when it stops (FastAPI's lifespan); a module that
  fails to start makes uvicorn exit with the error.
- Routes reach modules typed, without globals: ``Depends(core.provide(X))``.
- Kubernetes probes /ops/livez, /ops/readyz and /ops/startupz; Prometheus
  scrapes /ops/metrics, which carries the cache's and the retries' counters
  and every request's duration by route template, with no wiring.
- On SIGTERM /ops/readyz answers 503 at once and everything serves on for
  ``--drain`` seconds (5 by default in a Kubernetes pod, else 0), then
  uvicorn finishes the requests in flight and the modules stop.
"""

# No ``from __future__ import annotations`` here: FastAPI reads a route's
# annotations when it is declared, and these name ``core``, a local of build().
import argparse
from typing import Annotated

import uvicorn
from fastapi import Depends, FastAPI, HTTPException

from pepperpy_core import Application
from pepperpy_core.asgi import RequestMetrics, make_asgi_app
from pepperpy_core.module import CachedModule, ModuleConfig, RetryModule

NAMES = {"tea": "Green tea", "cake": "Lemon cake"}


class Inventory(RetryModule):
    """A remote stock service, asked with retries (here it fails every other call)."""

    def __init__(self) -> None:
        super().__init__(ModuleConfig(name="inventory"), max_retries=3, delay=0.05)
        self.calls = 0

    async def initialize(self) -> None:
        self.stock = {"tea": 12, "cake": 3}  # a client would connect here

    async def count(self, sku: str) -> int:
        async def ask() -> int:
            self.calls += 1
            if self.calls % 2:
                raise ConnectionError("inventory busy")
            return self.stock.get(sku, 0)

        return await self.retry(ask)

    async def health_check(self) -> bool:
        return True


class Catalog(CachedModule):
    """Product names, loaded once per product and kept in a bounded cache."""

    def __init__(self) -> None:
        super().__init__(ModuleConfig(name="catalog"), maxsize=10_000)

    async def lookup(self, sku: str) -> str | None:
        async def load() -> str | None:
            return NAMES.get(sku)  # a query would run here

        return await self.get_or_load(sku, load)


def build(drain: float | None = None) -> FastAPI:
    """The service: its Application, routes, probes and metrics."""
    core = Application(Catalog(), Inventory(), drain=drain)
    api = FastAPI(lifespan=core.lifespan)
    api.add_middleware(RequestMetrics, registry=core.metrics)
    api.mount("/ops", make_asgi_app(core))

    @api.get("/products/{sku}")
    async def product(
        sku: str,
        catalog: Annotated[Catalog, Depends(core.provide(Catalog))],
        inventory: Annotated[Inventory, Depends(core.provide(Inventory))],
    ) -> dict[str, str | int]:
        name = await catalog.lookup(sku)
        if name is None:
            raise HTTPException(status_code=404, detail=f"no product {sku!r}")
        return {"sku": sku, "name": name, "stock": await inventory.count(sku)}

    return api


def main() -> None:
    parser = argparse.ArgumentParser(prog="fastapi_service.py", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--drain", type=float, default=None, help="seconds; see the doc")
    args = parser.parse_args()
    try:
        api = build(args.drain)
    except ValueError as error:  # a drain below 0, say
        parser.error(str(error))
    uvicorn.run(api, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
