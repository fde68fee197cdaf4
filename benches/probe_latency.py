"""How long /livez takes to answer while concurrent /metrics scrapes of a
big registry run: the server in a process of its own, clients here.

    python benches/probe_latency.py [--series 100000] [--scrapers 20] [--seconds 10] [--loop]

Prints /livez latency percentiles alone, then while bursts of ``--scrapers``
concurrent scrapes run one after another (each reads whole bodies over a
fresh connection; the next burst starts when the last scrape of the previous
one ends), or, with ``--loop``, while each scraper scrapes again as soon as
it has read a body; and, for that time, how long one callback or one garbage
collection held the server's event loop, in the server thread's CPU time (on
a shared machine, wall-clock latency also counts the time other processes
took the CPU). Timing is measured, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time

_SERVER = """
import asyncio, asyncio.events, gc, sys, time
from pepperpy_core import Application

# How long the loop is held by each callback and by each garbage collection,
# in this thread's CPU time (what other processes on the machine do not skew).
held = []
run = asyncio.events.Handle._run

def timed_run(handle):
    began = time.thread_time()
    run(handle)
    held.append(time.thread_time() - began)

def timed_gc(phase, info, began=[0.0]):
    if phase == "start":
        began[0] = time.thread_time()
    else:
        held.append(time.thread_time() - began[0])

async def main(series):
    app = Application(http="127.0.0.1:0")
    for i in range(series):
        app.metrics.counter(
            "requests_total", {"route": f"/r{i % 1000}", "code": str(i // 1000)},
            description="Requests.",
        ).inc(i)
    async with app:
        print(app.http_port, flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.readline)  # measuring from here
        asyncio.events.Handle._run = timed_run
        gc.callbacks.append(timed_gc)
        await loop.run_in_executor(None, sys.stdin.readline)
        ms = sorted(t * 1000 for t in held)
        print(f"{ms[len(ms) // 2]:.2f} {ms[int(len(ms) * 0.99)]:.2f} {ms[-1]:.2f}", flush=True)

asyncio.run(main(int(sys.argv[1])))
"""


async def _get(port: int, path: str) -> int:
    """Bytes of one whole answer over a fresh connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    body = await reader.read()
    writer.close()
    await writer.wait_closed()
    if not body.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"{path}: {body[:100]!r}")
    return len(body)


async def _probe(port: int, until: float) -> list[float]:
    taken = []
    while time.monotonic() < until:
        began = time.perf_counter()
        await _get(port, "/livez")
        taken.append(time.perf_counter() - began)
        await asyncio.sleep(0.02)
    return taken


async def _scrape(port: int, until: float) -> int:
    done = 0
    while time.monotonic() < until:
        await _get(port, "/metrics")
        done += 1
    return done


async def _bursts(port: int, scrapers: int, until: float) -> int:
    done = 0
    while time.monotonic() < until:
        await asyncio.gather(*(_get(port, "/metrics") for _ in range(scrapers)))
        done += scrapers
    return done


def _report(label: str, taken: list[float]) -> None:
    ms = sorted(t * 1000 for t in taken)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    print(
        f"{label}: {len(ms)} probes, median {statistics.median(ms):.1f} ms, "
        f"p99 {p99:.1f} ms, max {ms[-1]:.1f} ms"
    )


async def _measure(
    port: int, scrapers: int, seconds: float, loop: bool, server: subprocess.Popen[str]
) -> None:
    _report("/livez alone", await _probe(port, time.monotonic() + min(seconds, 3.0)))
    await _get(port, "/metrics")  # the first render builds the label text
    assert server.stdin is not None
    server.stdin.write("\n")  # the server times its loop from here
    server.stdin.flush()
    until = time.monotonic() + seconds
    if loop:
        what = f"{scrapers} scrapers, each in a loop"
        scrapes = [asyncio.ensure_future(_scrape(port, until)) for _ in range(scrapers)]
    else:
        what = f"bursts of {scrapers} concurrent scrapes"
        scrapes = [asyncio.ensure_future(_bursts(port, scrapers, until))]
    _report(f"/livez during {what}", await _probe(port, until))
    print(f"scrapes served: {sum(await asyncio.gather(*scrapes))} in {seconds:.0f} s")
    server.stdin.write("\n")
    server.stdin.flush()
    assert server.stdout is not None
    median, p99, longest = server.stdout.readline().split()
    print(
        f"the server's loop held by one callback or collection meanwhile (its CPU time): "
        f"median {median} ms, p99 {p99} ms, max {longest} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", type=int, default=100_000)
    parser.add_argument("--scrapers", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--loop", action="store_true", help="scrapers in a loop, not bursts")
    args = parser.parse_args()
    server = subprocess.Popen(
        [sys.executable, "-c", _SERVER, str(args.series)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        print(f"{args.series} series; body {asyncio.run(_body_size(port))} bytes")
        asyncio.run(_measure(port, args.scrapers, args.seconds, args.loop, server))
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(60)


async def _body_size(port: int) -> int:
    return await _get(port, "/metrics")


if __name__ == "__main__":
    main()
