"""The documents cannot rot: every ``python`` block of README.md and
benches/README.md runs and passes ``mypy --strict``; their shell commands
name things that exist; the README's errors table is the errors module."""

from __future__ import annotations

import importlib.util
import inspect
import re
import sys
import tomllib
import types
from pathlib import Path

import pytest

from pepperpy_core import errors
from tests.servers import RedisServer

pytestmark = pytest.mark.backend

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", ROOT / "benches" / "README.md"]


def _blocks(kind: str) -> list[tuple[str, str]]:
    """(id, source) of every ``kind`` block of the documents."""
    found = []
    for document in DOCUMENTS:
        text = document.read_text(encoding="utf-8")
        for i, source in enumerate(re.findall(rf"```{kind}\n(.*?)```", text, re.DOTALL)):
            found.append((f"{document.relative_to(ROOT)}#{i}", source))
    return found


BLOCKS = _blocks("python")
SHELL_BLOCKS = _blocks("sh")


def test_the_documents_have_examples() -> None:
    assert len(BLOCKS) >= 8
    assert SHELL_BLOCKS


@pytest.mark.parametrize("source", [s for _, s in BLOCKS], ids=[i for i, _ in BLOCKS])
def test_block_runs(source: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    server = None
    if "REDIS_URL" in source:  # the Redis example runs against a real server
        server = RedisServer(tmp_path)
        server.start()
        monkeypatch.setenv("REDIS_URL", server.url)
    # A real module, so that dataclasses and pickling can find it by name.
    module = types.ModuleType("readme_block")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    try:
        exec(compile(source, "README block", "exec"), module.__dict__)
    finally:
        if server is not None:
            server.stop()


def test_blocks_pass_mypy_strict(tmp_path: Path) -> None:
    """With the project's own mypy settings (strict, unreachable code, ...)."""
    from mypy import api

    paths = []
    for i, (name, source) in enumerate(BLOCKS):
        path = tmp_path / f"block{i}.py"
        path.write_text(f"# {name}\n{source}", encoding="utf-8")
        paths.append(str(path))
    out, err, status = api.run(
        [
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--cache-dir",
            str(ROOT / ".mypy_cache"),
            *paths,
        ]
    )
    assert status == 0, out + err


def _commands() -> list[str]:
    commands = []
    for _, block in SHELL_BLOCKS:
        for raw in block.splitlines():
            line = raw.split("#", 1)[0].strip()
            commands.extend(part.strip() for part in line.split("&&") if part.strip())
    return commands


def test_shell_commands_point_at_real_things() -> None:
    """The set-up commands are run for real by CI (.ci/run runs the test
    command, .ci/packaging the installs; test_cli runs the demo); here every
    one of them is checked to name scripts, extras and subcommands that exist."""
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
        elif words[:2] == ["python", "-m"]:  # a server, serving an example's app
            assert importlib.util.find_spec(words[2]) is not None, command
            app = words[3].split(":")[0] + ".py"
            assert (
                ROOT
                / words[words.index("--app-dir" if "--app-dir" in words else "--chdir") + 1]
                / app
            ).is_file(), command
        elif words[:2] == ["pip", "install"]:
            for group in re.findall(r"\[([\w,]+)\]", command):
                assert set(group.split(",")) <= set(extras), command
        else:
            assert words[0] in {"python3", ".", "export"}, command


def test_the_offline_recipe_fetches_what_the_pure_build_asks_for() -> None:
    """The README's offline pure install downloads exactly the build
    requirements the backend names (and the runtime dependencies)."""
    spec = importlib.util.spec_from_file_location("backend", ROOT / "_build" / "backend.py")
    assert spec is not None
    assert spec.loader is not None
    backend = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(backend)
    wanted = [
        *backend.get_requires_for_build_wheel({"pure": "true"}),
        *tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"],
    ]
    text = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    recipe = re.search(r"`pip download -d DIR ([^`]*)`", text)
    assert recipe is not None
    fetched = [word.strip("'") for word in recipe[1].split()]
    assert sorted(fetched) == sorted(wanted)


def _errors_table() -> dict[str, str]:
    """error name -> its "also a" column, from the README's errors table."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = text.split("### Errors", 1)[1].split("\n\n", 3)[2]
    rows = {}
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0].strip("`")] = cells[1].strip("`")
    return rows


def test_the_errors_table_is_the_errors_module() -> None:
    documented = _errors_table()
    defined = {
        name: cls
        for name, cls in vars(errors).items()
        if inspect.isclass(cls)
        and issubclass(cls, errors.PepperpyError)
        and cls is not errors.PepperpyError
    }
    assert set(documented) == set(defined)
    for name, cls in defined.items():
        builtin = documented[name]
        if builtin:  # the builtin it refines, as the table says
            assert any(b.__name__ == builtin for b in cls.__mro__), (name, builtin)
