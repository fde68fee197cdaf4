"""One format, two backends: a shared metrics directory written by the
extension is read by the pure-Python twin, and the other way round
(docs/multiprocess.md). Runs where the extension is built: it drives both
backends itself."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from pepperpy_core import _backend
from tests.test_metrics_shared import _ready, _start

_WRITE = """
import json, sys
from pepperpy_core.metrics import MetricsRegistry
reg = MetricsRegistry(shared_dir=sys.argv[1])
reg.counter("jobs_total", {"q": "é"}, description="Jobs.").inc(int(sys.argv[2]))
h = reg.histogram("wait_seconds", buckets=[0.5, 1.0])
for v in (0.25, 0.75, 3.0):
    h.observe(v)
reg.gauge("depth", mode="max").set(float(sys.argv[2]))
print("ready", flush=True)
if sys.argv[3] == "stay":
    sys.stdin.readline()
rows = MetricsRegistry(shared_dir=sys.argv[1]).snapshot()
print(json.dumps({r["name"]: r for r in rows}, default=str), flush=True)
"""


def _other(name: str) -> str:
    return "python" if name == "native" else "native"


def _values(rows: list[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, kind, description, label_names, bounds, mode, children in rows:
        ((values, metric),) = children.items()
        if kind == "histogram":
            out[name] = (description, label_names, bounds, values, metric.buckets(), metric.sum)
        else:
            out[name] = (description, label_names, values, mode, metric.value)
    return out


@pytest.mark.parametrize("writer", ["native", "python"])
def test_a_directory_written_by_one_backend_is_read_by_the_other(
    tmp_path: Path, writer: str
) -> None:
    env = {**os.environ, "PEPPERPY_CORE_BACKEND": writer}
    # One writer stays alive, one has exited (folded by the other backend).
    # The second starts once the first has joined: a writer that joined and
    # exited before any other lived would leave a previous run wherever the
    # run is told by live owners alone (a process group whose leader has
    # exited, as a CI runner's may have).
    with _start(_WRITE, str(tmp_path), "3", "stay", env=env) as live:
        _ready(live)
        done = _start(_WRITE, str(tmp_path), "4", "exit", env=env)
        _ready(done)
        assert done.wait(60) == 0
        done.communicate(timeout=60)
        reader = _backend.load(_other(writer)).SharedStore(str(tmp_path))
        got = _values(reader.collect(""))
        assert got["jobs_total"] == ("Jobs.", ("q",), ("é",), "sum", 7)
        assert got["depth"] == ("", (), (), "max", 3.0)
        assert got["wait_seconds"] == (
            "",
            (),
            (0.5, 1.0),
            (),
            [(0.5, 2), (1.0, 4), (float("inf"), 6)],
            8.0,
        )
        # The other backend folded the exited writer: the live one reads its fold.
        out, _ = live.communicate("\n", timeout=60)
    rows = json.loads(out)
    assert rows["jobs_total"]["value"] == 7
    assert rows["wait_seconds"]["count"] == 6
    assert rows["wait_seconds"]["min"] == 0.25
    assert rows["wait_seconds"]["max"] == 3.0
