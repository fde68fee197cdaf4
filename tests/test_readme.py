"""Every ``python`` code block of the README runs, so the README cannot rot."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

from tests.servers import RedisServer

pytestmark = pytest.mark.backend

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)


def test_readme_has_examples() -> None:
    assert BLOCKS


@pytest.mark.parametrize("source", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_block_runs(source: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    server = None
    if "REDIS_URL" in source:  # the Redis example runs against a real server
        server = RedisServer(tmp_path)
        server.start()
        monkeypatch.setenv("REDIS_URL", server.url)
    # A real module, so that dataclasses and pickling can find it by name.
    module = types.ModuleType("readme_block")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    try:
        exec(compile(source, str(README), "exec"), module.__dict__)
    finally:
        if server is not None:
            server.stop()


SHELL_BLOCKS = re.findall(r"```sh\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)
ROOT = README.parent


def _commands() -> list[str]:
    commands = []
    for block in SHELL_BLOCKS:
        for raw in block.splitlines():
            line = raw.split("#", 1)[0].strip()
            commands.extend(part.strip() for part in line.split("&&") if part.strip())
    return commands


def test_readme_shell_commands_point_at_real_things() -> None:
    """The set-up commands are run for real by CI (.ci/run runs the test
    command; test_cli runs the demo); here every one of them is checked to
    name scripts, extras and subcommands that exist."""
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    commands = _commands()
    assert commands
    for command in commands:
        words = command.split()
        if words[0] == "bash" or (words[0] == "python" and words[1].endswith(".py")):
            assert (ROOT / words[1]).is_file(), command
        elif words[:3] == ["python", "-m", "pepperpy_core"]:
            from pepperpy_core.__main__ import main

            with pytest.raises(SystemExit) as info:
                main([*words[3:4], "--help"])
            assert info.value.code == 0, command
        elif words[:2] == ["pip", "install"]:
            match = re.search(r"\[(\w+)\]", command)
            if match:
                assert match.group(1) in extras, command
        else:
            assert words[0] in {"python3", "."}, command
