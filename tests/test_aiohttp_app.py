"""An Application attached to a user's own aiohttp app (``attach``): run by
its cleanup context, its probes and /metrics as the app's own routes, and
a SIGTERM drained under ``web.run_app``. (That the routes answer exactly as
the side server does is in test_asgi's transcript.)"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from pepperpy_core import Application
from pepperpy_core.aiohttp import CORE, attach
from pepperpy_core.errors import StartupError
from pepperpy_core.module import BaseModule, ModuleConfig, ModuleState
from tests.asgiutil import aiohttp_serving, answers, fetch
from tests.asyncutil import run, until_true
from tests.servers import free_port

pytestmark = pytest.mark.backend  # /metrics answers from the backend's registries


class Database(BaseModule):
    def __init__(self, fail: BaseException | None = None) -> None:
        super().__init__(ModuleConfig(name="db"))
        self.fail = fail

    async def initialize(self) -> None:
        if self.fail is not None:
            raise self.fail
        self.rows = {"1": "tea"}

    async def find(self, key: str) -> str | None:
        return self.rows.get(key)


async def item(request: web.Request) -> web.Response:
    db = request.app[CORE].module(Database)
    return web.json_response({"item": await db.find(request.match_info["key"])})


def test_the_app_runs_the_modules_and_serves_the_probes_beside_its_routes() -> None:
    async def main() -> None:
        db = Database()
        core = Application(db)
        site_app = web.Application()
        site_app.router.add_get("/items/{key}", item)
        attach(site_app, core)
        assert db.state is ModuleState.CREATED
        async with aiohttp_serving(site_app) as base:
            assert db.state is ModuleState.READY
            assert site_app[CORE] is core
            status, _, body = await fetch(base + "/items/1")
            assert (status, json.loads(body)) == (200, {"item": "tea"})
            assert (await fetch(base + "/ops/readyz"))[::2] == (200, b"ready\n")
            status, _, body = await fetch(base + "/ops/health")
            assert json.loads(body)["modules"] == {"db": {"status": "healthy"}}
            status, headers, body = await fetch(base + "/ops/metrics")
            assert headers["content-type"].startswith("text/plain; version=0.0.4")
            names = {f.name for f in text_string_to_metric_families(body.decode())}
            assert "pepperpy_module_up" in names
            status, headers, body = await fetch(base + "/ops/metrics", "POST")
            assert (status, headers["allow"]) == (405, "GET, HEAD")
            assert (await fetch(base + "/ops/elsewhere"))[::2] == (
                404,
                b"no endpoint at '/elsewhere'; there are /metrics, /livez, /startupz, "
                b"/readyz, /health\n",
            )
            assert (await fetch(base + "/nowhere"))[0] == 404  # the app's own
        assert db.state is ModuleState.CLOSED

    run(main())


@pytest.mark.parametrize(
    ("prefix", "readyz"), [("", "/readyz"), (None, None), ("/a/b", "/a/b/readyz")]
)
def test_the_prefix_places_the_routes(prefix: str | None, readyz: str | None) -> None:
    async def main() -> None:
        site_app = web.Application()
        attach(site_app, Application(Database()), prefix=prefix)
        paths = {r.resource.canonical for r in site_app.router.routes() if r.resource}
        if readyz is None:
            assert paths == set()
        else:
            assert readyz in paths
            async with aiohttp_serving(site_app) as base:
                assert (await fetch(base + readyz))[::2] == (200, b"ready\n")
                # At the root, other paths stay the app's own.
                missing = await fetch(base + ("/nope" if prefix == "" else "/a/b/nope"))
                assert missing[0] == 404
                assert (missing[2] == b"404: Not Found") == (prefix == "")

    run(main())


def test_a_failed_start_fails_the_apps_startup_and_rolls_back() -> None:
    async def main() -> None:
        db = Database(fail=ConnectionError("no route to the database"))
        site_app = web.Application()
        attach(site_app, Application(db))
        runner = web.AppRunner(site_app, handle_signals=False)
        with pytest.raises(StartupError, match="db") as info:
            await runner.setup()
        assert isinstance(info.value.__cause__, ConnectionError)
        assert db.state is not ModuleState.READY
        await runner.cleanup()

    run(main())


def test_what_cannot_be_attached_is_refused_and_the_app_is_unchanged() -> None:
    core = Application(Database())
    site_app = web.Application()

    def unchanged() -> None:
        assert CORE not in site_app
        assert len(site_app.cleanup_ctx) == 0
        assert len(site_app.router.routes()) == 0

    cases: list[tuple[object, object, object, type[Exception], str]] = [
        (object(), core, "/ops", TypeError, "takes an aiohttp.web.Application, not object"),
        (site_app, "core", "/ops", TypeError, "takes an Application to run, not str"),
        (site_app, core, 3, TypeError, "prefix must be a str or None, not int"),
        (site_app, core, "ops", ValueError, 'must start with "/" and not end with one'),
        (site_app, core, "/ops/", ValueError, 'must start with "/" and not end with one'),
    ]
    for web_app, app, prefix, error, message in cases:
        with pytest.raises(error, match=message):
            attach(web_app, app, prefix=prefix)  # type: ignore[arg-type]
        unchanged()
    attach(site_app, core)
    with pytest.raises(ValueError, match="attached to this aiohttp app already"):
        attach(site_app, Application(), prefix="/other")
    assert not any(r.resource.canonical.startswith("/other") for r in site_app.router.routes())
    site_app.freeze()
    with pytest.raises(RuntimeError, match="has not started yet"):
        attach(site_app, Application())


# --- web.run_app, a real process: the drain on SIGTERM -------------------------------------------

RUN_APP = """
import asyncio
import sys

from aiohttp import web

from pepperpy_core import Application
from pepperpy_core.aiohttp import CORE, attach
from pepperpy_core.module import BaseModule, ModuleConfig


class Database(BaseModule):
    async def initialize(self) -> None:
        self.waiting = 0
        self.release = asyncio.Event()

    async def cleanup(self) -> None:
        print("db closed", flush=True)


async def slow(request: web.Request) -> web.Response:
    db = request.app[CORE].module(Database)
    db.waiting += 1
    await db.release.wait()
    return web.Response(text="done")


async def waiting(request: web.Request) -> web.Response:
    return web.Response(text=str(request.app[CORE].module(Database).waiting))


async def release(request: web.Request) -> web.Response:
    request.app[CORE].module(Database).release.set()
    return web.Response(text="released")


site = web.Application()
site.router.add_get("/slow", slow)
site.router.add_get("/waiting", waiting)
site.router.add_post("/release", release)
attach(site, Application(Database(ModuleConfig(name="db")), drain=3600))
web.run_app(site, host="127.0.0.1", port=int(sys.argv[1]), print=None)
print("exited", flush=True)
"""


def test_run_app_serves_through_the_drain_with_a_request_in_flight(tmp_path: Path) -> None:
    (tmp_path / "shop.py").write_text(textwrap.dedent(RUN_APP))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "shop.py", str(port)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    async def main() -> None:
        await until_true(lambda: answers(base + "/ops/readyz", 200), within=60)
        slow = asyncio.ensure_future(fetch(base + "/slow"))
        await until_true(lambda: answers(base + "/waiting", 200, b"1"), within=30)
        proc.send_signal(signal.SIGTERM)
        await until_true(lambda: answers(base + "/ops/readyz", 503), within=30)
        status, _, body = await fetch(base + "/ops/readyz")
        assert (status, body) == (503, b"not ready: draining before the stop\n")
        assert (await fetch(base + "/ops/livez"))[0] == 200  # new connections still taken
        assert not slow.done()
        assert (await fetch(base + "/release", "POST"))[0] == 200
        assert (await slow)[::2] == (200, b"done")
        assert proc.poll() is None  # an hour's drain: still serving
        proc.send_signal(signal.SIGTERM)  # ends it: aiohttp stops, then the modules

    try:
        run(main(), timeout=120)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert out.split() == ["db", "closed", "exited"]


def test_the_readmes_aiohttp_app_serves_its_route_and_probes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", readme, re.DOTALL)
    (source,) = [b for b in blocks if "attach(site" in b]
    module = types.ModuleType("readme_aiohttp")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile(source, "README aiohttp", "exec"), module.__dict__)

    async def main() -> None:
        async with aiohttp_serving(module.site) as base:
            status, _, body = await fetch(base + "/items/2")
            assert (status, json.loads(body)) == (200, {"item": "cake"})
            assert (await fetch(base + "/ops/readyz"))[::2] == (200, b"ready\n")
            assert (await fetch(base + "/ops/startupz"))[0] == 200

    run(main())
