"""Merge the applicable rule files into one :class:`Policy`, remembering where every element came from.

Files merge in discovery order (later overrides earlier):

====================================  ===============================================================
element                               merge
====================================  ===============================================================
tools.deny, actions.deny,             union: anything any file denies stays denied
actions.deny_regions, deny_text,
actions.require_accessibility         (true if any file sets it)
actions.confirm                       union: anything any file wants confirmed is confirmed
tools.allow, actions.allowed_windows  intersection: a name must match every file's list (absent = no
                                      restriction from that file), so a later file can only narrow
limits.*                              the stricter (smaller) value wins
checks                                replaced by id: a later check with the same id wins (not by
                                      a discovered AGENTS.md: see below)
output.fields                         union
output.language                       the last file that sets it wins (an AGENTS.md only sets it
                                      where no earlier file did)
Markdown body                         concatenated in order, each under a header naming its file
applies_to                            not merged: a file whose list omits the agent is skipped
====================================  ===============================================================

So a rule file found next to a document (AGENTS.md) can tighten the policy but never loosen a
deny, a confirmation or a limit set by an earlier file. It came with the document, not from the
user, so it may only *add*: a check whose id an earlier file already defines, a looser limit or
another output language is refused, recorded in the chain (``rules explain`` prints it) and
logged as a warning, and the earlier value stays. What each AGENTS.md added is recorded too.
"""

from __future__ import annotations

import logging
from typing import Generic, Sequence, TypeVar

from pydantic import BaseModel

from tilepilot.agents.errors import RuleProblemsError
from tilepilot.agents.rules.discovery import RuleSource, discover
from tilepilot.agents.rules.loader import RuleFile, load_rule_file
from tilepilot.agents.rules.schema import LIMIT_NAMES, ActionRule, Check, Region

T = TypeVar("T")
log = logging.getLogger("tilepilot.rules")


class Provenance(BaseModel):
    """The file, key (e.g. ``actions.deny_regions[0]``) and line a policy element came from."""

    file: str
    key: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where} ({self.key})"


class Sourced(BaseModel, Generic[T]):
    value: T
    source: Provenance


class ChainEntry(BaseModel):
    path: str
    origin: str
    applied: bool
    reason: str
    added: list[str] = []  # an AGENTS.md: what it added to the policy
    refused: list[str] = []  # an AGENTS.md: what it tried to replace or loosen, and was not allowed to


class Policy(BaseModel):
    agent: str
    chain: list[ChainEntry] = []
    tools_allow: list[Sourced[list[str]]] = []
    tools_deny: list[Sourced[str]] = []
    confirm: list[Sourced[ActionRule]] = []
    deny_actions: list[Sourced[ActionRule]] = []
    deny_regions: list[Sourced[Region]] = []
    deny_text: list[Sourced[str]] = []
    allowed_windows: list[Sourced[list[str]]] = []
    require_accessibility: Sourced[bool] | None = None
    limits: dict[str, Sourced[int | float]] = {}
    checks: list[Sourced[Check]] = []
    output_fields: list[Sourced[str]] = []
    language: Sourced[str] | None = None
    prompt: str = ""

    def limit(self, name: str) -> int | float | None:
        found = self.limits.get(name)
        return found.value if found else None


def build_policy(agent: str, rules_paths: Sequence[str] = (), target: str | None = None) -> Policy:
    """Discover, load, filter and merge the rule files for ``agent``; every invalid file is reported at once."""
    sources = discover(agent, rules_paths, target)
    loaded: list[tuple[RuleSource, RuleFile | None]] = []
    problems: list[tuple[str, int, str]] = []
    for source in sources:
        if source.skipped is not None:
            log.warning("tilepilot: warning: %s: not read: %s", source.path, source.skipped)
            loaded.append((source, None))
            continue
        if not source.path.is_file():
            loaded.append((source, None))  # a shipped per-agent file may legitimately not exist
            continue
        try:
            loaded.append((source, load_rule_file(source.path)))
        except RuleProblemsError as err:
            problems.extend(err.problems)
    if problems:
        raise RuleProblemsError(problems)
    policy = merge(agent, loaded)
    for entry in policy.chain:
        for refused in entry.refused:
            log.warning("tilepilot: warning: %s: %s", entry.path, refused)
    return policy


def merge(agent: str, loaded: Sequence[tuple[RuleSource, RuleFile | None]]) -> Policy:
    chain: list[ChainEntry] = []
    applied: list[RuleFile] = []
    seen: set = set()
    for source, rule in loaded:
        path, key = str(source.path), source.path.resolve()
        if source.skipped is not None:
            chain.append(ChainEntry(path=path, origin=source.origin, applied=False, reason=f"not read: {source.skipped}"))
        elif rule is None:
            chain.append(ChainEntry(path=path, origin=source.origin, applied=False, reason="not found"))
        elif key in seen:
            chain.append(ChainEntry(path=path, origin=source.origin, applied=False, reason="already loaded earlier in the chain"))
        elif rule.front.applies_to is not None and agent not in rule.front.applies_to:
            why = f"applies_to [{', '.join(rule.front.applies_to)}] does not include {agent}"
            chain.append(ChainEntry(path=path, origin=source.origin, applied=False, reason=why))
        else:
            chain.append(ChainEntry(path=path, origin=source.origin, applied=True, reason="applied"))
            applied.append(rule)
        seen.add(key)
    discovered = {e.path for e in chain if e.applied and e.origin == "AGENTS.md"}
    policy, notes = _merge(agent, applied, discovered)
    for entry in chain:
        if entry.path in notes:
            entry.added, entry.refused = notes[entry.path]
    policy.chain = chain
    return policy


def merge_files(agent: str, rules: Sequence[RuleFile]) -> Policy:
    """Merge already-filtered rule files that the user gave (see the module table)."""
    return _merge(agent, rules, set())[0]


def _merge(agent: str, rules: Sequence[RuleFile], discovered: set[str]) -> tuple[Policy, dict[str, tuple[list[str], list[str]]]]:
    """The merged policy, and for each discovered file (``discovered``: AGENTS.md paths) what it added and
    what it was refused."""
    policy = Policy(agent=agent)
    checks: dict[str, Sourced[Check]] = {}
    prose: list[str] = []
    notes: dict[str, tuple[list[str], list[str]]] = {}
    for rule in rules:
        front = rule.front
        added: list[str] = []
        refused: list[str] = []
        adds_only = rule.path in discovered
        if adds_only:
            notes[rule.path] = (added, refused)

        def src(key: str, rule: RuleFile = rule) -> Provenance:
            return Provenance(file=rule.path, key=key, line=rule.line_of(key))

        def at(key: str, rule: RuleFile = rule) -> str:
            line = rule.line_of(key)
            return f"line {line}: " if line else ""

        if front.tools.allow is not None:
            policy.tools_allow.append(Sourced(value=list(front.tools.allow), source=src("tools.allow")))
            added.append(f"tools.allow narrowed to {', '.join(front.tools.allow) or '(nothing)'}")
        policy.tools_deny += [Sourced(value=g, source=src(f"tools.deny[{i}]")) for i, g in enumerate(front.tools.deny)]
        acts = front.actions
        policy.confirm += [Sourced(value=r, source=src(f"actions.confirm[{i}]")) for i, r in enumerate(acts.confirm)]
        policy.deny_actions += [Sourced(value=r, source=src(f"actions.deny[{i}]")) for i, r in enumerate(acts.deny)]
        policy.deny_regions += [Sourced(value=r, source=src(f"actions.deny_regions[{i}]")) for i, r in enumerate(acts.deny_regions)]
        policy.deny_text += [Sourced(value=p, source=src(f"actions.deny_text[{i}]")) for i, p in enumerate(acts.deny_text)]
        added += [f"tools.deny {g}" for g in front.tools.deny] + [f"actions.confirm {r.action}" for r in acts.confirm]
        added += [f"actions.deny {r.action}" for r in acts.deny] + [f"actions.deny_text {p}" for p in acts.deny_text]
        added += [f"actions.deny_regions x={r.x} y={r.y} w={r.w} h={r.h}" for r in acts.deny_regions]
        if acts.require_accessibility and policy.require_accessibility is None:
            policy.require_accessibility = Sourced(value=True, source=src("actions.require_accessibility"))
            added.append("actions.require_accessibility")
        if acts.allowed_windows is not None:
            policy.allowed_windows.append(Sourced(value=list(acts.allowed_windows), source=src("actions.allowed_windows")))
            added.append(f"actions.allowed_windows narrowed to {', '.join(acts.allowed_windows) or '(none)'}")
        for name in LIMIT_NAMES:
            value = getattr(front.limits, name)
            current = policy.limits.get(name)
            if value is None:
                continue
            if current is None or value < current.value:
                policy.limits[name] = Sourced(value=value, source=src(f"limits.{name}"))
                added.append(f"limits.{name} = {value:g}")
            elif value > current.value:
                refused.append(f"{at(f'limits.{name}')}limits.{name} = {value:g} would loosen {current.value:g} "
                               f"from {current.source}: kept {current.value:g}")
        for i, check in enumerate(front.checks):
            earlier = checks.get(check.id)
            if adds_only and earlier is not None:
                refused.append(f"{at(f'checks[{i}]')}check {check.id!r} would replace the one from {earlier.source}: "
                               "an AGENTS.md may add checks, never replace them; kept the earlier one")
                continue
            checks[check.id] = Sourced(value=check, source=src(f"checks[{i}]"))
            added.append(f"check {check.id}")
        known = {f.value for f in policy.output_fields}
        policy.output_fields += [Sourced(value=f, source=src("output.fields")) for f in front.output.fields if f not in known]
        added += [f"output.fields {f}" for f in front.output.fields if f not in known]
        if front.output.language is not None:
            if adds_only and policy.language is not None and policy.language.value != front.output.language:
                refused.append(f"{at('output.language')}output.language {front.output.language!r} would replace "
                               f"{policy.language.value!r} from {policy.language.source}: kept it")
            else:
                policy.language = Sourced(value=front.output.language, source=src("output.language"))
                added.append(f"output.language {front.output.language}")
        if rule.body.strip():
            prose.append(f"## Rules from {rule.path}\n\n{rule.body.strip()}\n")
            added.append(f"guidance text ({len(rule.body.strip().splitlines())} lines)")
    policy.checks = list(checks.values())
    policy.prompt = "\n".join(prose)
    return policy, notes
