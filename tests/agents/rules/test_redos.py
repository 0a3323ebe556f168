"""The catastrophic-pattern check looks at the pattern only: same answer on any machine, no timing."""

from __future__ import annotations

import pytest
from tilepilot.agents.rules.patterns import PatternError, compile_pattern
from tilepilot.agents.rules.redos import catastrophic_reason

CATASTROPHIC = [
    r"(a+)+$", r"^(\w+\s?)+$", r"(x*)*y", r"(a|aa)*c", r"(aa?)+!", r"((a+)b?)+$", r"(\w(\w+)?)+$",
    r"(\s*\w*)+$", r"(\d+,?)+x", r"(?i)(A+)+b", r"(\p{L}+)+$",
]
SAFE = [
    r"\bindemnif(y|ies|ication)\b", r"\bgoverning\s+law\b|\bgoverned\s+by\s+the\s+laws?\b", r"(ab+)+", r"(ab?)+",
    r"(\d+,)+\d", r"^\d{3}-\d{2}-\d{4}$", r"(?:[A-Z][a-z]+ )+", r"[\w.+-]+@[\w-]+\.[\w.]+", r"(a++)+", r"(?>a+)+",
    r"delete|remove", r"(\+?\d{1,3}[ -]?)?\(?\d{3}\)?[ -]?\d{3}[ -]?\d{4}", r"(?:\d{1,3},)*\d{1,3}", r"\p{Lu}+\d*",
]


@pytest.mark.parametrize("pattern", CATASTROPHIC)
def test_catastrophic_shapes_are_rejected(pattern: str) -> None:
    assert catastrophic_reason(pattern)
    with pytest.raises(PatternError, match="backtracks catastrophically"):
        compile_pattern(pattern)


@pytest.mark.parametrize("pattern", SAFE)
def test_safe_shapes_are_accepted(pattern: str) -> None:
    assert catastrophic_reason(pattern) is None
    compile_pattern(pattern)


def test_shipped_rule_patterns_pass(tmp_path) -> None:
    from pathlib import Path

    from tilepilot.agents.rules.loader import load_rule_file

    for path in sorted(Path("rules").rglob("*.md")) + sorted(Path("examples").rglob("*rules*.md")):
        load_rule_file(path)  # raises on any rejected pattern
