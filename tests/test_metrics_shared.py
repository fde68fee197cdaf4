"""A shared MetricsRegistry (docs/multiprocess.md) in real processes: forked
and spawned workers, SIGKILL, restarts, a previous run's directory, and a
directory written by one backend and read by the other."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pepperpy_core.errors import MetricError
from pepperpy_core.metrics import SHARED_DIR_ENV, MetricsRegistry

pytestmark = pytest.mark.backend

FORK = multiprocessing.get_context("fork")


def samples(registry: MetricsRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the registry's text export, read by prometheus_client."""
    out = {}
    for family in text_string_to_metric_families(registry.to_prometheus()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def files(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


# --- the registry ------------------------------------------------------------------


def test_a_shared_registry_exports_what_it_holds(tmp_path: Path) -> None:
    reg = MetricsRegistry(shared_dir=tmp_path)
    assert reg.shared_dir == str(tmp_path.resolve())
    reg.counter("jobs_total", {"queue": "a"}, description="Jobs done.").inc(3)
    reg.gauge("busy", mode="max").set(2.5)
    reg.histogram("wait_seconds", buckets=[0.5, 1.0]).observe(0.75)
    got = samples(reg)
    assert got[("jobs_total", (("queue", "a"),))] == 3
    assert got[("busy", ())] == 2.5
    assert got[("wait_seconds_bucket", (("le", "0.5"),))] == 0
    assert got[("wait_seconds_bucket", (("le", "1.0"),))] == 1
    assert got[("wait_seconds_count", ())] == 1
    assert "# HELP jobs_total Jobs done." in reg.to_prometheus()
    assert reg.to_openmetrics().endswith("# EOF\n")
    rows = {r["name"]: r for r in reg.snapshot()}
    assert rows["wait_seconds"]["min"] == rows["wait_seconds"]["max"] == 0.75
    assert rows["wait_seconds"]["quantiles"][0.5] == 0.75


def test_the_environment_variable_shares_every_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SHARED_DIR_ENV, str(tmp_path))
    a = MetricsRegistry(namespace="a")
    b = MetricsRegistry(namespace="b")
    a.counter("x_total").inc(1)
    b.counter("x_total").inc(5)
    assert samples(a)[("x_total", ())] == 1
    assert samples(b)[("x_total", ())] == 5
    monkeypatch.delenv(SHARED_DIR_ENV)
    assert MetricsRegistry().shared_dir is None


def test_gauge_modes_are_fixed_by_first_use_and_checked(tmp_path: Path) -> None:
    reg = MetricsRegistry(shared_dir=tmp_path)
    g = reg.gauge("temp", mode="min")
    assert reg.gauge("temp") is g
    assert reg.gauge("temp", mode="min") is g
    with pytest.raises(MetricError, match="gauge 'temp' has mode 'min', not 'max'"):
        reg.gauge("temp", mode="max")
    with pytest.raises(MetricError, match="a gauge mode is one of"):
        reg.gauge("other", mode="avg")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="a counter has no mode"):
        reg._lookup("counter", "c", mode="sum")
    with pytest.raises(MetricError, match="label name 'pid' is reserved"):
        reg.gauge("per_worker", {"pid": "1"}, mode="pid")
    assert "other" not in reg.to_prometheus()  # refused calls made nothing
    with pytest.raises(ValueError, match="previous_run must be"):
        MetricsRegistry(shared_dir=tmp_path, previous_run="wipe")  # type: ignore[arg-type]


# --- processes ---------------------------------------------------------------------


def _work(directory: str, n: int) -> None:
    reg = MetricsRegistry(shared_dir=directory)
    for _ in range(n):
        reg.counter("requests_total", {"path": "/"}).inc()
        reg.histogram("latency_seconds", buckets=[0.1, 1.0]).observe(0.5)
    reg.gauge("workers", mode="sum").set(1)


def test_forked_workers_sum_exactly(tmp_path: Path) -> None:
    reg = MetricsRegistry(shared_dir=tmp_path)
    mine = reg.counter("requests_total", {"path": "/"})
    mine.inc(7)
    workers = [FORK.Process(target=_work, args=(str(tmp_path), 100 * (i + 1))) for i in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    got = samples(reg)
    assert got[("requests_total", (("path", "/"),))] == 7 + 100 + 200 + 300 + 400
    assert got[("latency_seconds_count", ())] == 1000
    assert got[("latency_seconds_sum", ())] == pytest.approx(500.0)
    assert ("workers", ()) not in got  # exited workers' gauges are dropped
    assert mine.value == 7  # a metric's value is this process's


def _inc_in_child(counter: Any, conn: Any) -> None:
    counter.inc(5)  # made by the parent, before the fork
    conn.send(counter.value)


def test_a_forked_child_counts_in_its_own_segment(tmp_path: Path) -> None:
    reg = MetricsRegistry(shared_dir=tmp_path)
    counter = reg.counter("c_total")
    counter.inc(2)
    parent, child = FORK.Pipe()
    worker = FORK.Process(target=_inc_in_child, args=(counter, child))
    worker.start()
    assert parent.recv() == 5
    worker.join(60)
    assert counter.value == 2
    assert samples(reg)[("c_total", ())] == 7


_HOLD = """
import sys
from pepperpy_core.metrics import MetricsRegistry
reg = MetricsRegistry(shared_dir=sys.argv[1])
for _ in range(int(sys.argv[2])):
    reg.counter("jobs_total").inc()
reg.gauge("alive", mode="pid").set(1)
print("ready", flush=True)
sys.stdin.readline()
"""


def _start(code: str, *args: str, **kwargs: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def _ready(process: subprocess.Popen[str]) -> None:
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"


def test_a_worker_killed_with_sigkill_keeps_its_completed_increments(tmp_path: Path) -> None:
    reg = MetricsRegistry(shared_dir=tmp_path)
    with _start(_HOLD, str(tmp_path), "250") as worker:
        _ready(worker)
        got = samples(reg)
        assert got[("jobs_total", ())] == 250
        assert got[("alive", (("pid", str(worker.pid)),))] == 1
        worker.kill()
        assert worker.wait(60) == -signal.SIGKILL
    got = samples(reg)
    assert got[("jobs_total", ())] == 250
    assert not any(name == "alive" for name, _ in got)
    assert not any(f.startswith(f"{worker.pid}-") for f in files(tmp_path))


def _restart(directory: str, i: int) -> None:
    reg = MetricsRegistry(shared_dir=directory)
    reg.counter("served_total").inc(i)
    reg.gauge("up").set(1)


def test_two_hundred_restarts_leave_exact_totals_and_a_bounded_directory(
    tmp_path: Path,
) -> None:
    reg = MetricsRegistry(shared_dir=tmp_path)
    most = 0
    for i in range(1, 201):
        worker = FORK.Process(target=_restart, args=(str(tmp_path), i))
        worker.start()
        worker.join(60)
        assert worker.exitcode == 0
        most = max(most, len(files(tmp_path)))
        if i % 50 == 0:
            assert samples(reg)[("served_total", ())] == i * (i + 1) // 2
    # lock, run, retained, this process's segment, and the last worker's
    assert most <= 5, files(tmp_path)
    assert samples(reg)[("served_total", ())] == 200 * 201 // 2
    assert len(files(tmp_path)) == 4
    assert sum(f.stat().st_size for f in tmp_path.iterdir()) < 64 * 1024


_PREVIOUS_RUN = """
import sys
from pepperpy_core.metrics import MetricsRegistry
MetricsRegistry(shared_dir=sys.argv[1]).counter("old_total").inc(41)
print("ready", flush=True)
"""


@pytest.fixture
def previous_run(tmp_path: Path) -> Path:
    """A directory left by a run of the service that has ended: written by a
    process in a session (and so a process group) of its own."""
    with _start(_PREVIOUS_RUN, str(tmp_path), start_new_session=True) as worker:
        _ready(worker)
        assert worker.wait(60) == 0
    return tmp_path


def test_a_previous_run_is_not_added_to_this_one(
    previous_run: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, "pepperpy_core.metrics"):
        reg = MetricsRegistry(shared_dir=previous_run)
    assert "previous run" in caplog.text
    assert "discarded" in caplog.text
    reg.counter("new_total").inc()
    got = samples(reg)
    assert ("old_total", ()) not in got
    assert got[("new_total", ())] == 1


def test_a_previous_run_is_kept_when_asked(previous_run: Path) -> None:
    reg = MetricsRegistry(shared_dir=previous_run, previous_run="keep")
    assert samples(reg)[("old_total", ())] == 41


def test_a_previous_run_is_refused_when_asked_and_left_alone(previous_run: Path) -> None:
    before = {f: (previous_run / f).read_bytes() for f in files(previous_run)}
    with pytest.raises(MetricError, match="previous run of the service"):
        MetricsRegistry(shared_dir=previous_run, previous_run="error")
    after = {f: (previous_run / f).read_bytes() for f in files(previous_run)}
    assert after == before


def test_an_application_and_its_modules_share_without_mixing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pepperpy_core import Application
    from pepperpy_core.config import ModuleConfig
    from pepperpy_core.module import MetricsModule

    monkeypatch.setenv(SHARED_DIR_ENV, str(tmp_path))
    db = MetricsModule(ModuleConfig(name="db", version="1.0.0"))
    api = MetricsModule(ModuleConfig(name="api", version="1.0.0"))
    app = Application(db, api)
    db.record_success()
    api.record_success()
    api.record_success()
    text = app.render_metrics()
    families = list(text_string_to_metric_families(text))
    names = [f.name for f in families]
    assert len(names) == len(set(names)), names
    (successes,) = (f for f in families if f.name == "pepperpy_module_successes")
    got = sorted((s.labels["module"], s.value) for s in successes.samples)
    assert got == [("api", 2), ("db", 1)]  # each series once


def test_a_segment_whose_owner_died_making_it_is_removed(tmp_path: Path) -> None:
    reg = MetricsRegistry(shared_dir=tmp_path)
    reg.counter("c_total").inc()
    # Killed after creating its file, before (or while) writing its header.
    (tmp_path / "1-0000000000000001.seg").write_bytes(b"")
    (tmp_path / "2-0000000000000002.seg").write_bytes(bytes(4096))
    assert samples(reg)[("c_total", ())] == 1
    (tmp_path / "3-0000000000000003.seg").write_bytes(b"")
    joiner = FORK.Process(target=_restart, args=(str(tmp_path), 0))  # a join finds it too
    joiner.start()
    joiner.join(60)
    assert joiner.exitcode == 0
    assert not [f for f in files(tmp_path) if "-000000000000000" in f]
    (tmp_path / "4-0000000000000004.seg").write_bytes(b"not a segment, and long enough " * 4)
    with pytest.raises(MetricError, match="not a pepperpy-core metrics segment"):
        reg.to_prometheus()


def test_the_pure_twin_refuses_a_cpu_that_may_reorder_its_stores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without memory fences its sequence locks hold only on x86: elsewhere a
    shared directory is refused (the native build uses real atomics), and
    nothing is written."""
    from pepperpy_core._fallback import shm

    monkeypatch.setattr(shm.platform, "machine", lambda: "aarch64")
    target = tmp_path / "shared"
    with pytest.raises(MetricError, match="need an x86 CPU, not 'aarch64'"):
        shm.open_store(target, "discard")
    assert not target.exists()


def _histogram_words(path: Path) -> Any:
    """A pure-twin mapping of a histogram's words (sequence, sum, min, max,
    3 counts) in a file of their own."""
    from pepperpy_core._fallback import shm

    path.write_bytes(bytes(4096))
    fd = os.open(path, os.O_RDWR)
    try:
        return shm._Map(fd, 4096)
    finally:
        os.close(fd)


def test_the_pure_twin_waits_for_a_writer_preempted_inside_its_update(tmp_path: Path) -> None:
    """A reader takes a histogram's values as they are only once its writer
    has made no progress for a long while (one killed there never leaves), not
    after a count of tries that a writer's preemption outlasts."""
    import struct
    import threading
    import time

    from pepperpy_core._fallback import shm

    m = _histogram_words(tmp_path / "words")
    words = 4 + 3
    m.store(0, 1)  # inside: a count raised, the sum not yet
    m.store(8 * 4, 1)
    read: list[list[int]] = []
    reader = threading.Thread(target=lambda: read.append(shm._read_consistent(m, 0, words, 30.0)))
    reader.start()
    time.sleep(0.1)  # time: the writer descheduled for longer than any count of tries takes
    m.store(8, struct.unpack("<Q", struct.pack("<d", 0.75))[0])
    m.store(0, 2)
    reader.join(timeout=60)
    assert not reader.is_alive()
    assert struct.unpack("<d", struct.pack("<Q", read[0][1]))[0] == 0.75
    assert read[0][4] == 1


def test_the_pure_twin_does_not_hang_on_a_writer_that_never_leaves(tmp_path: Path) -> None:
    from pepperpy_core._fallback import shm

    m = _histogram_words(tmp_path / "words")
    m.store(0, 7)  # killed inside its update: the sequence stays odd
    m.store(8 * 4, 4)
    assert shm._read_consistent(m, 0, 4 + 3, 0.02)[4] == 4
