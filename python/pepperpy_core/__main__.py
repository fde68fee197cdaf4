"""The command line: ``python -m pepperpy_core`` (also ``pepperpy-core``).

- ``info``: version, active backend, where the extension was loaded from, Python.
- ``demo``: the example application (see ``_demo.py``), with its tables.
- ``bench``: a quick comparison with the peers that are installed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import sys
from collections.abc import Sequence

import pepperpy_core
from pepperpy_core import _backend
from pepperpy_core._bench import run_bench
from pepperpy_core._demo import run_demo
from pepperpy_core.runtime.http import require_aiohttp


def _info(args: argparse.Namespace) -> int:
    active = _backend.ACTIVE
    rows = [
        ("pepperpy-core", pepperpy_core.__version__),
        ("backend", pepperpy_core.BACKEND),
        ("extension", active.origin if active.name == "native" else "not loaded"),
        ("python", f"{platform.python_implementation()} {platform.python_version()}"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="  log %(name)s: %(message)s")
    if args.serve is not None:
        try:
            require_aiohttp()
        except ImportError as error:
            print(f"pepperpy-core demo: error: {error}", file=sys.stderr)
            return 2
    return asyncio.run(
        run_demo(
            sys.stdout, requests=args.requests, keys=args.keys, seed=args.seed, serve=args.serve
        )
    )


def _bench(args: argparse.Namespace) -> int:
    return run_bench(sys.stdout, ops=args.ops)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is from 0 to 65535, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pepperpy-core",
        description="pepperpy-core: typed asyncio modules with a Rust core.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    info = commands.add_parser("info", help="print the version, the active backend and Python")
    info.set_defaults(handler=_info)
    demo = commands.add_parser(
        "demo",
        help="run the example application and print what it did",
        description="Start a small application (database with retries, cache, API, state, "
        "metrics), serve a burst of requests through the cache, print start-up, health "
        "and metrics tables, and stop cleanly (also on Ctrl-C).",
    )
    demo.add_argument("--requests", type=_positive, default=2000, help="requests to serve")
    demo.add_argument("--keys", type=_positive, default=200, help="distinct keys requested")
    demo.add_argument("--seed", type=int, default=1, help="seed of the request mix")
    demo.add_argument(
        "--serve",
        type=_port,
        metavar="PORT",
        help="then keep running with /metrics and health probes on 127.0.0.1:PORT "
        "(0 picks a free port) until Ctrl-C; needs pepperpy-core[http]",
    )
    demo.set_defaults(handler=_demo)
    bench = commands.add_parser(
        "bench",
        help="compare the backends with their peers (under a minute)",
        description="Time FIFOCache and metrics on both backends against a dict FIFO and, "
        "where installed, cachetools, cachebox and prometheus_client.",
    )
    bench.add_argument(
        "--ops", type=_positive, default=100_000, help="operations per case (default 100000)"
    )
    bench.set_defaults(handler=_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit status."""
    args = _parser().parse_args(argv)
    try:
        status: int = args.handler(args)
    except BrokenPipeError:
        # The reader went away (``| head``): stop quietly, as Unix tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    return status


if __name__ == "__main__":
    sys.exit(main())
