"""The drain before a stop (``Application(drain=...)``): /readyz answers 503 at
once, everything else serves on, the modules stop after ``drain`` seconds or
when a second request ends it. Timed on a virtual clock; served by the
aiohttp side server and by uvicorn, asked by a real client over loopback."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from pepperpy_core import Application
from pepperpy_core.asgi import make_asgi_app
from pepperpy_core.module import BaseModule, ModuleConfig, ModuleState
from pepperpy_core.runtime import drain as drain_module
from pepperpy_core.runtime.endpoints import PATHS
from tests.asgiutil import answers, call, fetch
from tests.asyncutil import run, until, until_true
from tests.servers import free_port
from tests.virtualtime import run_virtual

pytestmark = pytest.mark.backend  # /metrics answers from the backend's registries

DRAINING = b"not ready: draining before the stop\n"


class Service(BaseModule):
    """A module that notes, in loop time, when its cleanup began."""

    def __init__(self, name: str = "db") -> None:
        super().__init__(ModuleConfig(name=name))
        self.cleaned_at: float | None = None

    async def cleanup(self) -> None:
        self.cleaned_at = asyncio.get_running_loop().time()
        await super().cleanup()


async def started(app: Application) -> None:
    await until(lambda: app.phase == "running", within=30)


# --- the setting ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        ("5", TypeError, "drain must be a number of seconds or None, not str"),
        (True, TypeError, "drain must be a number of seconds or None, not bool"),
        (-1, ValueError, "drain must be a finite number of seconds >= 0, got -1"),
        (float("nan"), ValueError, "finite number of seconds >= 0, got nan"),
        (float("inf"), ValueError, "finite number of seconds >= 0, got inf"),
    ],
)
def test_a_bad_drain_is_refused(value: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        Application(Service(), drain=value)  # type: ignore[arg-type]


def test_the_default_drains_inside_kubernetes_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert Application().drain == 0.0
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    assert Application().drain == drain_module.IN_KUBERNETES == 5.0
    assert Application(drain=0).drain == 0.0  # said: kept
    assert Application(drain=12).drain == 12.0


# --- run(): timed on a virtual clock -------------------------------------------------------


def test_a_requested_stop_drains_for_its_seconds_then_stops() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        db = Service()
        app = Application(db, drain=30)
        probes = make_asgi_app(app)
        runner = asyncio.ensure_future(app.run(signals=()))
        await started(app)
        assert (await call(probes, "/readyz")).status == 200
        asked = loop.time()
        app.request_stop()
        assert app.draining  # at once, before any turn of the loop
        assert (await call(probes, "/readyz")).body == DRAINING
        await asyncio.sleep(29.99)  # virtual time: just short of the drain
        # Everything but readiness serves on, the modules up.
        assert (await call(probes, "/readyz")).status == 503
        assert (await call(probes, "/livez")).status == 200
        assert (await call(probes, "/startupz")).status == 200
        assert (await call(probes, "/health")).status == 200
        assert (await call(probes, "/metrics")).status == 200
        assert db.state is ModuleState.READY
        assert not runner.done()
        assert await runner is None
        assert db.cleaned_at == pytest.approx(asked + 30)
        assert not app.draining
        assert app.phase == "idle"

    run_virtual(main())


@pytest.mark.parametrize("how", ["request_stop", "stop"])
def test_a_second_request_or_a_stop_ends_the_drain_at_once(how: str) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        db = Service()
        app = Application(db, drain=3600)
        runner = asyncio.ensure_future(app.run(signals=()))
        await started(app)
        app.request_stop()
        await asyncio.sleep(5)  # virtual time: well inside the drain
        assert app.draining
        ended = loop.time()
        if how == "request_stop":
            app.request_stop()
        else:
            await app.stop()
        await runner
        assert db.cleaned_at == pytest.approx(ended)

    run_virtual(main())


@pytest.mark.parametrize(
    ("sig", "drains"), [(signal.SIGTERM, True), (signal.SIGUSR1, True), (signal.SIGINT, False)]
)
def test_every_stop_signal_but_sigint_drains(sig: signal.Signals, drains: bool) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        db = Service()
        app = Application(db, drain=30)
        runner = asyncio.ensure_future(app.run(signals=(sig,)))
        await started(app)
        sent = loop.time()
        os.kill(os.getpid(), sig)
        assert await runner is sig
        assert db.cleaned_at == pytest.approx(sent + (30 if drains else 0))

    run_virtual(main())


def test_a_signal_during_the_drain_ends_it_and_a_third_forces_the_stop() -> None:
    class Stuck(Service):
        async def cleanup(self) -> None:
            await super().cleanup()
            await asyncio.sleep(3600)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        db = Stuck()
        app = Application(db, drain=30)
        runner = asyncio.ensure_future(app.run(signals=(signal.SIGTERM,)))
        await started(app)
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.sleep(1)  # virtual time: inside the drain
        assert app.draining
        second = loop.time()
        os.kill(os.getpid(), signal.SIGTERM)  # ends the drain: the stop begins
        await until(lambda: db.cleaned_at is not None)
        assert db.cleaned_at == pytest.approx(second)
        os.kill(os.getpid(), signal.SIGTERM)  # forces the stuck cleanup
        with pytest.raises(Exception, match="failed to stop"):
            await runner

    run_virtual(main())


def test_without_a_drain_a_sigterm_stops_at_once() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        db = Service()
        app = Application(db, drain=0)
        runner = asyncio.ensure_future(app.run(signals=(signal.SIGTERM,)))
        await started(app)
        sent = loop.time()
        os.kill(os.getpid(), signal.SIGTERM)
        await runner
        assert db.cleaned_at == pytest.approx(sent)

    run_virtual(main())


# --- the ASGI lifespan ----------------------------------------------------------------------


async def drive_lifespan(app: Any, inbox: asyncio.Queue[dict[str, Any]]) -> list[str]:
    """Run ``app``'s ASGI lifespan on the messages put in ``inbox``; what it sent."""
    sent: list[str] = []

    async def send(message: Any) -> None:
        sent.append(message["type"])

    await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, send)
    return sent


def test_a_lifespan_shutdown_with_no_signal_before_it_drains() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        db = Service()
        core = Application(db, drain=30)
        probes = make_asgi_app(core)
        inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        inbox.put_nowait({"type": "lifespan.startup"})
        lifespan = asyncio.ensure_future(drive_lifespan(probes, inbox))
        await started(core)
        assert (await call(probes, "/readyz")).status == 200
        shut = loop.time()
        inbox.put_nowait({"type": "lifespan.shutdown"})
        await until(lambda: core.draining)
        assert (await call(probes, "/readyz")).body == DRAINING
        assert (await call(probes, "/livez")).status == 200
        assert await lifespan == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
        assert db.cleaned_at == pytest.approx(shut + 30)

    run_virtual(main())


@pytest.fixture
def server_handlers() -> Iterator[list[int]]:
    """Python handlers for SIGTERM and SIGINT, as uvicorn installs them: the
    signals they were called with; the test's own handlers restored after."""
    called: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        called.append(signum)

    before = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield called
    finally:
        for sig, old in before.items():
            signal.signal(sig, old)


def test_the_lifespan_holds_a_sigterm_back_from_the_server_for_the_drain(
    server_handlers: list[int],
) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        db = Service()
        core = Application(db, drain=30)
        server_term = signal.getsignal(signal.SIGTERM)
        async with core.lifespan():
            assert signal.getsignal(signal.SIGTERM) is not server_term  # chained in front
            sent = loop.time()
            os.kill(os.getpid(), signal.SIGTERM)
            await until(lambda: core.draining)
            await asyncio.sleep(29.99)  # virtual time: just short of the drain
            assert server_handlers == []  # the server has not heard of it yet
            assert db.state is ModuleState.READY
            await until(lambda: server_handlers == [signal.SIGTERM])
            assert loop.time() == pytest.approx(sent + 30, abs=0.01)
            os.kill(os.getpid(), signal.SIGTERM)  # after the drain: straight on
            await until(lambda: len(server_handlers) == 2)
            assert db.state is ModuleState.READY  # the server stops the app, by the lifespan
        assert db.cleaned_at == pytest.approx(sent + 30, abs=1)  # no second drain
        assert signal.getsignal(signal.SIGTERM) is server_term  # restored

    run_virtual(main())


def test_the_lifespan_holds_a_sigterm_back_from_an_event_loops_handler_too() -> None:
    """aiohttp's run_app and hypercorn have the loop dispatch SIGTERM
    (``loop.add_signal_handler``): held back the same way, put back after."""
    before = signal.getsignal(signal.SIGTERM)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        heard: list[str] = []
        loop.add_signal_handler(signal.SIGTERM, heard.append, "server")
        try:
            db = Service()
            core = Application(db, drain=30)
            async with core.lifespan():
                sent = loop.time()
                os.kill(os.getpid(), signal.SIGTERM)
                await until(lambda: core.draining)
                await asyncio.sleep(29.99)  # virtual time: just short of the drain
                assert heard == []
                await until(lambda: heard == ["server"])
                assert loop.time() == pytest.approx(sent + 30, abs=0.01)
            os.kill(os.getpid(), signal.SIGTERM)  # the server's own handler again
            await until(lambda: heard == ["server", "server"])
        finally:
            loop.remove_signal_handler(signal.SIGTERM)

    try:
        run_virtual(main())
    finally:
        signal.signal(signal.SIGTERM, before)


@pytest.mark.parametrize("second", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_a_second_sigterm_or_a_sigint_ends_the_held_drain(
    server_handlers: list[int], second: signal.Signals
) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        db = Service()
        core = Application(db, drain=3600)
        async with core.lifespan():
            os.kill(os.getpid(), signal.SIGTERM)
            await until(lambda: core.draining)
            await asyncio.sleep(5)  # virtual time: well inside the drain
            ended = loop.time()
            os.kill(os.getpid(), second)
            await until(lambda: signal.SIGTERM in server_handlers)
            assert loop.time() == pytest.approx(ended, abs=0.1)
        # The SIGTERM handed on once, and a SIGINT at once, as it came.
        assert sorted(server_handlers) == sorted({signal.SIGTERM, second})
        assert db.cleaned_at == pytest.approx(ended, abs=0.1)  # no drain left

    run_virtual(main())


def test_after_a_sigint_the_lifespan_shutdown_does_not_drain(server_handlers: list[int]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        db = Service()
        core = Application(db, drain=30)
        async with core.lifespan():
            os.kill(os.getpid(), signal.SIGINT)
            await until(lambda: server_handlers == [signal.SIGINT])  # handed on at once
            assert not core.draining
            left = loop.time()
        assert db.cleaned_at == pytest.approx(left)

    run_virtual(main())


# --- real servers -------------------------------------------------------------------------------


def test_the_aiohttp_server_serves_through_the_drain() -> None:
    async def main() -> None:
        db = Service()
        app = Application(db, http="127.0.0.1:0", drain=3600)
        runner = asyncio.ensure_future(app.run(signals=(signal.SIGTERM,)))
        await started(app)
        base = f"http://127.0.0.1:{app.http_port}"
        assert (await fetch(base + "/readyz"))[0] == 200
        os.kill(os.getpid(), signal.SIGTERM)
        await until(lambda: app.draining)
        status, _, body = await fetch(base + "/readyz")
        assert (status, body) == (503, DRAINING)
        for path in ("/livez", "/startupz", "/health", "/metrics"):
            assert (await fetch(base + path))[0] == 200, path
        assert db.state is ModuleState.READY
        assert not runner.done()
        os.kill(os.getpid(), signal.SIGTERM)  # ends the drain
        assert await runner is signal.SIGTERM
        assert db.state is ModuleState.CLOSED

    run(main(), timeout=60)


UVICORN_APP = """
import asyncio

from fastapi import FastAPI

from pepperpy_core import Application
from pepperpy_core.asgi import make_asgi_app
from pepperpy_core.module import BaseModule, ModuleConfig


class Database(BaseModule):
    async def initialize(self) -> None:
        self.waiting = 0
        self.release = asyncio.Event()

    async def cleanup(self) -> None:
        print("db closed", flush=True)


core = Application(Database(ModuleConfig(name="db")), drain=3600)
api = FastAPI(lifespan=core.lifespan)
api.mount("/ops", make_asgi_app(core))


@api.get("/slow")
async def slow() -> str:
    db = core.module(Database)
    db.waiting += 1
    await db.release.wait()
    return "done"


@api.get("/waiting")
async def waiting() -> int:
    return core.module(Database).waiting


@api.post("/release")
async def release() -> str:
    core.module(Database).release.set()
    return "released"


@api.get("/items")
async def items() -> str:
    return "tea"
"""


def uvicorn(tmp_path: Path) -> tuple[subprocess.Popen[str], str]:
    """UVICORN_APP served by ``python -m uvicorn`` on a free loopback port."""
    (tmp_path / "drained.py").write_text(textwrap.dedent(UVICORN_APP))
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "drained:api", "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return proc, f"http://127.0.0.1:{port}"


def test_uvicorn_serves_through_the_drain_with_a_request_in_flight(tmp_path: Path) -> None:
    proc, base = uvicorn(tmp_path)

    async def main() -> None:
        await until_true(lambda: answers(base + "/ops/readyz", 200), within=60)
        slow = asyncio.ensure_future(fetch(base + "/slow"))
        await until_true(lambda: _json_is(base + "/waiting", 1), within=30)
        proc.send_signal(signal.SIGTERM)
        await until_true(lambda: answers(base + "/ops/readyz", 503), within=30)
        status, _, body = await fetch(base + "/ops/readyz")
        assert (status, body) == (503, DRAINING)
        # New connections are still taken and answered, probes and routes alike.
        assert (await fetch(base + "/items"))[::2] == (200, b'"tea"')
        assert (await fetch(base + "/ops/livez"))[0] == 200
        assert not slow.done()
        assert (await fetch(base + "/release", "POST"))[0] == 200
        assert (await slow)[::2] == (200, b'"done"')  # the request in flight ends well
        assert proc.poll() is None  # a drain of an hour: still serving
        proc.send_signal(signal.SIGTERM)  # ends it: uvicorn stops, then the modules

    try:
        run(main(), timeout=120)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "db closed" in out, err
    assert "Application shutdown complete" in err
    assert proc.returncode == -signal.SIGTERM  # uvicorn raises what it caught, once done


def test_uvicorn_stops_on_sigint_without_draining(tmp_path: Path) -> None:
    proc, base = uvicorn(tmp_path)

    async def main() -> None:
        await until_true(lambda: answers(base + "/ops/readyz", 200), within=60)

    try:
        run(main(), timeout=90)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)  # a drain would last an hour
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "db closed" in out, err
    assert "draining" not in err


async def _json_is(url: str, value: object) -> bool:
    status, _, body = await fetch(url)
    return status == 200 and body == str(value).encode()


# --- the README's probe configuration ---------------------------------------------------------


def test_the_readmes_probe_configuration_fits_the_default_drain() -> None:
    """The pod template in the README probes endpoints that exist, notices
    unreadiness within the drain, and leaves the grace period room for the
    drain and uvicorn's wait for requests in flight."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    (pod,) = re.findall(r"```yaml\n(.*?)```", readme, re.DOTALL)
    probes = dict(re.findall(r"(\w+Probe):\s*\n\s*httpGet: \{path: /ops(/\w+)", pod))
    assert probes == {
        "startupProbe": "/startupz",
        "readinessProbe": "/readyz",
        "livenessProbe": "/livez",
    }
    assert set(probes.values()) <= set(PATHS)

    def number(pattern: str, after: str = "") -> int:
        found = re.search(re.escape(after) + r".*?" + pattern + r"\D*(\d+)", pod, re.DOTALL)
        assert found is not None, pattern
        return int(found[1])

    ready_within = number("periodSeconds", "readinessProbe") * number(
        "failureThreshold", "readinessProbe"
    )
    assert ready_within <= drain_module.IN_KUBERNETES
    grace = number("terminationGracePeriodSeconds")
    assert grace > drain_module.IN_KUBERNETES + number("--timeout-graceful-shutdown")
