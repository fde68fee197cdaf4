"""MetricsRegistry: names, labels, snapshot and the Prometheus exposition,
checked with prometheus_client's own parser (active backend)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pepperpy_core.errors import MetricError, PepperpyError
from pepperpy_core.metrics import Counter, Histogram, MetricsRegistry, Timer

pytestmark = pytest.mark.backend


def parse(text: str) -> dict[str, Any]:
    """family name -> (type, documentation, {(sample name, labels): value})."""
    out = {}
    for family in text_string_to_metric_families(text):
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples}
        out[family.name] = (family.type, family.documentation, samples)
    return out


def test_get_or_create_by_name_and_labels() -> None:
    reg = MetricsRegistry()
    a = reg.counter("requests_total", {"route": "/a"})
    assert isinstance(a, Counter)
    assert reg.counter("requests_total", {"route": "/a"}) is a
    assert reg.counter("requests_total", {"route": "/b"}) is not a
    h = reg.histogram("latency_seconds")
    assert isinstance(h, Histogram)
    assert reg.histogram("latency_seconds") is h
    t = reg.timer("latency_seconds")
    assert isinstance(t, Timer)
    assert t.histogram is h
    assert reg.timer("latency_seconds") is not t  # a new timer per block


def test_same_name_other_kind_is_refused() -> None:
    reg = MetricsRegistry()
    reg.counter("jobs")
    with pytest.raises(MetricError, match="'jobs' is a counter, not a histogram"):
        reg.histogram("jobs")
    with pytest.raises(MetricError, match="is a counter"):
        reg.timer("jobs")
    reg.histogram("wait")
    with pytest.raises(MetricError, match="'wait' is a histogram, not a counter"):
        reg.counter("wait")
    assert issubclass(MetricError, ValueError)
    assert issubclass(MetricError, PepperpyError)


def test_label_names_are_fixed_by_first_use() -> None:
    reg = MetricsRegistry()
    reg.counter("hits", {"a": "1"})
    with pytest.raises(MetricError, match=r"has labels \['a'\]"):
        reg.counter("hits", {"b": "1"})
    with pytest.raises(MetricError, match="has labels"):
        reg.counter("hits")


def test_buckets_are_fixed_by_first_use() -> None:
    reg = MetricsRegistry()
    h = reg.histogram("t", buckets=[0.1, 1.0])
    assert reg.histogram("t") is h
    assert reg.histogram("t", buckets=[0.1, 1]) is h
    with pytest.raises(MetricError, match="has buckets"):
        reg.histogram("t", buckets=[0.5])
    with pytest.raises(ValueError, match="strictly increasing"):
        reg.histogram("u", buckets=[1.0, 0.1])
    assert [row["name"] for row in reg.snapshot()] == ["t"]


@pytest.mark.parametrize("name", ["", "1abc", "a-b", "a b", "é", "a.b"])
def test_bad_metric_names(name: str) -> None:
    reg = MetricsRegistry()
    with pytest.raises(MetricError, match="breaks Prometheus' rule"):
        reg.counter(name)
    with pytest.raises(MetricError):
        reg.histogram(name)
    assert reg.snapshot() == []


def test_metric_name_must_be_a_string() -> None:
    with pytest.raises(TypeError, match="must be a str"):
        MetricsRegistry().counter(5)  # type: ignore[arg-type]


@pytest.mark.parametrize("label", ["", "1a", "a-b", "__reserved", "a:b"])
def test_bad_label_names(label: str) -> None:
    reg = MetricsRegistry()
    with pytest.raises(MetricError, match="label name"):
        reg.counter("ok", {label: "v"})
    assert reg.snapshot() == []


def test_le_is_reserved_on_histograms_only() -> None:
    reg = MetricsRegistry()
    with pytest.raises(MetricError, match="'le' is reserved"):
        reg.histogram("h", {"le": "1"})
    reg.counter("c", {"le": "1"}).inc()


@pytest.mark.parametrize("value", [1, None, 2.5, b"x"])
def test_label_values_must_be_strings(value: Any) -> None:
    reg = MetricsRegistry()
    with pytest.raises(TypeError, match="must have a str value"):
        reg.counter("c", {"route": value})
    with pytest.raises(TypeError, match="labels must be a mapping"):
        reg.counter("c", [("route", "x")])  # type: ignore[arg-type]
    assert reg.snapshot() == []


def test_snapshot_is_plain_data() -> None:
    reg = MetricsRegistry()
    reg.counter("hits", {"route": "/"}, description="Hits.").inc(3)
    h = reg.histogram("wait", buckets=[1.0])
    for v in (0.5, 1.5):
        h.observe(v)
    reg.histogram("idle")
    rows = reg.snapshot()
    assert rows[0] == {
        "name": "hits",
        "kind": "counter",
        "description": "Hits.",
        "labels": {"route": "/"},
        "value": 3,
    }
    wait = rows[1]
    assert wait["count"] == 2
    assert wait["sum"] == 2.0
    assert (wait["min"], wait["max"]) == (0.5, 1.5)
    assert wait["buckets"] == [(1.0, 1), (math.inf, 2)]
    assert set(wait["quantiles"]) == {0.5, 0.9, 0.99}
    idle = rows[2]
    assert idle["count"] == 0
    assert idle["quantiles"] == {0.5: None, 0.9: None, 0.99: None}


def test_prometheus_exposition_parses_with_every_value() -> None:
    reg = MetricsRegistry()
    reg.counter(
        "http_requests_total", {"method": "GET", "code": "200"}, description="Requests."
    ).inc(7)
    reg.counter("http_requests_total", {"method": "POST", "code": "500"}).inc(2)
    reg.counter("plain").inc()
    h = reg.histogram("db_seconds", {"db": "main"}, description="DB time.", buckets=[0.01, 0.1])
    for v in (0.005, 0.01, 0.05, 2.0):
        h.observe(v)
    text = reg.to_prometheus()
    families = parse(text)

    kind, doc, samples = families["http_requests"]
    assert (kind, doc) == ("counter", "Requests.")
    assert samples == {
        ("http_requests_total", (("code", "200"), ("method", "GET"))): 7.0,
        ("http_requests_total", (("code", "500"), ("method", "POST"))): 2.0,
    }
    assert families["plain"][2] == {("plain_total", ()): 1.0}

    kind, doc, samples = families["db_seconds"]
    assert (kind, doc) == ("histogram", "DB time.")
    db = (("db", "main"),)
    assert samples == {
        ("db_seconds_bucket", (*db, ("le", "0.01"))): 2.0,
        ("db_seconds_bucket", (*db, ("le", "0.1"))): 3.0,
        ("db_seconds_bucket", (*db, ("le", "+Inf"))): 4.0,
        ("db_seconds_sum", db): pytest.approx(2.065),
        ("db_seconds_count", db): 4.0,
    }
    assert "# TYPE db_seconds histogram" in text
    assert text.endswith("\n")


def test_exposition_escapes_labels_and_help() -> None:
    reg = MetricsRegistry()
    tricky = 'say "hi"\\ back\nnow'
    reg.counter("c", {"v": tricky}, description="line one\nline \\ two").inc()
    text = reg.to_prometheus()
    assert '\\"hi\\"' in text
    assert "\\n" in text
    _, doc, samples = parse(text)["c"]
    assert doc == "line one\nline \\ two"
    # The parser reports counter samples under the OpenMetrics name, *_total.
    assert list(samples) == [("c_total", (("v", tricky),))]


def test_empty_registry_exports_nothing() -> None:
    assert MetricsRegistry().to_prometheus() == ""
    assert MetricsRegistry().snapshot() == []


def test_timer_from_registry_records() -> None:
    reg = MetricsRegistry()
    with reg.timer("step_seconds", {"step": "a"}):
        pass

    @reg.timer("call_seconds")
    def work() -> int:
        return 1

    assert work() == 1
    assert reg.histogram("step_seconds", {"step": "a"}).count == 1
    assert reg.histogram("call_seconds").count == 1


# --- series that would collide -----------------------------------------------


@pytest.mark.parametrize(
    ("first", "second", "series"),
    [
        (("histogram", "req"), ("counter", "req_count"), "req_count"),
        (("histogram", "req"), ("counter", "req_sum"), "req_sum"),
        (("histogram", "req"), ("counter", "req_bucket"), "req_bucket"),
        (("histogram", "req"), ("counter", "req_created"), "req_created"),
        (("counter", "req_count"), ("histogram", "req"), "req_count"),
        (("counter", "jobs"), ("counter", "jobs_total"), "jobs"),
        (("counter", "jobs_total"), ("histogram", "jobs"), "jobs"),
        (("histogram", "a"), ("histogram", "a_count"), "a_count"),
    ],
)
def test_metrics_whose_series_collide_are_refused(
    first: tuple[str, str], second: tuple[str, str], series: str
) -> None:
    reg = MetricsRegistry()
    getattr(reg, first[0])(first[1])
    before = reg.to_prometheus()
    with pytest.raises(MetricError) as info:
        getattr(reg, second[0])(second[1])
    message = str(info.value)
    assert repr(first[1]) in message
    assert repr(second[1]) in message
    assert repr(series) in message
    assert reg.to_prometheus() == before  # nothing was half made
    with pytest.raises(MetricError):  # and the refusal is not remembered away
        getattr(reg, second[0])(second[1])


def test_prometheus_client_refuses_the_same_pairs() -> None:
    """The rule is prometheus_client's: both refuse, or both accept."""
    from prometheus_client import CollectorRegistry
    from prometheus_client import Counter as PromCounter
    from prometheus_client import Histogram as PromHistogram

    for hist, counter in [("req", "req_count"), ("req", "req_sum"), ("a", "a_total")]:
        prom = CollectorRegistry()
        PromHistogram(hist, "h", registry=prom)
        with pytest.raises(ValueError, match="Duplicated timeseries"):
            PromCounter(counter, "c", registry=prom)
        ours = MetricsRegistry()
        ours.histogram(hist)
        with pytest.raises(MetricError):
            ours.counter(counter)
    # And both accept names that only look alike.
    prom = CollectorRegistry()
    PromHistogram("req", "h", registry=prom)
    PromCounter("reqs", "c", registry=prom)
    ours = MetricsRegistry()
    ours.histogram("req")
    ours.counter("reqs")


# --- the remembered lookups ----------------------------------------------------


def test_a_remembered_lookup_is_the_same_metric_whatever_the_call_shape() -> None:
    reg = MetricsRegistry()
    c = reg.counter("hits_total", {"a": "1", "b": "2"}, description="Hits.")
    assert reg.counter("hits_total", {"a": "1", "b": "2"}) is c
    assert reg.counter("hits_total", {"b": "2", "a": "1"}) is c  # label order is free
    assert reg.counter("hits_total", labels={"a": "1", "b": "2"}) is c
    assert reg.counter(name="hits_total", labels={"a": "1", "b": "2"}) is c
    h = reg.histogram("t_seconds", buckets=[0.1, 1.0])
    assert reg.histogram("t_seconds") is h
    assert reg.histogram("t_seconds", None) is h
    assert reg.timer("t_seconds").histogram is h
    assert reg.timer("t_seconds", buckets=[0.1, 1.0]).histogram is h


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda r: r.counter("ok_total", {"a": 1}), TypeError),
        (lambda r: r.counter("ok_total", {"b": "1"}), MetricError),
        (lambda r: r.counter("ok_total", [("a", "1")]), TypeError),
        (lambda r: r.counter(5), TypeError),
        (lambda r: r.counter("bad name"), MetricError),
        (lambda r: r.histogram("ok_total"), MetricError),
        (lambda r: r.histogram("t_seconds", buckets=[1.0, 2.0]), MetricError),
        (lambda r: r.timer("t_seconds", buckets=[1.0]), MetricError),
        (lambda r: r.counter("ok_total", description=3), TypeError),
        (lambda r: r.counter("ok_total", None, "positional description"), TypeError),
        (lambda r: r.counter("ok_total", {"a": "1"}, extra=1), TypeError),
    ],
)
def test_a_remembered_lookup_never_skips_a_check(call: Any, error: type[Exception]) -> None:
    reg = MetricsRegistry()
    reg.counter("ok_total", {"a": "1"})
    reg.histogram("t_seconds", buckets=[0.5])
    for _ in range(2):  # before and after anything was remembered
        with pytest.raises(error):
            call(reg)
