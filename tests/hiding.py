"""Make packages unimportable for one test: what a user without an extra sees."""

from __future__ import annotations

import builtins
import sys
from typing import Any

import pytest


def hide(monkeypatch: pytest.MonkeyPatch, *packages: str) -> None:
    """Importing any of ``packages`` (or their submodules) raises ImportError
    until the test ends; those already imported are forgotten meanwhile."""
    real_import = builtins.__import__

    def hidden(name: str) -> bool:
        return any(name == p or name.startswith(f"{p}.") for p in packages)

    def guarded(name: str, *args: Any, **kwargs: Any) -> Any:
        if hidden(name):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", guarded)
    for name in [n for n in sys.modules if hidden(n)]:
        monkeypatch.delitem(sys.modules, name)
