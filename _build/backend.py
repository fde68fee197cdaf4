"""The build backend of pepperpy-core (PEP 517), in the repository.

By default it is maturin: the wheel carries the Rust extension, built for
this Python. Two settings change that (``pip install . -C NAME=true``, or the
environment variable in brackets):

- ``pure`` (``PEPPERPY_CORE_PURE=1``): a pure-Python wheel
  (``py3-none-any``) with the fallback backend only. It needs no Rust, no
  compiler and no build requirement at all, so it also builds offline.
- ``abi3`` (``PEPPERPY_CORE_ABI3=1``): one native wheel for CPython 3.11 and
  later (the stable ABI); the cache's reads are 13-17% slower than with the
  default per-version build (see benches/README.md).

Without a usable Rust toolchain the default build stops before anything is
downloaded, with an error whose first lines say what to do: install Rust or
ask for the pure wheel. (Left to itself, maturin would fetch a whole Rust
toolchain, some 660 MB, into a temporary directory.)

Only the standard library is used here: the pure build must work with
nothing installed.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "pepperpy_core"
MATURIN = "maturin>=1.7,<2"
#: The oldest Rust the extension builds with (Cargo.toml's rust-version).
RUST_VERSION = (1, 85)


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
        "  * install the pure-Python backend, which needs no Rust (and works offline):\n"
        "        pip install . --config-settings=pure=true\n"
        "    (or set PEPPERPY_CORE_PURE=1); it is the same API, slower on the hot paths;\n"
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


def _maturin_settings(config_settings: Mapping[str, Any] | None) -> dict[str, Any]:
    settings = {k: v for k, v in (config_settings or {}).items() if k not in ("pure", "abi3")}
    if _wants(config_settings, "abi3"):
        extra = settings.get("build-args", "")
        settings["build-args"] = f"{extra} --features pyo3/abi3-py311".strip()
    return settings


def _maturin() -> Any:
    os.environ["MATURIN_NO_INSTALL_RUST"] = "1"  # never fetch a toolchain behind the user's back
    return importlib.import_module("maturin")  # a build requirement, installed by then


# --- the PEP 517 hooks ------------------------------------------------------------------


def get_requires_for_build_wheel(config_settings: Mapping[str, Any] | None = None) -> list[str]:
    if _wants(config_settings, "pure"):
        return []
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
        return _pure_wheel(Path(wheel_directory), editable=False)
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
        return _pure_wheel(Path(wheel_directory), editable=True)
    _check_toolchain()
    name: str = _maturin().build_editable(
        wheel_directory, _maturin_settings(config_settings), metadata_directory
    )
    return name


def build_sdist(sdist_directory: str, config_settings: Mapping[str, Any] | None = None) -> str:
    name: str = _maturin().build_sdist(sdist_directory, config_settings)
    return name


# --- the pure wheel -----------------------------------------------------------------------


def _project() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        project: dict[str, Any] = tomllib.load(f)["project"]
    return project


def _metadata(project: dict[str, Any]) -> str:
    lines = [
        "Metadata-Version: 2.4",
        f"Name: {project['name']}",
        f"Version: {project['version']}",
        f"Summary: {project['description']}",
        f"Requires-Python: {project['requires-python']}",
        f"License-Expression: {project['license']}",
    ]
    lines += [f"License-File: {name}" for name in project.get("license-files", [])]
    lines += [f"Classifier: {c}" for c in project.get("classifiers", [])]
    lines += [f"Requires-Dist: {d}" for d in project.get("dependencies", [])]
    for extra, requirements in project.get("optional-dependencies", {}).items():
        lines.append(f"Provides-Extra: {extra}")
        lines += [f'Requires-Dist: {r}; extra == "{extra}"' for r in requirements]
    lines.append("Description-Content-Type: text/markdown")
    readme: str = (ROOT / str(project["readme"])).read_text(encoding="utf-8")
    return "\n".join(lines) + "\n\n" + readme


def _sources() -> Iterator[tuple[str, Path]]:
    """(path in the wheel, file) for every file of the package but the built extension."""
    base = ROOT / "python"
    for path in sorted((base / PACKAGE).rglob("*")):
        if path.is_dir() or "__pycache__" in path.parts:
            continue
        if path.suffix in (".so", ".pyd", ".dylib") or path.suffix == ".pyc":
            continue
        yield path.relative_to(base).as_posix(), path


def _pure_wheel(directory: Path, *, editable: bool) -> str:
    project = _project()
    name = project["name"].replace("-", "_")
    version = project["version"]
    dist_info = f"{name}-{version}.dist-info"
    filename = f"{name}-{version}-py3-none-any.whl"
    files: list[tuple[str, bytes]] = []
    if editable:  # the sources stay where they are: a .pth points at them
        files.append((f"_{name}_editable.pth", f"{ROOT / 'python'}\n".encode()))
    else:
        files += [(arcname, path.read_bytes()) for arcname, path in _sources()]
    files.append((f"{dist_info}/METADATA", _metadata(project).encode()))
    for license_file in project.get("license-files", []):
        files.append((f"{dist_info}/licenses/{license_file}", (ROOT / license_file).read_bytes()))
    scripts = project.get("scripts", {})
    if scripts:
        entries = "".join(f"{k} = {v}\n" for k, v in scripts.items())
        files.append((f"{dist_info}/entry_points.txt", f"[console_scripts]\n{entries}".encode()))
    wheel = (
        "Wheel-Version: 1.0\nGenerator: pepperpy-core _build/backend.py\n"
        "Root-Is-Purelib: true\nTag: py3-none-any\n"
    )
    files.append((f"{dist_info}/WHEEL", wheel.encode()))
    record = [f"{arcname},sha256={_digest(data)},{len(data)}" for arcname, data in files]
    record.append(f"{dist_info}/RECORD,,")
    files.append((f"{dist_info}/RECORD", ("\n".join(record) + "\n").encode()))
    directory.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(directory / filename, "w", zipfile.ZIP_DEFLATED) as archive:
        for arcname, data in files:
            info = zipfile.ZipInfo(arcname, date_time=(2026, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return filename


def _digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
