"""Skips for a missing system part (a binary, an apt package, an optional extra).

Such a skip is fine on a developer's machine that lacks the part, but CI installs everything, so
there (``CI=true``) the hook in tests/conftest.py turns any of these skips into a failed run.
"""

from __future__ import annotations

import importlib.util
import shutil

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
