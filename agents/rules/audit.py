"""An append-only JSON-lines log of guard decisions, one line per decision.

Each line names the action, the verdict, the reason and the rule file and key that decided it,
so "why was this blocked?" is answered from the log alone. Lines are written whole and flushed,
so a crash leaves at most the last line missing, never a half line before a good one.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from pydantic import BaseModel

from agents.rules.guard import Decision, ToolCall
from tools.actions import Action


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
        )
        line = json.dumps(entry.model_dump(mode="json"), ensure_ascii=False, default=str) + "\n"
        # One os.write of the whole line on an O_APPEND descriptor: concurrent writers never interleave.
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode("utf-8"))
        finally:
            os.close(fd)
        return entry

    def entries(self) -> list[AuditEntry]:
        if not self.path.exists():
            return []
        return [AuditEntry.model_validate_json(line) for line in self.path.read_text("utf-8").splitlines() if line.strip()]
