"""The one ``cache`` that CachedModule and ResourceModule share.

Each capability that sizes or passes the cache records what it was asked for
*before* it calls ``super().__init__()``, and asks for the cache to be made
*after*: the first capability whose ``__init__`` finishes (the one nearest
BaseModule in the MRO) then sees every request, whatever the order of the
bases, and makes the cache once. Two requests that disagree (``maxsize=5``
and ``cache_size=10``, or a size beside a ready ``cache=``) are a TypeError.
"""

from __future__ import annotations

from typing import Any, Final

from pepperpy_core.cache import FIFOCache

#: The size of the cache a module makes when nothing says otherwise.
DEFAULT_SIZE: Final = 1000
_ATTRIBUTE: Final = "_pepperpy_cache_request"


class _Request:
    __slots__ = ("cache", "done", "made", "sizes")

    def __init__(self) -> None:
        self.sizes: dict[str, int] = {}  # argument name -> size asked for
        self.cache: Any = None  # a ready cache passed in
        self.done = False  # the module has its cache
        self.made: Any = None  # the FIFOCache made from the sizes, if one was


def _request(module: object) -> _Request:
    found: _Request | None = getattr(module, _ATTRIBUTE, None)
    if found is None:
        found = _Request()
        setattr(module, _ATTRIBUTE, found)
    return found


def want_cache(module: object, argument: str, size: int | None, cache: Any = None) -> None:
    """Record that ``argument`` asked for a cache of ``size`` (or for the
    ready ``cache``); TypeError, nothing recorded, if another request disagrees."""
    request = _request(module)
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


def make_cache(module: Any) -> Any:
    """Give ``module`` its ``cache`` from every request recorded, once (a
    ready one wins over one the subclass set before ``super().__init__()``);
    the FIFOCache made here while it is still the module's cache, else None."""
    request = _request(module)
    if not request.done:
        request.done = True
        if request.cache is not None:
            module.cache = request.cache
        elif not hasattr(module, "cache"):  # (not set by the subclass already)
            size = next(iter(request.sizes.values()), DEFAULT_SIZE)
            module.cache = request.made = FIFOCache(size)
    made = request.made
    return made if made is not None and made is getattr(module, "cache", None) else None
