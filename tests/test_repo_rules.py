"""Rules the project's own scripts and tests keep, checked on their text.

Each rule names a class of defect that once made CI fail at random:

- A pipe into a reader that exits early (``grep -q``, ``grep -m``, ``head``)
  kills the producer with SIGPIPE when the reader has seen enough, and
  ``set -o pipefail`` turns that into a failure, by chance. Scripts capture
  the whole output first and read it from a here-string.
- A test that asserts how long something took fails when the machine is
  busy. Tests assert what happened (an error, an order, a count); speed is
  measured in ``benches/``.
- A test that sleeps a fixed time to reach a state acts on another state
  when the machine is busy (or fails). Tests wait for a signal of the state.
  A sleep in a test's own body (``test_*`` or its ``main``) says on its line,
  after ``# time:`` (or ``loop time:``, ``virtual time:``), why time itself
  is what it waits for; work a test stands for sleeps in functions of its own.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: A pipe into a reader that may stop reading before the producer is done.
_EARLY_EXIT = re.compile(
    r"\|\s*(?:grep\b[^|;&]*\s(?:-[A-Za-z]*[qm]|--quiet\b|--max-count\b)|head\b)"
)


def _shell_sources() -> Iterator[tuple[str, str]]:
    """(where, text) of every shell script the project runs, README's sh blocks too."""
    for folder in (".ci", "tests", "benches", "examples"):
        for path in sorted((ROOT / folder).iterdir()):
            if path.is_file() and path.suffix in {".sh", ""}:
                text = path.read_text()
                if path.suffix == ".sh" or text.startswith("#!"):
                    yield str(path.relative_to(ROOT)), text
    readme = (ROOT / "README.md").read_text()
    for number, block in enumerate(re.findall(r"```(?:sh|bash)\n(.*?)```", readme, re.S)):
        yield f"README.md sh block {number}", block


def _logical_lines(text: str) -> Iterator[str]:
    """Lines with backslash continuations joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    for line in joined.splitlines():
        code = line.split(" #", 1)[0]
        if not code.lstrip().startswith("#"):
            yield code


def test_no_script_pipes_into_a_reader_that_exits_early() -> None:
    found = [
        f"{where}: {line.strip()}"
        for where, text in _shell_sources()
        for line in _logical_lines(text)
        if _EARLY_EXIT.search(line)
    ]
    assert not found, "capture the output, then grep a here-string:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "line",
    [
        "python -m zipfile -l x.whl | grep -q LICENSE",
        "info | grep -Eq '^backend'",
        "cmd | grep --quiet x",
        "cmd | grep -m1 x",
        "cmd |head -n 3",
    ],
)
def test_the_pipe_rule_sees_the_defect(line: str) -> None:
    assert _EARLY_EXIT.search(line)


@pytest.mark.parametrize("line", ['grep -q x <<<"$out"', "cmd | grep -c x", "cmd | sort"])
def test_the_pipe_rule_lets_safe_lines_be(line: str) -> None:
    assert not _EARLY_EXIT.search(line)


_CLOCKS = {"monotonic", "perf_counter", "time", "monotonic_ns", "perf_counter_ns"}
#: Names that hold a duration whatever they were computed from.
_DURATION = re.compile(r"^(took|elapsed|waited|duration)$|_(after|took|elapsed)$")


def _reads_clock(node: ast.AST, timed: set[str]) -> bool:
    """Whether ``node`` reads a clock, directly or through a name assigned from one."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call):
            func = sub.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in _CLOCKS:
                return True
        if isinstance(sub, ast.Name) and (sub.id in timed or _DURATION.search(sub.id)):
            return True
    return False


def _timing_asserts(tree: ast.AST) -> list[int]:
    """Line numbers of asserts that compare a duration read from a clock."""
    return sorted(set(_each_timing_assert(tree)))


def _each_timing_assert(tree: ast.AST) -> Iterator[int]:
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        timed: set[str] = set()
        nodes = sorted(ast.walk(function), key=lambda n: getattr(n, "lineno", 0))
        for node in nodes:
            assigned = isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign)
            if assigned and node.value and _reads_clock(node.value, timed):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    timed.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
            if isinstance(node, ast.Assert):
                for compare in ast.walk(node.test):
                    if (
                        isinstance(compare, ast.Compare)
                        and any(
                            isinstance(op, ast.Lt | ast.LtE | ast.Gt | ast.GtE)
                            for op in compare.ops
                        )
                        and _reads_clock(compare, timed)
                    ):
                        yield node.lineno
                        break


def test_no_test_asserts_how_long_something_took() -> None:
    found = []
    for path in sorted((ROOT / "tests").glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        found += [f"{path.name}:{line}" for line in _timing_asserts(tree)]
    assert not found, "assert what happened, not how long it took:\n" + "\n".join(found)


def test_the_timing_rule_sees_the_defect() -> None:
    source = """
def test_x():
    began = time.monotonic()
    work()
    took = time.monotonic() - began
    assert took < 5
    assert time.perf_counter() - began <= 1
"""
    assert _timing_asserts(ast.parse(source)) == [6, 7]


#: The note a sleep in a test's own body carries: why time is what it waits for.
_TIME_NOTE = re.compile(r"#\s*(?:loop |virtual )?time:")


def _unexplained_sleeps(tree: ast.AST, lines: list[str]) -> list[int]:
    """Lines of positive sleeps in a ``test_*`` or ``main`` body (not in a
    function nested in it) without a ``# time:`` note."""
    found = []
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        if not (function.name == "main" or function.name.startswith("test_")):
            continue
        stack: list[ast.AST] = list(function.body)
        while stack:
            node = stack.pop()
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
                continue
            stack.extend(ast.iter_child_nodes(node))
            if not isinstance(node, ast.Call) or not node.args:
                continue
            name = getattr(node.func, "attr", getattr(node.func, "id", ""))
            seconds = node.args[0]
            if (
                name == "sleep"
                and isinstance(seconds, ast.Constant)
                and isinstance(seconds.value, int | float)
                and seconds.value > 0
                and not _TIME_NOTE.search(lines[node.lineno - 1])
            ):
                found.append(node.lineno)
    return sorted(found)


def test_no_test_sleeps_into_a_state() -> None:
    found = []
    for path in sorted((ROOT / "tests").glob("*.py")):
        text = path.read_text()
        lines = text.splitlines()
        found += [f"{path.name}:{n}" for n in _unexplained_sleeps(ast.parse(text), lines)]
    assert not found, "wait for the state, or say why time is what it waits for:\n" + "\n".join(
        found
    )


def test_the_sleep_rule_sees_the_defect() -> None:
    source = """
async def main():
    await asyncio.sleep(0.05)  # the listener waits now
    await asyncio.sleep(0)
    await asyncio.sleep(2)  # loop time: the watchdog has run

    async def load():
        await asyncio.sleep(0.01)

def test_x():
    time.sleep(0.1)
"""
    assert _unexplained_sleeps(ast.parse(source), source.splitlines()) == [3, 11]
