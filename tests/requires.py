"""Skips for a missing system part (a binary, an apt package, an optional extra).

Such a skip is fine on a developer's machine that lacks the part, but CI installs everything, so
there (``CI=true``) the hook in tests/conftest.py turns any of these skips into a failed run.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest

MISSING_PART = "missing system part"


def skip_missing(part: str, hint: str = "") -> None:
    pytest.skip(f"{MISSING_PART}: {part}" + (f" ({hint})" if hint else ""), allow_module_level=True)


def require_binary(binary: str, package: str | None = None) -> None:
    if shutil.which(binary) is None:
        skip_missing(binary, f"apt-get install {package or binary}")


def require_module(module: str, extra: str) -> None:
    if importlib.util.find_spec(module) is None:
        skip_missing(module, f"pip install '.[{extra}]'")


def require_llama_build() -> Path:
    """The llama.cpp build that .ci/setup-env.sh made and smoke-tested (TILEPILOT_LLAMA), else a skip."""
    build = Path(os.environ.get("TILEPILOT_LLAMA", "/nonexistent"))
    if not (build / ".tilepilot-ok").is_file():
        skip_missing("llama.cpp's llama-server", "source .ci/setup-env.sh builds it (TILEPILOT_LLAMA)")
    return build
