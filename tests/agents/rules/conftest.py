"""Fixtures for the rules tests: rule files written to a temporary folder."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Callable

import pytest


@pytest.fixture
def write_rule(tmp_path: Path) -> Callable[..., Path]:
    """write_rule(text, name="rule.md", folder=tmp_path) -> path; the text is dedented."""

    def write(text: str, name: str = "rule.md", folder: Path | None = None) -> Path:
        target = (folder or tmp_path) / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return target

    return write
