"""The one ``cache`` that CachedModule and ResourceModule share.

Each capability that sizes or passes the cache records what it was asked for
*before* it calls ``super().__init__()``, and asks for the cache to be made
*after*: the first capability whose ``__init__`` finishes (the one nearest
BaseModule in the MRO) then sees every request, whatever the order of the
bases, and makes the cache once. Two requests that disagree (``maxsize=5``
and ``cache_size=10``, or a size, a policy or an expiry beside a ready
``cache=``) are a TypeError.
"""

from __future__ import annotations

from typing import Any, Final, Literal, get_args

from pepperpy_core._fallback.expiry import check_seconds
from pepperpy_core.cache import FIFOCache, S3FIFOCache

#: The size of the cache a module makes when nothing says otherwise.
DEFAULT_SIZE: Final = 1000
#: How the cache a module makes chooses what to keep (see the README's
#: "Which cache"): "fifo" (the default) or "s3fifo".
Policy = Literal["fifo", "s3fifo"]
POLICIES: Final[dict[str, type[Any]]] = {"fifo": FIFOCache, "s3fifo": S3FIFOCache}
_ATTRIBUTE: Final = "_pepperpy_cache_request"


class _Request:
    __slots__ = ("cache", "done", "made", "settings", "sizes")

    def __init__(self) -> None:
        self.sizes: dict[str, int] = {}  # argument name -> size asked for
        # policy, ttl, tti -> what was asked for (only what was given)
        self.settings: dict[str, object] = {}
        self.cache: Any = None  # a ready cache passed in
        self.done = False  # the module has its cache
        self.made: Any = None  # the cache made from the sizes and settings, if one was


def _request(module: object) -> _Request:
    found: _Request | None = getattr(module, _ATTRIBUTE, None)
    if found is None:
        found = _Request()
        setattr(module, _ATTRIBUTE, found)
    return found


def _checked_settings(policy: object, ttl: object, tti: object) -> dict[str, object]:
    """The policy, ttl and tti given (None: not given), checked as the caches
    check them; ValueError or TypeError otherwise."""
    settings: dict[str, object] = {}
    if policy is not None:
        if not isinstance(policy, str) or policy not in POLICIES:
            raise (ValueError if isinstance(policy, str) else TypeError)(
                f"policy must be one of {', '.join(map(repr, get_args(Policy)))}, not {policy!r}"
            )
        settings["policy"] = policy
    for name, value in (("ttl", ttl), ("tti", tti)):
        if value is not None:
            settings[name] = check_seconds(value, name)
    return settings


def want_cache(
    module: object,
    argument: str,
    size: int | None,
    cache: Any = None,
    *,
    policy: object = None,
    ttl: object = None,
    tti: object = None,
) -> None:
    """Record that ``argument`` asked for a cache of ``size`` (or for the
    ready ``cache``), made with ``policy`` and expiring after ``ttl`` /
    ``tti``; TypeError (ValueError for a bad policy or duration), nothing
    recorded, if one is bad or another request disagrees."""
    request = _request(module)
    settings = _checked_settings(policy, ttl, tti)
    if settings and (cache is not None or request.cache is not None):
        given = ", ".join(f"{k}={v!r}" for k, v in settings.items())
        raise TypeError(
            f"{given} choose the cache the module makes, but a ready cache was passed "
            "too: give one or the other"
        )
    if cache is not None and request.settings:
        given = ", ".join(f"{k}={v!r}" for k, v in request.settings.items())
        raise TypeError(
            f"{given} choose the cache the module makes, but a ready cache was passed "
            "too: give one or the other"
        )
    if cache is not None:
        if not callable(getattr(cache, "get", None)):
            raise TypeError(
                f"cache must be a cache (a FIFOCache, a TieredCache...), not {type(cache).__name__}"
            )
        if request.cache is not None and request.cache is not cache:
            raise TypeError("two different caches were passed for the module's one cache")
    if size is not None:
        if cache is not None or request.cache is not None:
            raise TypeError(
                f"{argument}={size} sizes a cache the module makes, but a ready cache was "
                "passed too: give one or the other"
            )
        for other, wanted in request.sizes.items():
            if wanted != size:
                raise TypeError(
                    f"{argument}={size} and {other}={wanted} both size the module's one "
                    "cache: give one of them"
                )
    elif cache is not None and request.sizes:
        other, wanted = next(iter(request.sizes.items()))
        raise TypeError(
            f"{other}={wanted} sizes a cache the module makes, but a ready cache was "
            "passed too: give one or the other"
        )
    if cache is not None:
        request.cache = cache
    if size is not None:
        request.sizes[argument] = size
    request.settings.update(settings)


def make_cache(module: Any) -> Any:
    """Give ``module`` its ``cache`` from every request recorded, once (a
    ready one wins over one the subclass set before ``super().__init__()``);
    the cache made here while it is still the module's cache, else None."""
    request = _request(module)
    if not request.done:
        request.done = True
        if request.cache is not None:
            module.cache = request.cache
        elif not hasattr(module, "cache"):  # (not set by the subclass already)
            size = next(iter(request.sizes.values()), DEFAULT_SIZE)
            settings = request.settings
            kind = POLICIES[str(settings.get("policy", "fifo"))]
            expiry = {k: v for k, v in settings.items() if k != "policy"}
            module.cache = request.made = kind(size, **expiry)
    made = request.made
    return made if made is not None and made is getattr(module, "cache", None) else None
