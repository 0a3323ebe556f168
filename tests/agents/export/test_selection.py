"""Which desktop steps teach, and how answers are written: pure rules, no server."""

from __future__ import annotations

import json

import pytest

from tilepilot.agents.desktop.state import GuardRecord, StepRecord, Usage
from tilepilot.agents.export.cli import agent_of
from tilepilot.agents.export.dataset import ExportError, answer_text
from tilepilot.agents.export.desktop import teaches
from tilepilot.agents.runs import MANIFEST_NAME
from tilepilot.tools.actions import Click, Done, Fail
from tilepilot.tools.screen import Geometry

GEOMETRY = Geometry(left=0, top=0, width=1024, height=768, image_width=1008, image_height=768)
USAGE = Usage(prompt_tokens=500, completion_tokens=20, counted_prompt_tokens=500, input_budget=30000, images=1)


def step(action, **changes) -> StepRecord:
    base = dict(step=0, started_at=0.0, screenshot="steps/0000.jpg", geometry=GEOMETRY, action=action, usage=USAGE,
                executed=True, guard=GuardRecord(verdict="allow", reason="ok"))
    return StepRecord(**{**base, **changes})


@pytest.mark.parametrize(("record", "last", "expected"), [
    (step(Click(x=10, y=10)), False, True),
    (step(Click(x=10, y=10), screen_changed=None), True, True),  # the last click: nobody looked again
    (step(Click(x=10, y=10), screen_changed=False), False, False),  # did nothing
    (step(Click(x=10, y=10), executed=False, guard=GuardRecord(verdict="deny", reason="no")), False, False),
    (step(Click(x=10, y=10), executed=False, guard=GuardRecord(verdict="confirm", reason="?", approved=False)), False, False),
    (step(Click(x=10, y=10), invalid="off the image"), False, False),
    (step(None, usage=None), False, False),
    (step(Done(result="saved"), executed=False), True, True),
    (step(Fail(reason="that would delete records"), executed=False), True, True),  # refusing was the success
    (step(Fail(reason="gave up"), executed=False), False, False),
])
def test_only_useful_steps_of_a_successful_run_teach(record: StepRecord, last: bool, expected: bool) -> None:
    assert teaches(record, last=last) is expected


def test_json_answers_are_written_as_a_constrained_server_emits_them() -> None:
    spaced = '{"thought": "the Save button", "action": {"kind": "click", "x": 12, "y": 40}}'
    assert answer_text(spaced) == '{"thought":"the Save button","action":{"kind":"click","x":12,"y":40}}'
    assert json.loads(answer_text('{"findings": [{"quote": "été"}]}')) == {"findings": [{"quote": "été"}]}
    assert "été" in answer_text('{"findings": [{"quote": "été"}]}')
    assert answer_text("Thank you all for coming.") == "Thank you all for coming."  # plain text stays
    assert answer_text("42") == "42"


@pytest.mark.parametrize("manifest", [b"{not json", b"\xff\xfe not UTF-8", b'{"agent": 3}'])
def test_a_damaged_manifest_is_a_one_line_export_error(tmp_path, manifest: bytes) -> None:
    (tmp_path / MANIFEST_NAME).write_bytes(manifest)
    with pytest.raises(ExportError, match=r"run\.json: unreadable; the run folder is damaged$"):
        agent_of(tmp_path)
