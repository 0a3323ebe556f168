"""Rule files load strictly, and every problem is reported at the right file and line."""

from __future__ import annotations

import pytest

from tilepilot.agents.errors import RuleError, RuleProblemsError
from tilepilot.agents.rules.loader import load_rule_file

# (name, rule text, expected line, fragment of the message)
BAD_FILES = [
    ("malformed yaml", "---\nlimits:\n  max_steps: [1, 2\n---\n", 4, "invalid YAML"),
    ("unknown top-level key", "---\napplies_to: [review]\ntool:\n  deny: []\n---\n", 3, "unknown key 'tool'; did you mean 'tools'?"),
    ("unknown nested key", "---\nactions:\n  confirm: [type]\n  deny_region: []\n---\n", 4, "did you mean 'deny_regions'?"),
    ("unknown key in a list item", "---\nchecks:\n  - id: a\n    description: d\n    type: forbidden\n    pattern: x\n    sevrity: high\n---\n", 7, "unknown key 'checks[0].sevrity'"),
    ("wrong type", "---\nlimits:\n  max_pages: many\n---\n", 3, "limits.max_pages"),
    ("negative limit", "---\n\nlimits:\n  max_steps: 0\n---\n", 4, "greater than or equal to 1"),
    ("bad agent", "---\napplies_to: [review, desk]\n---\n", 2, "applies_to[1]"),
    ("invalid regex", "---\nactions:\n  deny_text:\n    - ok\n    - '(unclosed'\n---\n", 5, "invalid regular expression"),
    ("bad severity", "---\nchecks:\n  - id: a\n    description: d\n    severity: urgent\n    type: required\n    pattern: x\n---\n", 5, "checks[0].severity"),
    ("bad page scope", "---\nchecks:\n  - id: a\n    description: d\n    pages: 3-1\n    type: required\n    pattern: x\n---\n", 5, "pages '3-1'"),
    ("required without pattern", "---\nchecks:\n  - id: a\n    description: d\n    type: required\n---\n", 3, "needs a 'pattern'"),
    ("unknown pii detector", "---\nchecks:\n  - id: a\n    description: d\n    type: pii\n    detectors: [email, passport]\n---\n", 6, "checks[0].detectors[1]"),
    ("bad percentage", "---\nactions:\n  deny_regions:\n    - {x: 0, y: 0, w: '150%', h: 10}\n---\n", 4, "between 0% and 100%"),
    ("bad region unit", "---\nactions:\n  deny_regions:\n    - {x: 0, y: 0, w: 10cm, h: 10}\n---\n", 4, "percentage like '80%'"),
    ("unknown action kind", "---\nactions:\n  confirm: [teleport]\n---\n", 3, "matches no action kind"),
    ("duplicate key", "---\nlimits:\n  max_steps: 3\n  max_steps: 300\n---\n", 4, "appears twice"),
    ("duplicate check id", "---\nchecks:\n  - {id: a, description: d, type: required, pattern: x}\n  - {id: a, description: e, type: required, pattern: y}\n---\n", 4, "used twice"),
    ("not a mapping", "---\n- just\n- a list\n---\n", 2, "must be a mapping"),
    ("unclosed front matter", "---\nlimits: {}\n# no closing fence\n", 1, "never closed"),
    ("python object tag", "---\nlimits: !!python/object/apply:os.system ['echo pwned']\n---\n", 2, "!!python/object/apply:os.system is not allowed"),
    ("python name tag", "---\napplies_to: !!python/name:os.system\n---\n", 2, "is not allowed"),
    ("long pattern", "---\nactions:\n  deny_text: ['" + "a" * 400 + "']\n---\n", 3, "the limit is 300"),
    ("catastrophic pattern", "---\nactions:\n  deny_text: ['(a+)+$']\n---\n", 3, "backtracks catastrophically"),
]


@pytest.mark.parametrize("name,text,line,fragment", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_rule_files_are_reported_at_file_and_line(write_rule, name, text, line, fragment):
    path = write_rule(text)
    with pytest.raises(RuleProblemsError) as caught:
        load_rule_file(path)
    messages = str(caught.value).splitlines()
    assert any(m.startswith(f"{path}:{line}: ") and fragment in m for m in messages), messages
    assert isinstance(caught.value, RuleError) and caught.value.exit_code == 5


def test_python_tag_never_runs_code(write_rule, tmp_path):
    marker = tmp_path / "pwned"
    path = write_rule(f"---\nx: !!python/object/apply:os.system ['touch {marker}']\n---\n")
    with pytest.raises(RuleProblemsError):
        load_rule_file(path)
    assert not marker.exists()


def test_every_problem_in_a_file_is_reported_at_once(write_rule):
    path = write_rule("---\ntools:\n  alow: []\nlimits:\n  max_steps: x\n  max_pages: -1\n---\n")
    with pytest.raises(RuleProblemsError) as caught:
        load_rule_file(path)
    assert [p[1] for p in caught.value.problems] == [3, 5, 6]


def test_valid_file_parses_policy_and_body_with_lines(write_rule):
    path = write_rule(
        """
        ---
        applies_to: [desktop]
        actions:
          deny_regions:
            - {x: "80%", y: 0, w: 200, h: "10%"}
          confirm:
            - "hotkey:alt+f4"
            - action: type
              near_label: /password/i
        limits:
          max_steps: 12
        ---
        # Guidance
        Be careful.
        """
    )
    rule = load_rule_file(path)
    assert rule.front.applies_to == ["desktop"]
    assert rule.front.actions.deny_regions[0].x == "80%" and rule.front.actions.deny_regions[0].w == 200
    assert [c.action for c in rule.front.actions.confirm] == ["hotkey:alt+f4", "type"]
    assert rule.front.actions.confirm[1].near_label == "/password/i"
    assert rule.front.limits.max_steps == 12
    assert rule.body.startswith("# Guidance") and rule.body_line == 13
    assert rule.line_of("actions.deny_regions[0]") == 5
    assert rule.line_of("actions.confirm[1]") == 8
    assert rule.line_of("limits.max_steps") == 11


def test_file_without_front_matter_is_guidance_only(write_rule):
    rule = load_rule_file(write_rule("# Just prose\n\nBe nice.\n"))
    assert rule.body.startswith("# Just prose") and not rule.has_front_matter
    assert rule.front.checks == [] and rule.front.applies_to is None


def test_missing_file_is_one_line_naming_it(tmp_path):
    with pytest.raises(RuleProblemsError) as caught:
        load_rule_file(tmp_path / "nope.md")
    assert str(caught.value) == f"{tmp_path / 'nope.md'}: no such rule file: check the path"


def test_catastrophic_pattern_is_rejected_by_its_shape(write_rule):
    # The pattern that slipped through the old 100 ms wall-clock probe on a slow CPU.
    path = write_rule("---\nactions:\n  deny_text: ['^(\\w+\\s?)+$']\n---\n")
    with pytest.raises(RuleProblemsError, match="backtracks catastrophically"):
        load_rule_file(path)
