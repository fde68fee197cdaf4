"""The command line: ``python -m pepperpy_core info``."""

from __future__ import annotations

import argparse
import platform
import sys
from collections.abc import Sequence

import pepperpy_core
from pepperpy_core import _backend


def _info() -> int:
    native = _backend.native
    rows = [
        ("pepperpy-core", pepperpy_core.__version__),
        ("backend", pepperpy_core.BACKEND),
        ("extension", native.__file__ if native is not None else "not loaded"),
        ("python", f"{platform.python_implementation()} {platform.python_version()}"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit status."""
    parser = argparse.ArgumentParser(prog="pepperpy-core", description="pepperpy-core command line")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("info", help="print the version, the active backend and Python")
    args = parser.parse_args(argv)
    handlers = {"info": _info}
    return handlers[args.command]()


if __name__ == "__main__":
    sys.exit(main())
