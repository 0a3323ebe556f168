"""Rule files (agents.md style): loading, merging, the policy guard and deterministic checks.

Typical use by an agent::

    policy = build_policy("desktop", rules_paths, target)      # RuleError on any bad file
    system_prompt = policy.prompt
    decision = guard(action, GuardContext(agent="desktop", ...), policy)
    findings = run_checks(pages, policy.checks)               # review agent, no model
"""

from tilepilot.agents.rules.audit import AuditLog
from tilepilot.agents.rules.checks import CheckFinding, CheckPage, CheckWord, run_checks
from tilepilot.agents.rules.guard import Allow, Confirm, Decision, Deny, GuardContext, ScreenBounds, ScreenText, ToolCall, guard
from tilepilot.agents.rules.merge import Policy, build_policy

__all__ = [
    "Allow", "AuditLog", "CheckFinding", "CheckPage", "CheckWord", "Confirm", "Decision", "Deny", "GuardContext",
    "Policy", "ScreenBounds", "ScreenText", "ToolCall", "build_policy", "guard", "run_checks",
]
