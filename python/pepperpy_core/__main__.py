"""The command line: ``python -m pepperpy_core`` (also ``pepperpy-core``).

- ``info``: version, active backend, where the extension was loaded from, Python.
- ``demo``: the example application (see ``_demo.py``), with its tables.
- ``bench``: a quick comparison with the peers that are installed.

Exit status: 0 on success, 2 for a usage error (bad arguments, a bad
``PEPPERPY_CORE_BACKEND``), 130 after Ctrl-C and 143 after SIGTERM (each after
a clean stop), and 0, quietly, when the reader of the output goes away.
"""

from __future__ import annotations

# Only what the interpreter has loaded already: every other import happens in
# main(), where a Ctrl-C that interrupts it is a quiet exit 130.
import io
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence
    from typing import NoReturn

PROG = "pepperpy-core"
_SIGINT = 2  # signal.SIGINT, on every platform Python runs on


def _info(args: argparse.Namespace) -> int:
    import platform  # noqa: PLC0415

    from pepperpy_core import __version__, _backend  # noqa: PLC0415 (after the backend check)

    active = _backend.ACTIVE
    rows = [
        ("pepperpy-core", __version__),
        ("backend", active.name),
        ("extension", active.origin if active.name == "native" else "not loaded"),
        ("python", f"{platform.python_implementation()} {platform.python_version()}"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    import asyncio  # noqa: PLC0415
    import logging  # noqa: PLC0415

    from pepperpy_core._demo import run_demo  # noqa: PLC0415

    logging.basicConfig(level=logging.WARNING, format="  log %(name)s: %(message)s")
    if args.serve is not None:
        from pepperpy_core.runtime.http import require_aiohttp  # noqa: PLC0415

        try:
            require_aiohttp()
        except ImportError as error:
            _fail(f"demo --serve: {error}")
    return asyncio.run(
        run_demo(
            sys.stdout, requests=args.requests, keys=args.keys, seed=args.seed, serve=args.serve
        )
    )


def _bench(args: argparse.Namespace) -> int:
    from pepperpy_core._bench import run_bench  # noqa: PLC0415

    return run_bench(sys.stdout, ops=args.ops)


def _positive(text: str) -> int:
    import argparse  # noqa: PLC0415

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _port(text: str) -> int:
    import argparse  # noqa: PLC0415

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is from 0 to 65535, got {value}")
    return value


def _parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    import argparse  # noqa: PLC0415

    from pepperpy_core import __version__  # noqa: PLC0415

    parser = argparse.ArgumentParser(
        prog=PROG, description="pepperpy-core: typed asyncio modules with a Rust core."
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    info = commands.add_parser("info", help="print the version, the active backend and Python")
    info.set_defaults(handler=_info)
    demo = commands.add_parser(
        "demo",
        help="run the example application and print what it did",
        description="Start a small application (database with retries, cache, API, state, "
        "metrics), serve requests through the cache as they are generated, print the "
        "start-up, health and metrics tables, and stop cleanly (Ctrl-C too).",
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
    return parser, {"info": info, "demo": demo, "bench": bench}


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """The arguments; a usage error (exit 2) names what is wrong, with the
    usage of the command it belongs to."""
    parser, subparsers = _parser()
    args, unknown = parser.parse_known_args(argv)
    owner = subparsers.get(args.command, parser)
    if unknown:
        owner.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command is None:
        parser.error("the following arguments are required: COMMAND")
    return args


def _fail(message: str) -> NoReturn:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _check_backend() -> None:
    """Choose the backend now, so that a bad choice is one line, not a traceback."""
    try:
        from pepperpy_core import _backend  # noqa: PLC0415, F401
    except ImportError as error:  # BackendChoiceError, or the extension asked for is missing
        _fail(str(error))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit status."""
    try:
        # A line is written when it is printed, also to a pipe (a supervisor,
        # a test, ``| tee``): the demo reports progress as it goes.
        if isinstance(sys.stdout, io.TextIOWrapper):
            sys.stdout.reconfigure(line_buffering=True)
        args = _parse(argv)
        _check_backend()
        status: int = args.handler(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (``| head``): stop quietly, as Unix tools do.
        import os  # noqa: PLC0415 (loaded by the interpreter at start)

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:  # Ctrl-C before the command could handle it
        return 128 + _SIGINT
    return status


if __name__ == "__main__":
    sys.exit(main())
