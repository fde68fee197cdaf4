"""Gauges in a registry, both text formats (parsed by prometheus_client's own
parsers), content negotiation, collectors, and several registries exported
as one (active backend)."""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from pepperpy_core.errors import MetricError
from pepperpy_core.exposition import CONTENT_TYPES, Exposition, negotiate, render, render_chunks
from pepperpy_core.metrics import DEFAULT_BUCKETS, Gauge, MetricsRegistry

pytestmark = pytest.mark.backend


def parse(text: str, fmt: str = "prometheus") -> dict[str, Any]:
    """family name -> (type, documentation, {(sample name, labels): value})."""
    parser = parse_openmetrics_families if fmt == "openmetrics" else text_string_to_metric_families
    out = {}
    for family in parser(text):
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples}
        out[family.name] = (family.type, family.documentation, samples)
    return out


def filled() -> MetricsRegistry:
    reg = MetricsRegistry()
    reg.counter("requests_total", {"route": "/a"}, description='Requests "served".').inc(3)
    reg.counter("errors").inc(2)
    reg.gauge("queue_depth", {"queue": 'we"ird\\q\nx'}, description="Items waiting.").set(4.5)
    h = reg.histogram("db_seconds", {"db": "main"}, buckets=[0.1, 1.0])
    for v in (0.05, 0.5, 3.0):
        h.observe(v)
    return reg


# --- gauges in a registry ------------------------------------------------------------


def test_registry_gauge_is_get_or_create() -> None:
    reg = MetricsRegistry()
    g = reg.gauge("temperature", {"room": "a"}, description="Degrees.")
    assert isinstance(g, Gauge)
    assert reg.gauge("temperature", {"room": "a"}) is g
    assert reg.gauge("temperature", {"room": "b"}) is not g
    g.set(21.5)
    row = next(r for r in reg.snapshot() if r["labels"] == {"room": "a"})
    assert row == {
        "name": "temperature",
        "kind": "gauge",
        "description": "Degrees.",
        "labels": {"room": "a"},
        "value": 21.5,
    }


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda r: r.counter("level"), MetricError, "is a gauge, not a counter"),
        (lambda r: r.histogram("level"), MetricError, "is a gauge, not a histogram"),
        (lambda r: r.gauge("level", {"x": "1"}), MetricError, "has labels"),
        (lambda r: r.gauge("level", buckets=[1.0]), TypeError, "buckets"),
        (lambda r: r.gauge("bad name"), MetricError, "breaks Prometheus"),
        (lambda r: r.gauge("level", {"k": 1}), TypeError, "str value"),
        (lambda r: r.gauge(3), TypeError, "must be a str"),
    ],
)
def test_registry_gauge_refuses_bad_calls(call: Any, error: type[Exception], match: str) -> None:
    reg = MetricsRegistry()
    reg.gauge("level").set(2)
    before = reg.to_prometheus()
    with pytest.raises(error, match=match):
        call(reg)
    assert reg.to_prometheus() == before


def test_gauge_and_counter_series_collide() -> None:
    reg = MetricsRegistry()
    reg.counter("jobs")
    with pytest.raises(MetricError, match="'jobs_total'"):
        reg.gauge("jobs_total")


# --- the two formats --------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["prometheus", "openmetrics"])
def test_both_formats_parse_to_the_same_values(fmt: str) -> None:
    text = filled().export(fmt)  # type: ignore[arg-type]
    families = parse(text, fmt)
    kind, doc, samples = families["requests"]
    assert (kind, doc) == ("counter", 'Requests "served".')
    assert samples == {("requests_total", (("route", "/a"),)): 3.0}
    assert families["errors"][2] == {("errors_total", ()): 2.0}
    kind, doc, samples = families["queue_depth"]
    assert (kind, doc) == ("gauge", "Items waiting.")
    assert samples == {("queue_depth", (("queue", 'we"ird\\q\nx'),)): 4.5}
    kind, _, samples = families["db_seconds"]
    db = (("db", "main"),)
    assert kind == "histogram"
    assert samples == {
        ("db_seconds_bucket", (*db, ("le", "0.1"))): 1.0,
        ("db_seconds_bucket", (*db, ("le", "1.0"))): 2.0,
        ("db_seconds_bucket", (*db, ("le", "+Inf"))): 3.0,
        ("db_seconds_sum", db): pytest.approx(3.55),
        ("db_seconds_count", db): 3.0,
    }


def test_openmetrics_has_its_own_shape() -> None:
    text = filled().to_openmetrics()
    assert text.endswith("# EOF\n")
    assert text.count("# EOF") == 1
    assert "# TYPE requests counter\n" in text
    assert '# HELP requests Requests \\"served\\".\n' in text
    assert "requests_total_total" not in text
    assert MetricsRegistry().to_openmetrics() == "# EOF\n"


def test_text_format_names_counters_with_total() -> None:
    text = filled().to_prometheus()
    assert "# TYPE requests_total counter\n" in text
    assert "# TYPE errors_total counter\nerrors_total 2\n" in text
    assert '# HELP requests_total Requests "served".\n' in text  # 0.0.4 leaves quotes
    assert "# EOF" not in text


@pytest.mark.parametrize("fmt", ["prometheus", "openmetrics"])
@pytest.mark.parametrize("lines", [1, 7, 40, 1000])
def test_rendering_in_pieces_gives_the_same_text_a_few_lines_at_a_time(
    fmt: str, lines: int
) -> None:
    reg = filled()
    for i in range(60):
        reg.counter("jobs_total", {"i": str(i)}).inc(i)
        reg.histogram("db_seconds", {"db": str(i)}).observe(i / 10)
    sources = [(reg.collect(), 'module="a"')]
    whole = render(sources, fmt)  # type: ignore[arg-type]
    pieces = [p.decode() for p in render_chunks(sources, fmt, lines)]  # type: ignore[arg-type]
    assert "".join(pieces) == whole
    histogram_lines = len(DEFAULT_BUCKETS) + 3
    assert all(p.count("\n") < lines + max(lines, histogram_lines) + 2 for p in pieces)
    assert len(pieces) >= whole.count("\n") // (2 * max(lines, histogram_lines) + 2)


def test_export_refuses_an_unknown_format() -> None:
    with pytest.raises(ValueError, match="'openmetrics'"):
        filled().export("json")  # type: ignore[arg-type]


def test_rendered_label_text_is_kept_per_series() -> None:
    reg = filled()
    first = reg.to_prometheus()
    reg.counter("requests_total", {"route": "/a"}).inc()
    reg.counter("requests_total", {"route": "/b"}).inc()
    second = reg.to_prometheus()
    assert 'requests_total{route="/a"} 4\n' in second
    assert 'requests_total{route="/b"} 1\n' in second
    assert len(second.splitlines()) == len(first.splitlines()) + 1


# --- content negotiation ----------------------------------------------------------------

PROMETHEUS_2_42 = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
    "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


@pytest.mark.parametrize(
    ("accept", "fmt"),
    [
        (None, "prometheus"),
        ("", "prometheus"),
        ("*/*", "prometheus"),
        ("text/plain", "prometheus"),
        (PROMETHEUS_2_42, "openmetrics"),
        ("application/openmetrics-text", "openmetrics"),
        ("application/openmetrics-text; version=1.0.0; charset=utf-8", "openmetrics"),
        ("application/openmetrics-text;version=0.0.1", "prometheus"),  # not offered
        ("text/plain;q=0.9, application/openmetrics-text;q=0.5", "prometheus"),
        ("text/plain;q=0.5, application/openmetrics-text;q=0.9", "openmetrics"),
        ("application/json", "prometheus"),
        ("application/openmetrics-text;q=nan, text/plain;q=0.1", "prometheus"),
        ("application/openmetrics-text;q=x", "prometheus"),
        (",,;;=,", "prometheus"),
    ],
)
def test_negotiation(accept: str | None, fmt: str) -> None:
    assert negotiate(accept) == fmt
    assert fmt in CONTENT_TYPES


# --- collectors ------------------------------------------------------------------------


def test_collectors_run_before_every_export() -> None:
    reg = MetricsRegistry()
    calls: list[int] = []

    def collect() -> None:
        calls.append(1)
        reg.gauge("calls_seen").set(len(calls))

    remove = reg.add_collector(collect)
    assert "calls_seen 1.0\n" in reg.to_prometheus()
    assert "calls_seen 2.0\n" in reg.to_openmetrics()
    assert reg.snapshot()[0]["value"] == 3.0
    remove()
    reg.to_prometheus()
    assert len(calls) == 3


def test_a_failing_collector_fails_the_export() -> None:
    reg = MetricsRegistry()

    def broken() -> None:
        raise RuntimeError("cannot read the queue")

    reg.add_collector(broken)
    with pytest.raises(RuntimeError, match="cannot read the queue"):
        reg.to_prometheus()


def test_a_collector_must_be_callable() -> None:
    with pytest.raises(TypeError, match="callable"):
        MetricsRegistry().add_collector("nope")  # type: ignore[arg-type]


# --- several registries as one -----------------------------------------------------------


def test_each_module_registry_gains_a_module_label() -> None:
    app, db, web = MetricsRegistry(), MetricsRegistry(), MetricsRegistry()
    app.gauge("pepperpy_module_up", {"module": "db"}).set(1)
    db.counter("queries_total").inc(2)
    web.counter("queries_total").inc(5)
    web.histogram("lifecycle_seconds", {"module": "web", "phase": "start"}).observe(0.2)
    group = Exposition()
    group.add(app, "the application", exclusive=True)
    group.add(db, "module 'db'", module="db")
    group.add(web, "module 'web'", module="web")
    for fmt in ("prometheus", "openmetrics"):
        text = group.render(fmt)  # type: ignore[arg-type]
        assert text.count("# TYPE queries") == 1  # one family, two series
        samples = parse(text, fmt)["queries"][2]
        assert samples == {
            ("queries_total", (("module", "db"),)): 2.0,
            ("queries_total", (("module", "web"),)): 5.0,
        }
        up = parse(text, fmt)["pepperpy_module_up"][2]
        assert up == {("pepperpy_module_up", (("module", "db"),)): 1.0}
        lifecycle = parse(text, fmt)["lifecycle_seconds"][2]
        assert ("lifecycle_seconds_count", (("module", "web"), ("phase", "start"))) in lifecycle
    group.close()


def conflict(*owners: str) -> str:
    return ".*".join(owners)


@pytest.mark.parametrize(
    ("make_first", "make_second"),
    [
        (lambda r: r.counter("jobs"), lambda r: r.gauge("jobs")),
        (lambda r: r.counter("jobs"), lambda r: r.counter("jobs", {"kind": "a"})),
        (lambda r: r.histogram("req"), lambda r: r.counter("req_count")),
        (lambda r: r.counter("req_count"), lambda r: r.histogram("req")),
        (lambda r: r.gauge("pepperpy_x"), lambda r: r.gauge("pepperpy_x")),
    ],
)
@pytest.mark.parametrize("when", ["joining", "after joining"])
def test_two_registries_that_would_clash_are_refused(
    make_first: Any, make_second: Any, when: str
) -> None:
    first, second = MetricsRegistry(), MetricsRegistry()
    make_first(first)
    group = Exposition()
    # The last case is the application's own, exclusive registry.
    group.add(first, "module 'a'", module="a", exclusive=True)
    if when == "joining":
        make_second(second)
        before = second.to_prometheus()
        with pytest.raises(MetricError, match=conflict("module 'b'", "module 'a'")):
            group.add(second, "module 'b'", module="b")
        assert second.to_prometheus() == before
        alone = Exposition()
        alone.add(first, "module 'a'", module="a", exclusive=True)
        assert group.render() == alone.render()  # the second did not join
        alone.close()
    else:
        group.add(second, "module 'b'", module="b")
        with pytest.raises(MetricError, match=conflict("module 'b'", "module 'a'")):
            make_second(second)
        assert second.snapshot() == []  # nothing half made
        group.close()
        make_second(second)  # outside the group the name is free again
    group.close()


def test_module_labelled_metrics_may_share_a_name() -> None:
    a, b, shared = MetricsRegistry(), MetricsRegistry(), MetricsRegistry()
    group = Exposition()
    group.add(a, "module 'a'", module="a")
    group.add(b, "module 'b'", module="b")
    group.add(shared, "modules 'c', 'd'")  # no module of its own
    a.counter("hits_total").inc()
    b.counter("hits_total").inc()
    shared.histogram("lifecycle_seconds", {"module": "c"}).observe(1)
    a.histogram("lifecycle_seconds", {"module": "a"}).observe(1)
    with pytest.raises(MetricError, match="modules 'c', 'd'"):
        shared.counter("hits_total")  # its series would name no module
    families = parse(group.render())
    assert set(families["hits"][2]) == {
        ("hits_total", (("module", "a"),)),
        ("hits_total", (("module", "b"),)),
    }
    group.close()


#: Pairs of calls on two registries that would export one series twice:
#: the first registry is module 'a' (or, with None, one shared by modules).
SAME_SERIES = [
    # module a labels by hand with b's name what module b exports plainly
    ("a", lambda r: r.counter("jobs_total", {"module": "b"}), lambda r: r.counter("jobs_total")),
    ("a", lambda r: r.counter("jobs", {"module": "b"}), lambda r: r.counter("jobs")),
    (
        "a",
        lambda r: r.gauge("depth", {"module": "b", "q": "1"}),
        lambda r: r.gauge("depth", {"q": "1"}),
    ),
    # both label by hand with one module's name
    (
        "a",
        lambda r: r.histogram("op", {"module": "c"}),
        lambda r: r.histogram("op", {"module": "c"}),
    ),
    # a shared registry labels with a module that has a registry of its own
    (None, lambda r: r.counter("jobs_total", {"module": "b"}), lambda r: r.counter("jobs_total")),
    (
        None,
        lambda r: r.counter("jobs_total", {"module": "b"}),
        lambda r: r.counter("jobs_total", {"module": "b"}),
    ),
]


@pytest.mark.parametrize(("first_module", "make_first", "make_second"), SAME_SERIES)
@pytest.mark.parametrize("when", ["joining", "after joining", "second first"])
def test_two_registries_that_would_export_one_series_are_refused(
    first_module: str | None, make_first: Any, make_second: Any, when: str
) -> None:
    first, second = MetricsRegistry(), MetricsRegistry()
    owner = "module 'a'" if first_module else "modules 'c', 'd'"
    group = Exposition()
    if when == "joining":
        make_first(first)
        make_second(second)
        group.add(first, owner, module=first_module)
        before = second.snapshot()
        with pytest.raises(MetricError, match=conflict("module 'b'", owner, "module='")):
            group.add(second, "module 'b'", module="b")
        assert second.snapshot() == before
    elif when == "after joining":
        group.add(first, owner, module=first_module)
        group.add(second, "module 'b'", module="b")
        make_first(first)
        with pytest.raises(MetricError, match=conflict("module 'b'", owner, "module='")):
            make_second(second)
        assert second.snapshot() == []  # nothing half made
    else:
        group.add(first, owner, module=first_module)
        group.add(second, "module 'b'", module="b")
        make_second(second)
        before = first.snapshot()
        with pytest.raises(MetricError, match=conflict(owner, "module 'b'", "module='")):
            make_first(first)
        assert first.snapshot() == before
    text = group.render()
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert len(lines) == len({line.rsplit(" ", 1)[0] for line in lines})
    group.close()


def test_a_module_may_label_its_own_series_with_its_own_name() -> None:
    a, b = MetricsRegistry(), MetricsRegistry()
    group = Exposition()
    group.add(a, "module 'a'", module="a")
    group.add(b, "module 'b'", module="b")
    a.counter("jobs_total", {"module": "a"}).inc()  # as MetricsModule does
    a.counter("jobs_total", {"module": "a"}).inc()
    b.counter("jobs_total").inc(5)
    families = parse(group.render())
    assert families["jobs"][2] == {
        ("jobs_total", (("module", "a"),)): 2.0,
        ("jobs_total", (("module", "b"),)): 5.0,
    }
    group.close()


#: Registries of one exposition: (owner, module, exclusive).
_MEMBERS = [
    ("the application", None, True),
    ("module 'a'", "a", False),
    ("module 'b'", "b", False),
    ("modules 'c', 'd'", None, False),
]
#: A metric made in one registry: (registry, kind, name, labels).
_MAKE = st.tuples(
    st.integers(0, len(_MEMBERS) - 1),
    st.sampled_from(["counter", "gauge", "histogram"]),
    st.sampled_from(["jobs", "jobs_total", "jobs_count"]),
    st.sampled_from(
        [
            {},
            {"module": "a"},
            {"module": "b"},
            {"module": ""},
            {"k": "1"},
            {"module": "b", "k": "1"},
        ]
    ),
)


def series_of(text: str, fmt: str) -> list[tuple[str, frozenset[tuple[str, str]]]]:
    """Every sample's name and labels (an empty value is no label, as in Prometheus)."""
    parser = text_string_to_metric_families
    if fmt == "openmetrics":
        parser = parse_openmetrics_families
    return [
        (s.name, frozenset((k, v) for k, v in s.labels.items() if v))
        for family in parser(text)
        for s in family.samples
    ]


def assert_no_series_twice(group: Exposition) -> None:
    for fmt in ("prometheus", "openmetrics"):
        text = group.render(fmt)  # type: ignore[arg-type]
        types = [line for line in text.splitlines() if line.startswith("# TYPE")]
        assert len(types) == len(set(types)), text
        found = series_of(text, fmt)
        assert len(found) == len(set(found)), text


@given(
    joined_first=st.sets(st.integers(0, len(_MEMBERS) - 1)),
    made=st.lists(_MAKE, max_size=10),
)
@example(
    joined_first={1, 2}, made=[(1, "counter", "jobs", {"module": "b"}), (2, "counter", "jobs", {})]
)
@example(
    joined_first=set(), made=[(1, "counter", "jobs", {"module": "b"}), (2, "counter", "jobs", {})]
)
@example(
    joined_first={3, 2}, made=[(2, "gauge", "jobs", {}), (3, "gauge", "jobs", {"module": "b"})]
)
def test_no_two_registries_ever_export_one_series(
    joined_first: set[int], made: list[tuple[int, str, str, dict[str, str]]]
) -> None:
    """Whatever the registries make, before or after joining, each call is
    refused (MetricError) or the exposition holds no series twice."""
    registries = [MetricsRegistry() for _ in _MEMBERS]
    group = Exposition()

    def join(index: int) -> None:
        owner, module, exclusive = _MEMBERS[index]
        before = group.render()
        try:
            group.add(registries[index], owner, module=module, exclusive=exclusive)
        except MetricError:
            assert group.render() == before

    for index in sorted(joined_first):
        join(index)
    for index, kind, name, labels in made:
        before = (group.render(), registries[index].snapshot())
        try:
            getattr(registries[index], kind)(name, labels)
        except MetricError:
            assert (group.render(), registries[index].snapshot()) == before
        assert_no_series_twice(group)
    for index in sorted(set(range(len(_MEMBERS))) - joined_first):
        join(index)
        assert_no_series_twice(group)
    group.close()


def test_a_registry_joins_an_exposition_once() -> None:
    reg = MetricsRegistry()
    group = Exposition()
    group.add(reg, "module 'a'", module="a")
    with pytest.raises(ValueError, match="already exported"):
        group.add(reg, "module 'b'", module="b")
    group.close()
    with pytest.raises(RuntimeError, match="closed"):
        group.add(reg, "module 'a'")


def test_an_exposition_runs_every_registrys_collectors() -> None:
    a, b = MetricsRegistry(), MetricsRegistry()
    a.add_collector(lambda: a.gauge("a_seen").inc())
    b.add_collector(lambda: b.gauge("b_seen").inc())
    group = Exposition()
    group.add(a, "module 'a'", module="a")
    group.add(b, "module 'b'", module="b")
    group.render()
    text = group.render("openmetrics")
    assert 'a_seen{module="a"} 2.0\n' in text
    assert 'b_seen{module="b"} 2.0\n' in text
    group.close()


# --- descriptions ----------------------------------------------------------------------


def test_describe_gives_help_text_now_or_later_and_the_first_wins() -> None:
    reg = MetricsRegistry()
    reg.describe("later_total", "Made after it was described.")
    reg.counter("now_total").inc()
    reg.describe("now_total", "Described after it was made.")
    reg.describe("now_total", "A second description is ignored.")
    reg.counter("later_total").inc()
    reg.counter("given_total", description="Given at first use.")
    reg.describe("given_total", "Ignored too.")
    docs = {name: doc for name, (_, doc, _) in parse(reg.to_prometheus()).items()}
    assert docs == {
        "now": "Described after it was made.",
        "later": "Made after it was described.",
        "given": "Given at first use.",
    }


def test_a_metric_made_without_help_text_gets_one_from_its_kind_and_name() -> None:
    reg = MetricsRegistry()
    reg.timer("op")  # the spec's MetricsModule.timer(name) takes no help text
    reg.histogram("fetch_seconds")
    reg.counter("jobs_total")
    reg.counter("http_requests", {"code": "200"})
    reg.gauge("queue_depth")
    reg.gauge("described_later")
    reg.describe("described_later", "Given afterwards.")
    wanted = {
        "op": "Durations of op, in seconds.",
        "fetch_seconds": "Durations of fetch, in seconds.",
        "jobs": "Count of jobs.",
        "http_requests": "Count of http requests.",
        "queue_depth": "Current queue depth.",
        "described_later": "Given afterwards.",
    }
    for fmt in ("prometheus", "openmetrics"):
        docs = {name: doc for name, (_, doc, _) in parse(reg.export(fmt), fmt).items()}  # type: ignore[arg-type]
        assert docs == wanted
    # Plain data says what was given: nothing.
    assert {r["name"]: r["description"] for r in reg.snapshot()}["op"] == ""


@pytest.mark.parametrize(
    ("name", "text", "error"),
    [("bad name", "x", MetricError), (3, "x", TypeError), ("ok", 3, TypeError)],
)
def test_describe_refuses_bad_input(name: Any, text: Any, error: type[Exception]) -> None:
    reg = MetricsRegistry()
    with pytest.raises(error):
        reg.describe(name, text)
    assert reg.to_prometheus() == ""


# --- text that UTF-8 cannot encode --------------------------------------------------------

#: What os.fsdecode makes of a Latin-1 file name: a lone surrogate.
UNDECODED = os.fsdecode(b"caf\xe9.txt")


@pytest.mark.parametrize(
    "call",
    [
        lambda r, g: r.counter("files_total", {"file": UNDECODED}),
        lambda r, g: r.gauge("fresh", {"file": UNDECODED}),
        lambda r, g: r.histogram("seconds", {"a": "x", "b": UNDECODED}),
        lambda r, g: r.timer("op", {"file": UNDECODED}),
        lambda r, g: r.counter("jobs_total", description=UNDECODED),
        lambda r, g: r.describe("jobs_total", UNDECODED),
        lambda r, g: g.add(MetricsRegistry(), "module x", module=UNDECODED),
    ],
)
def test_text_utf8_cannot_encode_is_refused_where_it_enters(call: Any) -> None:
    reg = MetricsRegistry()
    reg.counter("files_total", {"file": "a.txt"}).inc()
    group = Exposition()
    group.add(reg, "module 'a'", module="a")
    before = (group.render(), reg.snapshot())
    with pytest.raises(MetricError, match=r"UTF-8 cannot encode '\\udce9' at index 3"):
        call(reg, group)
    assert (group.render(), reg.snapshot()) == before
    reg.counter("jobs_total").inc()  # a refused description is not kept for later
    assert [r["description"] for r in reg.snapshot() if r["name"] == "jobs_total"] == [""]
    group.render("openmetrics").encode()
    group.close()


def test_a_counter_without_a_name_before_total_is_refused() -> None:
    reg = MetricsRegistry()
    with pytest.raises(MetricError, match="'_total'"):
        reg.counter("_total")
    assert reg.snapshot() == []
    reg.gauge("_total").set(1)  # a gauge keeps its whole name


def test_text_that_slipped_in_costs_only_its_series_and_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reg = MetricsRegistry()
    reg.counter("files_total", {"file": "a.txt"}, description="Files.").inc(2)
    reg.gauge("other").set(1)
    family = reg._families["files_total"]
    family.children[(UNDECODED,)] = reg.counter("files_total", {"file": "b.txt"})
    family.description = UNDECODED  # changed by hand, past every check
    for _ in range(3):
        for fmt in ("prometheus", "openmetrics"):
            text = reg.export(fmt)  # type: ignore[arg-type]
            text.encode()
            samples = parse(text, fmt)
            assert samples["files"][2][("files_total", (("file", "a.txt"),))] == 2.0
            assert ("files_total", (("file", UNDECODED),)) not in samples["files"][2]
            assert "other" in samples
    logged = [r for r in caplog.records if r.name == "pepperpy_core.metrics"]
    assert len(logged) == 1
    assert "files_total" in logged[0].getMessage()


_ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=6)  # surrogates too
_METRIC_NAMES = st.one_of(
    st.from_regex(r"[a-zA-Z_:][a-zA-Z0-9_:]{0,6}", fullmatch=True),
    st.sampled_from(["_total", "x_total", "x_created", "x_bucket", "x_count", "x_info"]),
    _ANY_TEXT,
)
_LABEL_NAMES = st.one_of(
    st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,4}", fullmatch=True),
    st.sampled_from(["module", "le", "__x"]),
    _ANY_TEXT,
)


@given(
    kind=st.sampled_from(["counter", "gauge", "histogram"]),
    name=_METRIC_NAMES,
    labels=st.dictionaries(_LABEL_NAMES, _ANY_TEXT, max_size=3),
    text=_ANY_TEXT,
    module=st.none() | _ANY_TEXT,
)
@example(kind="counter", name="_total", labels={}, text="", module=None)
@example(kind="gauge", name="x", labels={"f": UNDECODED}, text="", module=None)
@example(kind="gauge", name="x", labels={}, text=UNDECODED, module=None)
@example(kind="gauge", name="x", labels={}, text="", module=UNDECODED)
def test_any_text_is_refused_where_it_enters_or_parses_back(
    kind: str, name: str, labels: dict[str, str], text: str, module: str | None
) -> None:
    reg = MetricsRegistry()
    group = Exposition()
    try:
        group.add(reg, "module 'm'", module=module)
    except MetricError:
        assert group.render() == ""
        return
    try:
        getattr(reg, kind)(name, labels, description=text)
    except (MetricError, TypeError):
        assert (group.render(), reg.snapshot()) == ("", [])
        return
    wanted = dict(labels)
    if module is not None:
        wanted.setdefault("module", module)
    wanted = {k: v for k, v in wanted.items() if v}  # an empty value is no label
    for fmt in ("prometheus", "openmetrics"):
        rendered = group.render(fmt)  # type: ignore[arg-type]
        rendered.encode()
        parser = text_string_to_metric_families
        if fmt == "openmetrics":
            parser = parse_openmetrics_families
        (family,) = parser(rendered)
        if text.strip():  # the parsers strip the edges of help text
            assert family.documentation.strip() == text.strip()
        assert family.samples
        for sample in family.samples:
            got = {k: v for k, v in sample.labels.items() if v}
            if sample.name.endswith("_bucket") and kind == "histogram":
                del got["le"]
            assert got == wanted
    group.close()
