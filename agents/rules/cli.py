"""``tilepilot rules``: check rule files, explain which rules apply, scaffold a new rule file."""

from __future__ import annotations

import re
from pathlib import Path
from typing import List, Optional

import typer

from tilepilot.agents.errors import RuleError, UsageError
from tilepilot.agents.rules.discovery import agents_sources_for
from tilepilot.agents.rules.merge import Policy, Sourced
from tilepilot.agents.rules.schema import AGENT_NAMES

rules_app = typer.Typer(name="rules", help="Check, explain and scaffold rule files.", no_args_is_help=True)

_AGENT_HELP = f"Agent whose rules to explain: {', '.join(AGENT_NAMES)}."


def register(app: typer.Typer) -> None:
    app.add_typer(rules_app, name="rules")


@rules_app.command("check")
def check_command(paths: Optional[List[Path]] = typer.Argument(
        None, help="Rule files, or folders of *.md rule files (default: the shipped rules and the AGENTS.md files "
        "from / down to this folder).", show_default=False)) -> None:
    """Validate rule files: prints file:line: message per problem, 'ok' per valid file; exits 5 on problems."""
    from tilepilot.rules import check

    result = check(paths or [])
    for file in result.files:
        typer.echo(f"ok  {file.path}  ({file.summary})" if file.ok else "\n".join(file.problems))
    if not result.ok:
        # An exception, not typer.Exit: the CLI runs typer with standalone_mode=False, where an
        # Exit's code is returned rather than raised. RuleError maps to exit code 5 in main().
        files = sum(not f.ok for f in result.files) + len(result.problems) - sum(len(f.problems) for f in result.files)
        raise RuleError(f"{len(result.problems)} problem(s) in {files} rule file(s), listed above: fix them and run the check again")


@rules_app.command("explain")
def explain_command(
    target: Optional[Path] = typer.Argument(None, help="The document (or folder) the agent will work on: enables AGENTS.md lookup."),
    agent: str = typer.Option("review", "--agent", "-a", help=_AGENT_HELP),
    rules: List[Path] = typer.Option([], "--rules", "-r", help="Extra rule file or folder (repeatable, in order)."),
    as_json: bool = typer.Option(False, "--json", help="Print the merged policy as JSON."),
) -> None:
    """Print the chain of rule files (applied or skipped, and why), the merged policy and the prompt text."""
    from tilepilot.rules import explain

    policy = explain(agent, rules, target)
    if as_json:
        typer.echo(policy.model_dump_json(indent=2))
        return
    typer.echo(render_explanation(policy, target))


@rules_app.command("keys")
def keys_command(as_json: bool = typer.Option(False, "--json", help="Print the table as JSON.")) -> None:
    """List every key name the desktop executor accepts, with the canonical name rules match and the X keysym it presses."""
    from tilepilot.tools.keys import KEYS

    rows = sorted(KEYS.items(), key=lambda item: (item[1].name, item[0]))
    if as_json:
        import json

        typer.echo(json.dumps({name: {"canonical": k.name, "keysym": k.keysym, "shift": k.shift} for name, k in rows}, indent=1))
        return
    typer.echo("name            canonical     X keysym pressed")
    for name, key in rows:
        typer.echo(f"{name!r:15} {key.name:13} {'Shift+' if key.shift else ''}{key.keysym}")


@rules_app.command("new")
def new_command(
    name: str = typer.Argument(..., help="Name of the rule file (letters, digits, - and _); '.md' is added."),
    agent: Optional[str] = typer.Option(None, "--agent", "-a", help="Restrict the file to one agent (applies_to)."),
    out: Path = typer.Option(Path("."), "--out", "-o", help="Folder to write into."),
) -> None:
    """Scaffold a commented rule file; never overwrites an existing file."""
    stem = name[:-3] if name.endswith(".md") else name
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}", stem):
        raise UsageError(f"rule file name {name!r}: use letters, digits, '-' and '_' only, e.g. 'contract-review'")
    if agent is not None and agent not in AGENT_NAMES:
        raise UsageError(f"--agent {agent!r} is not an agent: use one of {', '.join(AGENT_NAMES)}")
    if not out.is_dir():
        raise UsageError(f"--out {out}: no such folder; create it first")
    path = out / f"{stem}.md"
    try:
        with path.open("x", encoding="utf-8") as handle:  # "x": fails if the file exists, no race
            handle.write(scaffold(agent))
    except FileExistsError:
        raise UsageError(f"{path} already exists: choose another NAME or delete the file first") from None
    typer.echo(f"created {path}; edit it, then run: tilepilot rules check {path}")


def render_explanation(policy: Policy, target: Path | None) -> str:
    lines = [f"Rule chain for agent {policy.agent!r} (later files override earlier ones; files found beside the target may only add):"]
    for number, entry in enumerate(policy.chain, 1):
        status = "applied" if entry.applied else "SKIPPED"
        why = "" if entry.applied else f"  ({entry.reason})"
        lines.append(f"  {number}. {status:<9}{entry.origin:<16} {entry.path}{why}")
        lines += [f"       added: {item}" for item in entry.added]
        lines += [f"       REFUSED: {item}" for item in entry.refused]
    if target is None:
        lines.append("  AGENTS.md lookup skipped: no TARGET given")
    elif not agents_sources_for(target):
        lines.append(f"  no AGENTS.md between / and {target.resolve().parent if target.is_file() else target.resolve()}")
    lines += ["", "Merged policy (each value names the rule that set it):"]
    lines += _policy_lines(policy)
    lines += ["", "Prompt text:", policy.prompt.rstrip() or "  (none)"]
    return "\n".join(lines)


def _policy_lines(policy: Policy) -> list[str]:
    def row(label: str, items: list[Sourced], show=lambda v: repr(v)) -> list[str]:
        if not items:
            return [f"  {label}: (none)"]
        return [f"  {label}:"] + [f"    - {show(item.value)}  <- {item.source}" for item in items]

    lines = row("tools.allow (must match each list)", policy.tools_allow, lambda v: ", ".join(v))
    lines += row("tools.deny", policy.tools_deny, str)
    lines += row("actions.deny", policy.deny_actions, _action_rule)
    lines += row("actions.confirm", policy.confirm, _action_rule)
    lines += row("actions.deny_regions", policy.deny_regions, lambda r: f"x={r.x} y={r.y} w={r.w} h={r.h}" + (f" ({r.name})" if r.name else ""))
    lines += row("actions.deny_text", policy.deny_text, str)
    lines += row("actions.allowed_windows (must match each list)", policy.allowed_windows, lambda v: ", ".join(v))
    lines += row("actions.require_accessibility", [policy.require_accessibility] if policy.require_accessibility else [], str)
    lines += row("limits", [Sourced(value=f"{name} = {item.value:g}", source=item.source) for name, item in policy.limits.items()], str)
    lines += row("checks", policy.checks, lambda c: f"{c.id} [{c.type}, {c.severity}, pages {c.pages}]" + (f" {c.pattern}" if c.pattern else "") + (f" detectors {', '.join(c.detectors)}" if c.detectors else ""))
    lines += row("output.fields", policy.output_fields, str)
    lines.append(f"  output.language: {policy.language.value}  <- {policy.language.source}" if policy.language else "  output.language: (not set)")
    return lines


def _action_rule(rule) -> str:
    conditions = [f"near label {rule.near_label} within {rule.near_px}px" if rule.near_label else "", f"in window {rule.window}" if rule.window else ""]
    extra = "; ".join(c for c in conditions if c)
    return rule.action + (f" ({extra})" if extra else "") + (f": {rule.reason}" if rule.reason else "")


def scaffold(agent: str | None) -> str:
    applies = f"applies_to: [{agent}]" if agent else "# applies_to: [review, desktop, listen]   # omit = every agent"
    return f"""---
# tilepilot rule file. The front matter (between the --- lines) is policy that code enforces;
# the Markdown below it is guidance added to the model's prompt. Check it with
#   tilepilot rules check <this file>
# and see how it combines with the other rule files with `tilepilot rules explain`.
# Patterns are regular expressions; write /pattern/i for case-insensitive matching.
{applies}
tools:
  # allow: ["pdf.*", "report.*"]     # only these tools (globs over names like ui.click, pdf.render)
  deny: []                           # e.g. ["ui.*"]
actions:
  confirm: []                        # e.g. ["hotkey:alt+f4", {{action: type, near_label: "/password/i"}}]
  deny: []                           # e.g. ["drag", "key:delete"]
  deny_regions: []                   # e.g. [{{x: "90%", y: 0, w: "10%", h: 60}}]  (px or % of the screen)
  deny_text: []                      # on-screen labels never clicked, e.g. ["/delete/i"]
  # allowed_windows: ["/ - Mousepad$/"]
limits: {{}}                           # max_steps, max_pages, max_prompt_tokens, max_runtime_s
checks: []
  # - id: governing-law
  #   description: "The contract must state its governing law."
  #   severity: high                 # info | low | medium | high | critical
  #   pages: all                     # or "1-3", "2,5-"
  #   type: required                 # forbidden | required | pii
  #   pattern: "/governing law/i"    # pii checks take `detectors: [email, phone, iban, credit_card, ssn]`
---
Write guidance for the agent here, in plain Markdown.
"""
