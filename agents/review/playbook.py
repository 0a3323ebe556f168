"""Playbook rules in a review: positions in the prompt, red/amber/green flags, missing clauses as document-level findings.

A check with ``positions`` (``standard``, ``fallback``, ``escalate``; see
:class:`tilepilot.agents.rules.schema.Positions`) makes the run a playbook review: the system prompt
lists each clause's positions, and every model finding carries a ``flag`` output field (an enum in
the answer schema): green, the clause meets the standard; amber, only a fallback; red, the
escalation point or outside both. A check's own findings on a playbook clause are red: the
deterministic check found the deviation. ``flag`` is an ordinary output field (``fields["flag"]``),
so reports, spreadsheets and ``tilepilot export`` carry it like ``suggestion``.
"""

from __future__ import annotations

from typing import Literal

from tilepilot.agents.review.findings import Finding
from tilepilot.agents.rules import CheckFinding, Policy
from tilepilot.agents.rules.schema import Positions

FLAGS = ("red", "amber", "green")
Flag = Literal["red", "amber", "green"]
FLAG_FIELD = "flag"
FLAG_INSTRUCTION = ("flag: green if the clause meets the rule's standard position, amber if it meets only a fallback, "
                    "red if it reaches the escalation point or meets neither (for a rule without positions: red)")


def playbook(policy: Policy) -> dict[str, Positions]:
    """Rule id -> its positions, for the checks that state them."""
    return {c.value.id: c.value.positions for c in policy.checks if c.value.positions is not None}


def review_fields(policy: Policy, output_fields: list[str]) -> list[str]:
    """The output fields beyond the built-in ones: the rules' own, plus ``flag`` in a playbook review."""
    return [*output_fields, FLAG_FIELD] if playbook(policy) and FLAG_FIELD not in output_fields else list(output_fields)


def playbook_prompt(policy: Policy) -> str:
    """The prompt section listing each clause's positions (empty without a playbook)."""
    lines = []
    for rule, positions in playbook(policy).items():
        lines.append(f"- {rule}: standard: {positions.standard}")
        lines += [f"  fallback (acceptable): {fallback}" for fallback in positions.fallback]
        if positions.escalate:
            lines.append(f"  escalate to a senior reviewer when: {positions.escalate}")
    if not lines:
        return ""
    return ("Playbook positions. Classify every clause that one of these rules concerns against its positions, report it "
            "(a green one too) with the rule's id, and set flag:\n" + "\n".join(lines))


def check_finding(found: CheckFinding, policy: Policy) -> Finding:
    """A deterministic check's finding as a review finding; a missing clause is document-level, its check in ``fields``."""
    fields: dict[str, str] = {}
    if found.detail:
        fields["check"] = found.detail
    if found.rule in playbook(policy):
        fields[FLAG_FIELD] = "red"
    return Finding(id=found.id, rule=found.rule, severity=found.severity, page=None if found.detail else found.page,
                   quote=found.quote, bbox=found.bbox, rationale=found.rationale, fields=fields, source="check")
