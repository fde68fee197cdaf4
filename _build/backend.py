"""The build backend of pepperpy-core (PEP 517), in the repository.

By default it is maturin: the wheel carries the Rust extension, built for
this Python. Two settings change that (``pip install . -C NAME=true``, or the
environment variable in brackets):

- ``pure`` (``PEPPERPY_CORE_PURE=1``): a pure-Python wheel
  (``py3-none-any``) with the fallback backend only, built by hatchling. It
  needs no Rust and no compiler; its one build requirement, hatchling, comes
  from the package index or, offline, from a local directory of wheels.
- ``abi3`` (``PEPPERPY_CORE_ABI3=1``): one native wheel for CPython 3.11 and
  later (the stable ABI); the cache's reads are 13-17% slower than with the
  default per-version build (see benches/README.md).

Both wheels take their metadata from pyproject.toml alone; this module only
chooses the backend. Without a usable Rust toolchain the default build stops
before anything is downloaded, with an error whose first lines say what to
do: install Rust or ask for the pure wheel. (Left to itself, maturin would
fetch a whole Rust toolchain, some 660 MB, into a temporary directory.)

Only the standard library is imported here: maturin or hatchling is imported
once the frontend has installed it, as the build requirement asked for.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

MATURIN = "maturin>=1.7,<2"
#: 1.27 writes PEP 639 license metadata (License-Expression, License-File).
HATCHLING = "hatchling>=1.27,<2"
#: The oldest Rust the extension builds with (Cargo.toml's rust-version).
RUST_VERSION = (1, 89)


def _wants(config_settings: Mapping[str, Any] | None, name: str) -> bool:
    value = (config_settings or {}).get(name)
    if value is None:
        value = os.environ.get(f"PEPPERPY_CORE_{name.upper()}", "")
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def _refuse(problem: str) -> None:
    """Stop the build with what to do first, then why."""
    sys.stderr.write(
        "\n"
        "pepperpy-core cannot build its Rust extension here: "
        f"{problem}\n"
        "Either:\n"
        "  * install the pure-Python backend, which needs no Rust:\n"
        "        pip install . --config-settings=pure=true\n"
        "    (or set PEPPERPY_CORE_PURE=1); it is the same API, slower on the hot paths.\n"
        "    Its build requirement, hatchling, comes from the package index; offline,\n"
        "    add --no-index --find-links DIR, DIR holding wheels of hatchling (and its\n"
        "    dependencies) and of packaging;\n"
        "  * or install Rust "
        f"{RUST_VERSION[0]}.{RUST_VERSION[1]} or later (https://rustup.rs) "
        "and a C linker (cc), then run the same pip command again.\n"
        "\n"
    )
    raise SystemExit(1)


def _check_toolchain() -> None:
    cargo = shutil.which("cargo")
    if cargo is None:
        _refuse("no Rust toolchain (`cargo` is not on PATH).")
        return
    try:
        found = subprocess.run(
            ["rustc", "--version"], capture_output=True, text=True, check=True, timeout=60
        ).stdout
    except (OSError, subprocess.SubprocessError) as error:
        _refuse(f"`rustc --version` failed ({error}).")
        return
    match = re.search(r"(\d+)\.(\d+)", found)
    if match is None or (int(match[1]), int(match[2])) < RUST_VERSION:
        _refuse(f"{found.strip() or 'rustc'} is older than {RUST_VERSION[0]}.{RUST_VERSION[1]}.")
    if sys.platform != "win32" and shutil.which("cc") is None:
        _refuse("no C linker (`cc` is not on PATH); Rust needs one to link the extension.")


def _own_settings_removed(config_settings: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (config_settings or {}).items() if k not in ("pure", "abi3")}


def _maturin_settings(config_settings: Mapping[str, Any] | None) -> dict[str, Any]:
    settings = _own_settings_removed(config_settings)
    if _wants(config_settings, "abi3"):
        extra = settings.get("build-args", "")
        settings["build-args"] = f"{extra} --features pyo3/abi3-py311".strip()
    return settings


def _maturin() -> Any:
    os.environ["MATURIN_NO_INSTALL_RUST"] = "1"  # never fetch a toolchain behind the user's back
    return importlib.import_module("maturin")  # a build requirement, installed by then


def _hatchling() -> Any:
    # Its wheel target is configured in pyproject.toml ([tool.hatch.build.targets.wheel]).
    return importlib.import_module("hatchling.build")  # a build requirement, installed by then


# --- the PEP 517 hooks ------------------------------------------------------------------


def get_requires_for_build_wheel(config_settings: Mapping[str, Any] | None = None) -> list[str]:
    if _wants(config_settings, "pure"):
        return [HATCHLING]
    _check_toolchain()
    return [MATURIN]


def get_requires_for_build_editable(
    config_settings: Mapping[str, Any] | None = None,
) -> list[str]:
    return get_requires_for_build_wheel(config_settings)


def get_requires_for_build_sdist(config_settings: Mapping[str, Any] | None = None) -> list[str]:
    return [MATURIN]


def build_wheel(
    wheel_directory: str,
    config_settings: Mapping[str, Any] | None = None,
    metadata_directory: str | None = None,
) -> str:
    if _wants(config_settings, "pure"):
        pure: str = _hatchling().build_wheel(
            wheel_directory, _own_settings_removed(config_settings), metadata_directory
        )
        return pure
    _check_toolchain()
    name: str = _maturin().build_wheel(
        wheel_directory, _maturin_settings(config_settings), metadata_directory
    )
    return name


def build_editable(
    wheel_directory: str,
    config_settings: Mapping[str, Any] | None = None,
    metadata_directory: str | None = None,
) -> str:
    if _wants(config_settings, "pure"):
        pure: str = _hatchling().build_editable(
            wheel_directory, _own_settings_removed(config_settings), metadata_directory
        )
        return pure
    _check_toolchain()
    name: str = _maturin().build_editable(
        wheel_directory, _maturin_settings(config_settings), metadata_directory
    )
    return name


def build_sdist(sdist_directory: str, config_settings: Mapping[str, Any] | None = None) -> str:
    name: str = _maturin().build_sdist(sdist_directory, config_settings)
    return name
