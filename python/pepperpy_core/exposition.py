"""Metrics as text: the Prometheus exposition format 0.0.4 and OpenMetrics
1.0.0, for one registry or several exported as one.

Both formats name a counter's samples ``<name>_total`` (a trailing
``_total`` in the metric's own name is not doubled), so Prometheus stores
the same series whichever format it negotiates. Each series' label text is
escaped once, when the series is first exported, and kept.

Every family has help text: its description, else one derived from its
kind and name (``default_help``). Every str that reaches the text must be
encodable as UTF-8: names, label
values, help text and module names are checked where they enter (``utf8``,
MetricError). Should one slip past (a family changed by hand), its series
or help line is left out and logged once, and the rest is still exported.

``Exposition`` exports several registries as one scrape (an Application's
own and its modules'): each module's series gain a ``module`` label, and
what would make two registries export one series is refused, when the
registries join and whenever either creates a metric or series later, with
a MetricError naming both owners: a metric name unless each labels it with
a module, and within a name a ``module`` label value another registry's
series carry (a module's series labelled by hand with another's name).
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol

from pepperpy_core.errors import MetricError
from pepperpy_core.kinds import KINDS, Kind, samples

__all__ = [
    "CONTENT_TYPES",
    "Exposition",
    "Format",
    "negotiate",
]

Format = Literal["prometheus", "openmetrics"]

#: The Content-Type of each format.
CONTENT_TYPES: Final[dict[Format, str]] = {
    "prometheus": "text/plain; version=0.0.4; charset=utf-8",
    "openmetrics": "application/openmetrics-text; version=1.0.0; charset=utf-8",
}
#: Appends the sample lines of a family's series to a list (see
#: ``kinds.samples``): kind, (label values, metric) pairs, the cached prefixes
#: per series, how to make those of a new series (None: leave it out), the
#: list, and whether to append them UTF-8 encoded (bytes) or as a str.
SampleWriter = Callable[
    [
        Kind,
        Iterable[tuple[tuple[str, ...], Any]],
        dict[tuple[str, ...], tuple[str, ...]],
        Callable[[tuple[str, ...]], tuple[str, ...] | None],
        list[Any],
        bool,
    ],
    None,
]
_log: Final = logging.getLogger("pepperpy_core.metrics")
#: Family name, label names and claims are checked under this one lock (by
#: expositions and by the registries they export), so that two registries of
#: one exposition cannot both win a name.
CLAIMS_LOCK: Final = threading.Lock()


@dataclass(eq=False)
class Family:
    """One metric name in a registry: its kind, label names, buckets, and a
    child metric per tuple of label values."""

    name: str
    kind: Kind
    description: str
    label_names: tuple[str, ...]
    buckets: tuple[float, ...]
    children: dict[tuple[str, ...], Any] = field(default_factory=dict)
    #: Rendered sample-name-and-labels prefixes per child, per extra label text.
    lines: dict[str, dict[tuple[str, ...], tuple[str, ...]]] = field(default_factory=dict)
    #: Writes the sample lines of its series (``kinds.samples`` or its Rust
    #: twin): the registry that made the family gives its backend's.
    render: SampleWriter | None = None
    #: Whether text that UTF-8 cannot encode was found here (logged once).
    unencodable: bool = False
    #: A gauge's mode: how a shared registry combines the processes' values.
    mode: str = "sum"

    @property
    def sample_base(self) -> str:
        """The family name the formats use (a counter's, without ``_total``)."""
        return KINDS[self.kind].sample_base(self.name)


# --- text ------------------------------------------------------------------------


def encodable(text: str) -> bool:
    """Whether UTF-8 can encode ``text`` (it holds no lone surrogate)."""
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def utf8(value: str, what: str) -> str:
    """``value`` if UTF-8 can encode it, else MetricError naming ``what``: a
    str bound for the exposition is checked where it enters, so that one bad
    value cannot make every later export fail."""
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError as error:
            raise MetricError(
                f"{what} {value!r} cannot be exported: UTF-8 cannot encode "
                f"{value[error.start]!r} at index {error.start} (a lone surrogate, as "
                "os.fsdecode() makes of undecodable bytes); decode it with "
                "errors='replace' or 'backslashreplace' first"
            ) from None
    return value


def _unencodable(family: Family, what: str) -> None:
    if not family.unencodable:
        family.unencodable = True
        _log.error(
            "metric %r: UTF-8 cannot encode %s, left out of the exposition "
            "(logged once per metric)",
            family.name,
            what,
        )


def escape_label(value: str) -> str:
    """A label value escaped for both formats."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str, fmt: Format) -> str:
    text = text.replace("\\", "\\\\").replace("\n", "\\n")
    return text.replace('"', '\\"') if fmt == "openmetrics" else text


def _prefixes(family: Family, values: tuple[str, ...], extra: str) -> tuple[str, ...] | None:
    """The text before each of a child's sample values; None when UTF-8
    cannot encode its labels."""
    pairs = [f'{k}="{escape_label(v)}"' for k, v in zip(family.label_names, values, strict=True)]
    if extra:
        pairs.insert(0, extra)
    inner = ",".join(pairs)
    if not encodable(inner):
        return None
    return KINDS[family.kind].prefixes(family.name, inner, family.buckets)


def default_help(family: Family) -> str:
    """The help text of a family made without one, from its kind and name
    (``timer("checkout")``: "Durations of checkout, in seconds.")."""
    return KINDS[family.kind].default_help(family.name)


def _header(out: list[Any], family: Family, description: str, fmt: Format, encoded: bool) -> None:
    name = KINDS[family.kind].header_name(family.name, fmt == "openmetrics")
    if description and not encodable(description):
        _unencodable(family, "its help text")
        description = ""
    # promtool, and people, want every family described.
    description = description or default_help(family)
    text = f"# HELP {name} {_escape_help(description, fmt)}\n# TYPE {name} {family.kind}\n"
    out.append(text.encode() if encoded else text)


def _samples(
    out: list[Any],
    family: Family,
    children: Iterable[tuple[tuple[str, ...], Any]],
    extra: str,
    encoded: bool,
) -> None:
    if extra and "module" in family.label_names:
        extra = ""  # the series name their module already
    cache = family.lines.get(extra)
    if cache is None:
        cache = family.lines[extra] = {}

    def make(values: tuple[str, ...]) -> tuple[str, ...] | None:
        prefixes = _prefixes(family, values, extra)
        if prefixes is None:  # never cached: the rest of the scrape goes on
            _unencodable(family, "a series' labels")
        return prefixes

    (family.render or samples)(family.kind, children, cache, make, out, encoded)


#: Each family with a copy of its children: a dict, not a list of pairs, so
#: that a scrape of many series leaves no garbage for the collector to scan.
Snapshot = list[tuple[Family, dict[tuple[str, ...], Any]]]


Sources = Sequence[tuple[Snapshot, str]]


def render(sources: Sources, fmt: Format) -> str:
    """The text of several registries' snapshots, each with its extra label
    text (``module="db"``, or empty), families of one name merged."""
    (parts,) = _render(sources, fmt, None, encoded=False)
    return "".join(parts)


def render_chunks(sources: Sources, fmt: Format, lines: int | None = None) -> Iterator[bytes]:
    """``render``'s text, UTF-8 encoded, in pieces of about ``lines`` lines
    each (a family's series are split between pieces), or in one piece;
    metric values are read as each piece is made. A server renders a big
    registry piece by piece, answering other requests in between, and sends
    the pieces as they are."""
    for parts in _render(sources, fmt, lines, encoded=True):
        yield b"".join(parts)


def _render(
    sources: Sources, fmt: Format, lines: int | None, *, encoded: bool
) -> Iterator[list[Any]]:
    """``render_chunks``' pieces, each as the parts the writers made: bytes
    if ``encoded``, else str."""
    merged: dict[str, list[tuple[Family, dict[tuple[str, ...], Any], str]]] = {}
    for snapshot, extra in sources:
        for family, children in snapshot:
            merged.setdefault(family.name, []).append((family, children, extra))
    out: list[Any] = []
    buffered = 0  # lines in out
    for parts in merged.values():
        first = parts[0][0]
        for other, _, _ in parts[1:]:
            if other.kind != first.kind:  # claims prevent this in an Exposition
                raise MetricError(
                    f"metric {first.name!r} is a {first.kind} in one registry and a "
                    f"{other.kind} in another"
                )
        description = next((f.description for f, _, _ in parts if f.description), "")
        _header(out, first, description, fmt, encoded)
        buffered += 2
        for family, children, extra in parts:
            if lines is None:
                _samples(out, family, children.items(), extra, encoded)
                continue
            per_series = KINDS[family.kind].lines_per_series(family.buckets)
            step = max(1, lines // per_series)
            items = iter(children.items())
            for start in range(0, len(children), step):
                _samples(out, family, itertools.islice(items, step), extra, encoded)
                # (counted, not scanned for: a series left out counts too)
                buffered += min(step, len(children) - start) * per_series
                if buffered >= lines:
                    yield out
                    out = []
                    buffered = 0
    if fmt == "openmetrics":
        out.append(b"# EOF\n" if encoded else "# EOF\n")
    yield out


# --- content negotiation --------------------------------------------------------


def _ranges(accept: str) -> Iterator[tuple[str, dict[str, str], float]]:
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        values: dict[str, str] = {}
        for param in params:
            key, _, value = param.partition("=")
            values[key.strip().lower()] = value.strip().strip('"')
        try:
            q = float(values.pop("q", "1"))
        except ValueError:
            q = 0.0
        if not math.isfinite(q):
            q = 0.0
        yield media.lower(), values, q


def negotiate(accept: str | None) -> Format:
    """The format an Accept header prefers: OpenMetrics 1.0.0 when it ranks
    that highest, else the text format 0.0.4 (also for no header, ``*/*``,
    or only types this server cannot produce)."""
    best: tuple[float, Format] = (0.0, "prometheus")
    for media, params, q in _ranges(accept or ""):
        version = params.get("version")
        if media == "application/openmetrics-text" and version in (None, "1.0.0"):
            wanted: Format = "openmetrics"
        elif media in ("text/plain", "text/*", "*/*") and version in (None, "0.0.4"):
            wanted = "prometheus"
        else:
            continue
        if q > best[0]:
            best = (q, wanted)
    return best[1]


# --- several registries as one ----------------------------------------------------


class Exported(Protocol):
    """A registry an Exposition exports (a MetricsRegistry): its series, and
    the hooks through which it has every new family and series checked by
    the expositions it is part of."""

    def collect(self) -> Snapshot:
        """Run the collectors, then copy every family's series."""
        ...

    def _join(self, group: Exposition, member: _Member) -> None: ...
    def _leave(self, group: Exposition) -> None: ...


@dataclass(eq=False)
class _Member:
    registry: Exported
    owner: str  # "module 'db'", "the application", ...
    module: str | None  # the module label its unlabelled series gain
    extra: str  # that label as text, or ""
    exclusive: bool  # its metric names may not appear in another registry

    def modules(self, family: Family, children: Iterable[tuple[str, ...]]) -> Iterator[str]:
        """The ``module`` label values these series of ``family`` carry here."""
        if "module" in family.label_names:
            at = family.label_names.index("module")
            return (values[at] for values in children)
        return iter(() if self.module is None else (self.module,))


@dataclass(frozen=True)
class _Claim:
    member: _Member
    kind: Kind
    label_names: frozenset[str]
    labelled: bool  # its series name their module


class Exposition:
    """Several registries exported as one (see this module's doc). Call
    ``close()`` to release the registries."""

    def __init__(self) -> None:
        self._members: list[_Member] = []
        self._names: dict[str, list[_Claim]] = {}  # family name -> claims
        self._samples: dict[str, str] = {}  # sample name -> family name
        #: (family name, module label value) -> the member whose series carry it
        self._modules: dict[tuple[str, str], _Member] = {}
        self._closed = False

    def add(
        self,
        registry: Exported,
        owner: str,
        *,
        module: str | None = None,
        exclusive: bool = False,
    ) -> None:
        """Export ``registry`` too, as ``owner``; with ``module``, every
        series without a ``module`` label gains ``module="<module>"``.
        MetricError naming both owners if it would export a metric name that
        another registry here exports differently, or a series another
        exports too; then nothing is added."""
        if self._closed:
            raise RuntimeError("this exposition is closed")
        if any(m.registry is registry for m in self._members):
            raise ValueError(f"{owner}'s registry is already exported here")
        if module is not None:
            if not isinstance(module, str):
                raise TypeError(f"module must be a str, not {type(module).__name__}")
            utf8(module, "the module name")
        extra = f'module="{escape_label(module)}"' if module is not None else ""
        member = _Member(registry, owner, module, extra, exclusive)
        registry._join(self, member)
        self._members.append(member)

    def close(self) -> None:
        """Detach from every registry; their later metrics are not checked here."""
        self._closed = True
        for member in self._members:
            member.registry._leave(self)
        self._members.clear()
        with CLAIMS_LOCK:
            self._names.clear()
            self._samples.clear()
            self._modules.clear()

    def render(self, fmt: Format = "prometheus") -> str:
        """Every registry's metrics in ``fmt``, after running their collectors."""
        return render(self.collect(), fmt)

    def collect(self) -> list[tuple[Snapshot, str]]:
        """Run every registry's collectors and copy its families, for
        ``render`` or ``render_chunks``."""
        return [(m.registry.collect(), m.extra) for m in self._members]

    # Called by registries, with CLAIMS_LOCK held, for a new family (with its
    # series) or a new series of a family that has a module label.

    def _check(self, member: _Member, family: Family, children: Iterable[tuple[str, ...]]) -> None:
        kind, name = family.kind, family.name
        claim = self._claim(member, kind, family.label_names)
        for sample in KINDS[kind].series_names(name):
            found = self._samples.get(sample)
            if found is not None and found != name:
                other = self._names[found][0]
                raise MetricError(
                    f"{member.owner}'s {kind} {name!r} and {other.member.owner}'s "
                    f"{other.kind} {found!r} would both expose the series {sample!r}"
                )
        for other in self._names.get(name, ()):
            if other.member is member:
                continue
            if not (
                claim.labelled
                and other.labelled
                and claim.kind == other.kind
                and claim.label_names == other.label_names
            ):
                raise MetricError(
                    f"{member.owner} and {other.member.owner} would both export the "
                    f"metric {name!r} ({kind} labelled {sorted(claim.label_names)} and "
                    f"{other.kind} labelled {sorted(other.label_names)}); two registries "
                    "may share a metric name only when each labels it with its module"
                )
        # Sharing a name is safe only while each module label value (and so
        # each series) comes from one registry: a series labelled by hand with
        # another module's name would be exported twice.
        for module in member.modules(family, children):
            owner = self._modules.get((name, module))
            if owner is not None and owner is not member:
                raise MetricError(
                    f"{member.owner} and {owner.owner} would both export the metric "
                    f"{name!r} labelled module={module!r} (the same series twice); a "
                    "module label value belongs to one registry per metric"
                )

    def _commit(self, member: _Member, family: Family, children: Iterable[tuple[str, ...]]) -> None:
        name = family.name
        claims = self._names.setdefault(name, [])
        if not any(c.member is member for c in claims):
            claims.append(self._claim(member, family.kind, family.label_names))
        for sample in KINDS[family.kind].series_names(name):
            self._samples[sample] = name
        for module in member.modules(family, children):
            self._modules.setdefault((name, module), member)

    @staticmethod
    def _claim(member: _Member, kind: Kind, label_names: Sequence[str]) -> _Claim:
        names = set(label_names)
        if member.extra:
            names.add("module")
        labelled = "module" in names and not member.exclusive
        return _Claim(member, kind, frozenset(names), labelled)
