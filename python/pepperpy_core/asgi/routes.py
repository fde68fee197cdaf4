"""Which route template a request matched, read from what routers leave in
the ASGI scope, never from the raw path.

Starlette's convention (FastAPI's too): a router that matches a route sets
``scope["route"]`` to it, whose ``path_format`` is the template relative to
the router (``/items/{id}``), and a mount adds the part of the path it took
to ``scope["root_path"]``. When no mount was crossed, the template is the
route's; when one was, the mounts' own templates are found by matching the
taken part against the mounts of the router the request entered
(``scope["router"]``), so that a mount with parameters
(``/users/{uid}``) gives its template and not the user's id. A mounted app
that is no router gives ``<mount>/{path}``; the probes app of this package
names its endpoints like a router does. Anything else (no route, or a mount
that cannot be explained) is ``UNMATCHED``: one value, whatever the path.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from pepperpy_core.asgi.types import Scope

__all__ = ["UNMATCHED", "Route", "template"]

#: The route label of a request no route matched (404s, a scanner's paths).
UNMATCHED: Final = "unmatched"
_TAIL: Final = "/{path}"


class Route:
    """A route as routers leave it in ``scope["route"]``: its template."""

    __slots__ = ("path_format",)

    def __init__(self, path_format: str) -> None:
        self.path_format = path_format

    def __repr__(self) -> str:
        return f"Route({self.path_format!r})"


def template(scope: Scope, path: str, root: str, mounted: dict[tuple[str, int], Any]) -> str:
    """The template of the route ``scope`` was answered by, relative to
    ``root`` (the root path when the request entered), for a request to
    ``path`` (its path then); ``mounted`` remembers mounts without
    parameters, per (taken prefix, id of the route)."""
    route = scope.get("route")
    found = getattr(route, "path_format", None) if route is not None else None
    after = scope.get("root_path", "")
    if after == root:
        return found if isinstance(found, str) else UNMATCHED
    if not after.startswith(root):
        return UNMATCHED
    prefix = after[len(root) :]
    key = (prefix, id(route))
    known = mounted.get(key)
    if known is not None and known[0] is route:
        return str(known[1])
    if path.startswith(root):
        path = path[len(root) :]
    routes = getattr(scope.get("router"), "routes", None)
    chain = _mounts(routes, path, prefix) if routes is not None else None
    if chain is None:
        return UNMATCHED
    head, innermost = chain
    # A mounted app that named no route of its own: the mount's whole tail.
    own = isinstance(found, str) and route is not innermost
    label = head + (found if own and isinstance(found, str) else _TAIL)
    if head == prefix:  # no parameters: the same prefix always gives this label
        mounted[key] = (route, label)
    return label


def _mounts(routes: Iterable[Any], path: str, prefix: str) -> tuple[str, object] | None:
    """The templates of the mounts that took ``prefix`` off ``path``, joined,
    and the innermost of them; None if no chain of mounts did."""
    for route in routes:
        found = getattr(route, "path_format", None)
        regex = getattr(route, "path_regex", None)
        if not isinstance(found, str) or not found.endswith(_TAIL) or regex is None:
            continue
        match = regex.match(path)
        if match is None:
            continue
        tail = match.groupdict().get("path")
        rest = "" if tail is None else "/" + tail
        taken = path[: len(path) - len(rest)]
        if not taken or not prefix.startswith(taken):
            continue
        head = found[: -len(_TAIL)]
        if taken == prefix:
            return head, route
        inner = _mounts(getattr(route, "routes", None) or (), rest, prefix[len(taken) :])
        if inner is not None:
            return head + inner[0], inner[1]
    return None
