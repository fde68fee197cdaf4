"""How a remote cache turns values into bytes and back.

Every stored value starts with one byte naming its encoding, so a reader
knows what it holds and never guesses:

- ``JSON`` (the default) stores JSON values (dict with str keys, list, str,
  int, float, bool, None) as JSON text and ``bytes`` as they are. A value
  that JSON would not give back equal (a tuple, a set, a dict with int keys,
  NaN, an object) is refused with a TypeError before anything is written.
- ``PICKLE`` stores any picklable value. Only choose it when everyone who can
  write to the server is trusted: unpickling runs code the bytes name, so
  whoever can write a key can run code in every process that reads it.

A reader that finds bytes it cannot decode (another encoding, a tag it does
not know, a truncated value, JSON nested too deep to parse, a NaN JSON would
not have written) raises ``CorruptValueError``; caches treat it as a miss
and log it. What a writer refuses, a reader refuses too.
"""

from __future__ import annotations

import json
import pickle
from typing import Any, Final, Protocol

from pepperpy_core.errors import CorruptValueError

__all__ = ["JSON", "PICKLE", "CorruptValueError", "Serializer"]

_JSON_TAG: Final = b"j"
_BYTES_TAG: Final = b"b"
_PICKLE_TAG: Final = b"p"


class Serializer(Protocol):
    """Turns a value into bytes (TypeError if it cannot) and back
    (CorruptValueError for bytes it cannot read)."""

    def dumps(self, value: Any) -> bytes: ...
    def loads(self, data: bytes) -> Any: ...


class _Json:
    """JSON values as JSON text, bytes as bytes (see the module's doc)."""

    def dumps(self, value: Any) -> bytes:
        if isinstance(value, bytes):
            return _BYTES_TAG + value
        try:
            text = json.dumps(value, allow_nan=False, separators=(",", ":"))
        except RecursionError:
            raise TypeError(
                f"{type(value).__name__} value is nested too deep to store as JSON"
            ) from None
        except (TypeError, ValueError) as error:
            raise TypeError(
                f"cannot store {type(value).__name__} as JSON ({error}); store JSON values "
                "or bytes, or give the cache serializer=PICKLE if every writer is trusted"
            ) from None
        if type(value) not in (str, int, bool) and value is not None and json.loads(text) != value:
            raise TypeError(
                f"{type(value).__name__} value would not come back equal from JSON (tuples, "
                "sets and non-str dict keys change); convert it, or give the cache "
                "serializer=PICKLE if every writer is trusted"
            )
        return _JSON_TAG + text.encode()

    def loads(self, data: bytes) -> Any:
        tag, body = data[:1], data[1:]
        if tag == _BYTES_TAG:
            return bytes(body)
        if tag == _JSON_TAG:
            try:
                return json.loads(body, parse_constant=_refuse_constant)
            except RecursionError:
                raise CorruptValueError("stored JSON is nested too deep to read") from None
            except (ValueError, UnicodeDecodeError) as error:
                raise CorruptValueError(f"stored JSON does not parse: {error}") from None
        raise CorruptValueError(_unknown(tag))

    def __repr__(self) -> str:
        return "JSON"


def _refuse_constant(name: str) -> Any:
    """NaN and the infinities: JSON as this cache writes it never holds them."""
    raise ValueError(f"{name} is not a JSON value this cache writes")


class _Pickle:
    """Any picklable value (see the module's doc for why it is opt-in)."""

    def dumps(self, value: Any) -> bytes:
        if isinstance(value, bytes):
            return _BYTES_TAG + value
        try:
            return _PICKLE_TAG + pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as error:
            raise TypeError(f"cannot pickle {type(value).__name__}: {error}") from None

    def loads(self, data: bytes) -> Any:
        tag, body = data[:1], data[1:]
        if tag == _BYTES_TAG:
            return bytes(body)
        if tag == _PICKLE_TAG:
            try:
                return pickle.loads(body)  # the user chose pickle: see the module's doc
            except Exception as error:  # RecursionError too
                raise CorruptValueError(f"stored pickle does not load: {error!r}") from None
        if tag == _JSON_TAG:  # written by a JSON cache: still safe to read
            return _Json().loads(data)
        raise CorruptValueError(_unknown(tag))

    def __repr__(self) -> str:
        return "PICKLE"


def _unknown(tag: bytes) -> str:
    if not tag:
        return "the stored value is empty"
    return f"the stored value starts with {tag!r}, which names no encoding this cache reads"


#: The safe default: JSON values and bytes.
JSON: Final[Serializer] = _Json()
#: Any picklable value; only with trusted writers (see the module's doc).
PICKLE: Final[Serializer] = _Pickle()
