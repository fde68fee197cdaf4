"""The one place that decides which implementation backs the hot paths.

``PEPPERPY_CORE_BACKEND`` is ``auto`` (the default: the Rust extension when it
imports, else the pure-Python fallback), ``native`` (the extension or an
ImportError that says how to build it) or ``python`` (the fallback, without
importing the extension at all).
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Final, Literal

_CHOICES: Final = ("auto", "native", "python")


def _load() -> tuple[ModuleType | None, Literal["native", "python"]]:
    choice = os.environ.get("PEPPERPY_CORE_BACKEND", "auto").strip().lower() or "auto"
    if choice not in _CHOICES:
        raise ImportError(
            f"PEPPERPY_CORE_BACKEND must be one of {', '.join(_CHOICES)}, got {choice!r}"
        )
    if choice == "python":
        return None, "python"
    try:
        native = importlib.import_module("pepperpy_core._native")
    except ImportError as exc:
        if choice == "native":
            raise ImportError(
                "PEPPERPY_CORE_BACKEND=native but the Rust extension "
                "pepperpy_core._native is not built; install the package with "
                "`pip install .` (or `pip install -e .`) on a machine with a Rust "
                "toolchain, or set PEPPERPY_CORE_BACKEND=python"
            ) from exc
        return None, "python"
    return native, "native"


native, BACKEND = _load()
