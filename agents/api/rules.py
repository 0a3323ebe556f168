"""``tilepilot.rules.check`` and ``tilepilot.rules.explain``: rule files as Python calls.

``check`` validates without raising (its result lists every problem as ``file:line: message``);
``explain`` returns the merged :class:`~tilepilot.agents.rules.merge.Policy`, the chain of rule
files included, and raises the rule errors of the hierarchy where a file is broken.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tilepilot.agents.errors import RuleProblemsError, UsageError
from tilepilot.agents.rules.discovery import agents_files_for, shipped_rules_dir
from tilepilot.agents.rules.loader import RuleFile, load_rule_file
from tilepilot.agents.rules.merge import Policy, build_policy
from tilepilot.agents.rules.schema import AGENT_NAMES
from tilepilot.api_types import RuleFileCheck, RulesCheckResult


def _problem_line(file: str, line: int, message: str) -> str:
    return f"{file}:{line}: {message}" if line else f"{file}: {message}"


def check(paths: str | Path | Sequence[str | Path] = ()) -> RulesCheckResult:
    """Validate rule files, or folders of ``*.md`` rule files. Without any: the rules an agent started here
    would read before any ``--rules`` (the shipped ones, and ``AGENTS.md`` files from the root down to here)."""
    given = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    if not given:
        given = [shipped_rules_dir(), *agents_files_for(Path.cwd())]
    files: list[RuleFileCheck] = []
    problems: list[str] = []
    for path in given:
        found = sorted(p for p in path.glob("*.md") if p.is_file()) if path.is_dir() else [path]
        if path.is_dir() and not found:
            problems.append(_problem_line(str(path), 0, "folder holds no *.md rule files"))
        for file in found:
            try:
                rule = load_rule_file(file)
            except RuleProblemsError as err:
                lines = [_problem_line(*problem) for problem in err.problems]
                files.append(RuleFileCheck(path=str(file), ok=False, problems=lines))
                problems += lines
                continue
            files.append(RuleFileCheck(path=str(file), ok=True, summary=describe(rule)))
    return RulesCheckResult(files=files, problems=problems)


def explain(agent: str = "review", rules: str | Path | Sequence[str | Path] = (), target: str | Path | None = None) -> Policy:
    """The rules ``agent`` would run under: discovery chain, merged policy and prompt text.

    ``target`` is the document (or folder) the agent will work on; it enables the AGENTS.md lookup.
    """
    if agent not in AGENT_NAMES:
        raise UsageError(f"--agent {agent!r} is not an agent: use one of {', '.join(AGENT_NAMES)}")
    if target is not None and not Path(target).exists():
        raise UsageError(f"target {target}: no such file or folder; give the document the agent will work on")
    extra = [str(rules)] if isinstance(rules, (str, Path)) else [str(r) for r in rules]
    return build_policy(agent, extra, str(target) if target is not None else None)


def describe(rule: RuleFile) -> str:
    """What a valid rule file sets, in one line (``rules check`` prints it after 'ok')."""
    front = rule.front
    parts = [f"applies to {', '.join(front.applies_to)}" if front.applies_to is not None else "applies to all agents"]
    counts = {
        "checks": len(front.checks),
        "confirmations": len(front.actions.confirm),
        "denied actions": len(front.actions.deny) + len(front.tools.deny),
        "denied regions": len(front.actions.deny_regions),
        "denied texts": len(front.actions.deny_text),
        "limits": sum(v is not None for v in front.limits.model_dump().values()),
    }
    parts += [f"{n} {what}" for what, n in counts.items() if n]
    if not rule.has_front_matter:
        parts.append("no front matter: guidance only")
    return "; ".join(parts)
