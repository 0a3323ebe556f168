"""An append-only JSON-lines log of guard decisions, one line per decision.

Each line names the action, the verdict, the reason and the rule file and key that decided it,
so "why was this blocked?" is answered from the log alone. Lines go through the run's event
writer (:class:`tilepilot.agents.runs.EventLog`, kind ``guard``): written whole and at once, so a crash
leaves at most the last line missing, never a half line before a good one.
"""

from __future__ import annotations

import time
from pathlib import Path

from pydantic import BaseModel

from tilepilot.agents.rules.guard import Decision, ToolCall
from tilepilot.agents.runs import EventLog, read_events
from tilepilot.tools.actions import Action

AUDIT_KIND = "guard"


class AuditEntry(BaseModel):
    ts: float
    step: int
    agent: str | None = None
    action: dict
    verdict: str
    reason: str
    rule_file: str | None
    rule_key: str | None
    rule_line: int | None = None
    widget: str | None = None  # the widget under the action's point (see guard.Decision.widget)


class AuditLog:
    def __init__(self, path: str | Path, agent: str | None = None):
        self.path = Path(path)
        self.agent = agent
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def record(self, action: Action | ToolCall, decision: Decision, step: int) -> AuditEntry:
        payload = {"tool": action.name, "args": action.args} if isinstance(action, ToolCall) else action.model_dump(mode="json")
        entry = AuditEntry(
            ts=time.time(),
            step=step,
            agent=self.agent,
            action=payload,
            verdict=decision.verdict,
            reason=decision.reason,
            rule_file=decision.rule_file,
            rule_key=decision.rule_key,
            rule_line=decision.rule_line,
            widget=decision.widget,
        )
        # Opened per decision: decisions are rare next to model calls, and nothing stays open.
        with EventLog(self.path) as log:
            log.emit(AUDIT_KIND, **entry.model_dump(mode="json"))
        return entry

    def entries(self) -> list[AuditEntry]:
        return [AuditEntry.model_validate(event) for event in read_events(self.path, AUDIT_KIND)]
