"""Discovery order, applies_to skipping and the merge table, with provenance."""

from __future__ import annotations

from pathlib import Path

import pytest

from tilepilot.agents.errors import RuleProblemsError
from tilepilot.agents.rules.discovery import RuleSource, discover, shipped_rules_dir
from tilepilot.agents.rules.loader import load_rule_file
from tilepilot.agents.rules.merge import build_policy, merge, merge_files


def _merged(write_rule, *fronts: str):
    files = [load_rule_file(write_rule(f"---\n{front}\n---\nbody {i}\n", name=f"r{i}.md")) for i, front in enumerate(fronts)]
    return merge_files("desktop", files)


# (element, first file, second file, check on the merged policy)
MERGE_TABLE = [
    ("tools.deny unions", "tools: {deny: ['ui.drag']}", "tools: {deny: ['audio.*']}",
     lambda p: [d.value for d in p.tools_deny] == ["ui.drag", "audio.*"]),
    ("tools.allow keeps every list (intersection)", "tools: {allow: ['ui.*', 'pdf.*']}", "tools: {allow: ['ui.click']}",
     lambda p: [a.value for a in p.tools_allow] == [["ui.*", "pdf.*"], ["ui.click"]]),
    ("absent allow adds no restriction", "tools: {allow: ['ui.*']}", "tools: {deny: []}",
     lambda p: [a.value for a in p.tools_allow] == [["ui.*"]]),
    ("limits take the stricter value (later larger)", "limits: {max_steps: 10}", "limits: {max_steps: 50}",
     lambda p: p.limit("max_steps") == 10 and p.limits["max_steps"].source.file.endswith("r0.md")),
    ("limits take the stricter value (later smaller)", "limits: {max_steps: 50, max_pages: 9}", "limits: {max_steps: 10}",
     lambda p: p.limit("max_steps") == 10 and p.limits["max_steps"].source.file.endswith("r1.md") and p.limit("max_pages") == 9),
    ("checks replaced by id", "checks: [{id: law, description: old, type: required, pattern: law}, {id: pii, description: p, type: pii}]",
     "checks: [{id: law, description: new, type: required, pattern: 'governing law'}]",
     lambda p: [(c.value.id, c.value.description) for c in p.checks] == [("law", "new"), ("pii", "p")]
     and p.checks[0].source.file.endswith("r1.md")),
    ("confirm unions", "actions: {confirm: ['hotkey:alt+f4']}", "actions: {confirm: [type]}",
     lambda p: [c.value.action for c in p.confirm] == ["hotkey:alt+f4", "type"]),
    ("deny regions union", "actions: {deny_regions: [{x: 0, y: 0, w: 1, h: 1}]}", "actions: {deny_regions: [{x: 5, y: 5, w: 1, h: 1}]}",
     lambda p: [r.source.key for r in p.deny_regions] == ["actions.deny_regions[0]", "actions.deny_regions[0]"] and len({r.source.file for r in p.deny_regions}) == 2),
    ("deny_text unions", "actions: {deny_text: [a]}", "actions: {deny_text: [b]}", lambda p: [t.value for t in p.deny_text] == ["a", "b"]),
    ("allowed_windows intersect", "actions: {allowed_windows: [Editor, Browser]}", "actions: {allowed_windows: [Editor]}",
     lambda p: [w.value for w in p.allowed_windows] == [["Editor", "Browser"], ["Editor"]]),
    ("output fields union, language last wins", "output: {fields: [rule, quote], language: en}", "output: {fields: [quote, bbox], language: de}",
     lambda p: [f.value for f in p.output_fields] == ["rule", "quote", "bbox"] and p.language.value == "de"),
    ("prose concatenated under file headers", "{}", "{}",
     lambda p: p.prompt.index("r0.md") < p.prompt.index("body 0") < p.prompt.index("r1.md") < p.prompt.index("body 1")),
]


@pytest.mark.parametrize("name,first,second,expect", MERGE_TABLE, ids=[m[0] for m in MERGE_TABLE])
def test_merge_table(write_rule, name, first, second, expect):
    assert expect(_merged(write_rule, first, second))


def test_provenance_names_file_key_and_line(write_rule):
    policy = _merged(write_rule, "limits:\n  max_steps: 5\nactions:\n  deny_text:\n    - one\n    - two")
    source = policy.deny_text[1].source
    assert source.file.endswith("r0.md") and source.key == "actions.deny_text[1]" and source.line == 7
    assert policy.limits["max_steps"].source.line == 3


def test_discovery_order_shipped_then_rules_then_agents_md_nearest_last(tmp_path, write_rule):
    user_dir = tmp_path / "user-rules"
    b = write_rule("---\n{}\n---\n", "b.md", user_dir)
    a = write_rule("---\n{}\n---\n", "a.md", user_dir)
    single = write_rule("x\n", "single.md")
    outer = write_rule("outer\n", "AGENTS.md", tmp_path / "docs")
    inner = write_rule("inner\n", "AGENTS.md", tmp_path / "docs" / "contracts")
    document = tmp_path / "docs" / "contracts" / "deal.pdf"
    document.write_bytes(b"%PDF-")
    sources = discover("review", [single, user_dir], document)
    shipped = shipped_rules_dir()
    assert sources == [
        RuleSource(shipped / "default.md", "shipped default"),
        RuleSource(shipped / "review.md", "shipped agent"),
        RuleSource(single, "--rules"),
        RuleSource(a, "--rules"),
        RuleSource(b, "--rules"),
        RuleSource(outer.resolve(), "AGENTS.md"),
        RuleSource(inner.resolve(), "AGENTS.md"),
    ]


def test_later_files_tighten_and_applies_to_skips_loudly(tmp_path, write_rule):
    review_only = write_rule("---\napplies_to: [review]\nlimits: {max_steps: 1}\n---\n", "review-only.md")
    tighter = write_rule("---\nlimits: {max_steps: 7}\n---\nuser guidance\n", "tight.md")
    write_rule("---\nlimits: {max_steps: 5}\n---\nnear the document\n", "AGENTS.md", tmp_path / "work")
    policy = build_policy("desktop", [str(review_only), str(tighter)], str(tmp_path / "work"))
    chain = {Path(e.path).name: e for e in policy.chain}
    assert not chain["review-only.md"].applied and "does not include desktop" in chain["review-only.md"].reason
    assert chain["tight.md"].applied and chain["AGENTS.md"].applied and chain["desktop.md"].applied
    assert policy.limit("max_steps") == 5 and policy.limits["max_steps"].source.file.endswith("AGENTS.md")
    assert policy.prompt.index("user guidance") < policy.prompt.index("near the document")


def test_same_file_twice_is_listed_as_skipped(write_rule):
    rule = write_rule("---\nlimits: {max_steps: 3}\n---\n")
    policy = build_policy("listen", [str(rule), str(rule)])
    entries = [e for e in policy.chain if e.origin == "--rules"]
    assert [e.applied for e in entries] == [True, False] and "already loaded" in entries[1].reason


def test_missing_rules_path_and_empty_folder_are_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(RuleProblemsError) as caught:
        discover("review", [tmp_path / "missing.md", tmp_path / "empty"])
    text = str(caught.value)
    assert "missing.md: no such rule file or folder" in text and "empty: folder holds no *.md" in text


def test_problems_in_several_files_are_reported_together(write_rule):
    one = write_rule("---\nlimits: {max_step: 1}\n---\n", "one.md")
    two = write_rule("---\ntools: {deny: 3}\n---\n", "two.md")
    with pytest.raises(RuleProblemsError) as caught:
        build_policy("review", [str(one), str(two)])
    assert {Path(p[0]).name for p in caught.value.problems} == {"one.md", "two.md"}


@pytest.mark.parametrize("agent", ["review", "desktop", "listen"])
def test_shipped_rules_are_valid_and_apply_to_their_agent(agent):
    policy = build_policy(agent)
    assert [e.applied for e in policy.chain] == [True, True]
    assert f"rules/{agent}.md" in policy.chain[1].path.replace("\\", "/")


def test_merge_records_missing_shipped_file(tmp_path):
    policy = merge("review", [(RuleSource(tmp_path / "gone.md", "shipped agent"), None)])
    assert policy.chain[0].applied is False and policy.chain[0].reason == "not found"
