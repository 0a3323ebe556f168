"""The hierarchical summary always ends: partial summaries too long to merge are cut to share one request.

A model that answers every summary request with the longest summary the schema allows once kept
the review looping for ever at a tight budget (two groups, two summaries, two groups, ...).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from tilepilot.agents.review.findings import Finding
from tilepilot.agents.review.graph import summarise
from tilepilot.agents.runs import EventLog
from tests.agents.doubles import WordChat

LONG = "x" * 300  # SummaryAnswer's longest summary


@dataclass
class Chunk:
    client: WordChat
    events: EventLog
    system: str = "review"
    path: str = "doc.pdf"
    budget_tokens: int = 1000


def findings(n: int) -> list[Finding]:
    return [Finding(id=f"{i:016x}", rule="pii-email", severity="high", page=i + 1, quote=f"mail{i}@example.com " * 6,
                    rationale="an e-mail address " * 12, source="check") for i in range(n)]


@pytest.mark.parametrize("capacity", [390, 500, 900])
def test_long_partial_summaries_end_in_one_summary(capacity: int, tmp_path: Path) -> None:
    chat = WordChat()
    chat_answer = chat.chat

    def long_summaries(messages, *, schema=None, **kwargs):
        result = chat_answer(messages, schema=None, **kwargs)
        result.text = json.dumps({"summary": LONG})
        result.parsed = schema.model_validate_json(result.text)
        return result

    chat.chat = long_summaries  # type: ignore[method-assign]
    with EventLog(tmp_path / "events.jsonl") as events:
        summary, requests = summarise(findings(12), Chunk(chat, events), capacity)  # type: ignore[arg-type]
    assert summary and len(requests) < 40, len(requests)
    levels = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()
              if json.loads(line)["kind"] == "summary_level"]
    assert len(levels) <= 3
