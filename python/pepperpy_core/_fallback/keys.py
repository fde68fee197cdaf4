"""How the pure-Python FIFOCache stores a key (see ``cache.py``).

A *plain* key, whose hash and ``==`` are C code that can neither call Python
nor warn (exact str, int, float, bool, None, and tuples of those), is its own
dict key. Any other key is stored under a wrapper tuple ``(_WRAPPED, hash,
holder)``, whose hash and ``==`` are C code too.

A key that is not plain may still equal a stored plain key (an IntEnum member
and the int it stands for). The dict finds that entry by the key itself but
cannot say which stored key it matched; any plain object equal to that stored
key serves as well, since dict operations go by equality. ``plain_form``
computes one without running Python code.
"""

from __future__ import annotations

from types import BuiltinFunctionType, MethodDescriptorType, WrapperDescriptorType
from typing import Any, Final, cast


class _Holder:
    """Holds a key that is not plain; equal only to itself (C-level identity)."""

    __slots__ = ("key",)

    def __init__(self, key: object) -> None:
        self.key = key


#: First item of a wrapper tuple.
WRAPPED: Final = _Holder(None)
_PLAIN: Final = frozenset({str, int, float, bool, type(None)})
#: Methods written in C: calling one on an instance runs no Python code of its class.
_C_METHODS: Final = (WrapperDescriptorType, MethodDescriptorType, BuiltinFunctionType)

#: A wrapper tuple: (WRAPPED, the key's hash when stored, _Holder(key)).
Wrapper = tuple[_Holder, int, _Holder]


def wrap(key: object, hashed: int) -> Wrapper:
    """The wrapper tuple a key that is not plain is stored under."""
    return (WRAPPED, hashed, _Holder(key))


def is_plain(key: object) -> bool:
    """Whether hashing ``key`` and comparing it with any stored dict key is C
    code that cannot run Python or warn."""
    kind = type(key)
    if kind in _PLAIN:
        return True
    if kind is tuple:
        for item in cast("tuple[object, ...]", key):  # noqa: SIM110 - all() over a generator is slower
            if not is_plain(item):
                return False
        return True
    return False


def is_wrapper(dkey: object) -> bool:
    return type(dkey) is tuple and len(dkey) == 3 and dkey[0] is WRAPPED


def key_of(dkey: object) -> Any:
    """The key a dict key stands for."""
    return cast("Wrapper", dkey)[2].key if is_wrapper(dkey) else dkey


def plain_form(key: object) -> object | None:
    """A plain object that may equal ``key`` (which is not plain), read
    without running Python code: a str, int or float subclass's own value
    (through the builtin type's C method, whatever the subclass overrides), a
    tuple subclass's items made plain, or what a ``__index__`` or
    ``__float__`` written in C returns (numpy-like scalars, Decimal). None
    when there is none. The caller checks that it is stored and ``== key``."""
    kind = type(key)
    try:
        if issubclass(kind, str):
            return str.__str__(cast("str", key))
        if issubclass(kind, int):
            return int.__index__(cast("int", key))
        if issubclass(kind, float):
            return float.__float__(cast("float", key))
        if issubclass(kind, tuple):
            if _method(kind, "__iter__") is not tuple.__iter__:
                return None
            whole = cast("tuple[object, ...]", key)
            items = [item if is_plain(item) else plain_form(item) for item in tuple.__iter__(whole)]
            return None if any(item is None for item in items) else tuple(items)
        for name in ("__index__", "__float__"):
            method = _method(kind, name)
            if isinstance(method, _C_METHODS):
                made = method(key)
                return made if is_plain(made) else None
    except Exception:  # a stand-in that cannot be made only means a slower search
        return None
    return None


def _method(kind: type, name: str) -> object:
    """What ``kind`` defines or inherits as ``name``, found without running
    any descriptor or ``__getattr__``."""
    for klass in kind.__mro__:
        found = vars(klass).get(name)
        if found is not None:
            return found
    return None
