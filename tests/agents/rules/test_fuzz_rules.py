"""Fuzzing the rule parser (hypothesis): whatever the bytes, loading a rule file either succeeds or
raises RuleError whose every line is ``file:line: message``. Never another exception, never a hang,
never code execution."""

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from tilepilot.agents.errors import RuleError
from tilepilot.agents.rules.loader import load_rule_file

LINE = re.compile(r"^fuzz\.md:\d+: .+")

KEYS = ["applies_to", "tools", "actions", "limits", "checks", "output", "allow", "deny", "confirm",
        "deny_regions", "deny_text", "max_steps", "id", "type", "pattern", "severity", "pages", "x", "w"]
SCALARS = ["review", "desktop", "[]", "{}", "-1", "1e309", "null", "'/(a+)+$/'", "'/[/'", "!!python/object:os.system",
           "&a [*a]", "*a", "'80%'", "x" * 500, "'\\u0000'", "- - -", ": :", "|", ">"]


def _load(text: str) -> None:
    try:
        load_rule_file("fuzz.md", text=text)
    except RuleError as err:
        lines = str(err).splitlines()
        assert lines and all(LINE.match(line) for line in lines), str(err)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_any_text(text):
    _load(text)
    _load("---\n" + text + "\n---\nbody\n")


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.sampled_from(KEYS), st.sampled_from(SCALARS)), max_size=12))
def test_yaml_shaped_front_matter(entries):
    lines = [f"{'  ' * indent}{key}: {value}" for indent, key, value in entries]
    _load("---\n" + "\n".join(lines) + "\n---\n# Guidance\n")


def test_self_referencing_alias_is_refused_not_recursed():
    """Found by the fuzzer: `&a [*a]` built a cyclic list and crashed with RecursionError."""
    try:
        load_rule_file("fuzz.md", text="---\napplies_to: &a [*a]\n---\n")
    except RuleError as err:
        assert str(err).startswith("fuzz.md:2: YAML anchors and aliases")
    else:
        raise AssertionError("a cyclic alias was accepted")
