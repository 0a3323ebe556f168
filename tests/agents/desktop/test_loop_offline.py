"""The graph without X: a fake screen with a negative monitor offset, a recording executor, the double.

Covers what the X11 tests cannot force: invalid (outside-image) coordinates, confirmations
approved and refused, dry runs, Ctrl-C, pyautogui's fail-safe, the step and time limits,
block-evicted history and the replay page.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from PIL import Image, ImageDraw
from pydantic import ValidationError

from tilepilot.agents.desktop.history import StepTooLargeError
from tilepilot.agents.desktop.replay import write_replay
from tilepilot.agents.desktop.runner import run_desktop
from tilepilot.agents.desktop.screen_texts import StaticTexts
from tilepilot.agents.desktop.state import DesktopOptions
from tilepilot.agents.errors import USER_ERRORS, UsageError, exit_code_for
from tilepilot.agents.rules import build_policy
from tests.agents.desktop.doubles import ScriptedChat, click_screen, fixed
from tilepilot.tools.actions import Action, Click, Done, Type, Wait
from tilepilot.tools.errors import FailSafeTriggered
from tilepilot.tools.screen import Capture, Geometry
from tilepilot.model_runtime.profiles import tiny_profile
from tilepilot.tools.ui import ActionRecord

SCREEN = (-1280, -200, 1280, 800)  # a left monitor above the primary's top edge


class FakeScreen:
    def __init__(self) -> None:
        self.frames = 0

    def capture_monitor(self, index: int = 1) -> Capture:
        self.frames += 1
        image = Image.new("RGB", SCREEN[2:], "white")
        ImageDraw.Draw(image).rectangle((10, 10, 10 + 20 * self.frames, 40), fill="navy")  # screens differ
        left, top, width, height = SCREEN
        geometry = Geometry(left=left, top=top, width=width, height=height, image_width=width, image_height=height)
        return Capture(image=image, geometry=geometry, monitor=index)


@dataclass
class RecordingExecutor:
    raise_on: dict[int, BaseException] = field(default_factory=dict)
    done: list[Action] = field(default_factory=list)

    def execute(self, action: Action) -> ActionRecord:
        error = self.raise_on.get(len(self.done))
        self.done.append(action)
        if error is not None:
            raise error
        return ActionRecord(action=action, screen_points=action.points(), dry_run=False, duration_ms=0.1, detail="ok")


def _run(tmp_path: Path, script, rules: str = "", approve=None, executor=None, chat=None, **options):
    tmp_path.mkdir(parents=True, exist_ok=True)
    rules_path = tmp_path / "rules.md"
    rules_path.write_text(f"---\napplies_to: [desktop]\n{rules}---\n", encoding="utf-8")
    chat = chat or ScriptedChat(script, screen=SCREEN)
    executor = executor or RecordingExecutor()
    opts = DesktopOptions(task="test", settle_ms=0, **{"max_steps": 6, **options})
    result = run_desktop(opts, chat, build_policy("desktop", [str(rules_path)]), tmp_path / "run",
                         texts=StaticTexts(window_title="app"), approve=approve, screen=FakeScreen(), executor=executor)
    return result, chat, executor


def test_points_outside_the_image_are_fed_back_never_clamped(tmp_path: Path) -> None:
    script = [lambda g: Click(x=g.image_width, y=5), lambda g: Click(x=3, y=-1), fixed(Done())]
    result, chat, executor = _run(tmp_path, script)
    assert result.status == "done" and executor.done == []
    assert [s.invalid is not None for s in result.steps] == [True, True, False]
    assert "outside the" in result.steps[0].invalid
    texts = [p.text for m in chat.requests[1] for p in m.parts if hasattr(p, "text")]
    assert any("invalid: point (" in t for t in texts)


def test_model_coordinates_map_onto_the_monitor_with_its_offset(tmp_path: Path) -> None:
    target = (SCREEN[0] + 100, SCREEN[1] + 50)
    result, _, executor = _run(tmp_path, [click_screen(*target), fixed(Done())])
    step = result.steps[0]
    assert executor.done == [Click(x=target[0], y=target[1])]
    assert step.screen_xy == [target] and step.model_xy != step.screen_xy
    g = step.geometry
    assert g.to_screen(*step.model_xy[0]) == target and (g.image_width, g.image_height) != SCREEN[2:]


class PopupClosingExecutor(RecordingExecutor):
    """Says that a first click closed a suggestion list before each click (as tools.ui.UIExecutor does)."""

    def execute(self, action: Action) -> ActionRecord:
        record = super().execute(action)
        if not isinstance(action, Click):
            return record
        return record.model_copy(update={"closed_popups": [(-1100, 20, 200, 90)],
                                         "detail": f"a first click closed the suggestion list that typing left open, then {record.detail}"})


def test_a_closed_suggestion_list_is_an_event_and_in_the_outcome(tmp_path: Path) -> None:
    result, chat, _ = _run(tmp_path, [fixed(Type(text="Zan")), click_screen(-1000, 0), fixed(Done())], executor=PopupClosingExecutor())
    events = [json.loads(line) for line in (tmp_path / "run" / "events.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [(e["step"], e["before"], e["boxes"]) for e in events if e["kind"] == "popup_closed"] == [(1, "click", [[-1100, 20, 200, 90]])]
    assert result.steps[1].outcome().startswith("a first click closed the suggestion list")


def test_confirmation_approved_executes_and_refused_stops_as_denied(tmp_path: Path) -> None:
    rule = 'actions:\n  confirm:\n    - {action: "type", reason: "typing needs a yes"}\n'
    script = [click_screen(-1000, 0), fixed(Type(text="x")), fixed(Done())]
    asked = []
    approved, _, ex1 = _run(tmp_path / "a", script, rule, approve=lambda r: asked.append(r) or True)
    assert approved.status == "done" and [a.kind for a in ex1.done] == ["click", "type"]
    assert asked[0].reason.startswith("typing needs a yes") and approved.steps[1].guard.approved is True
    refused, _, ex2 = _run(tmp_path / "b", script, rule, approve=None)
    assert refused.status == "denied" and [a.kind for a in ex2.done] == ["click"]
    assert refused.steps[-1].guard.verdict == "confirm" and refused.steps[-1].guard.approved is False


def test_dry_run_neither_asks_nor_executes(tmp_path: Path) -> None:
    from tilepilot.tools.screen import Monitor
    from tilepilot.tools.ui import UIExecutor

    dry = UIExecutor(dry_run=True, monitors=[Monitor(index=1, left=SCREEN[0], top=SCREEN[1], width=SCREEN[2], height=SCREEN[3])])
    rule = 'actions:\n  confirm:\n    - {action: "click"}\n'
    result, _, _ = _run(tmp_path, [click_screen(-1000, 0), fixed(Done())], rule, approve=None, executor=dry, dry_run=True)
    assert result.status == "done"
    assert result.steps[0].guard.verdict == "confirm" and not result.steps[0].executed
    assert result.steps[0].result.startswith("dry run")


@pytest.mark.parametrize("error, reason", [(KeyboardInterrupt(), "Ctrl-C"), (FailSafeTriggered("pyautogui fail-safe: corner"), "fail-safe")])
def test_ctrl_c_and_failsafe_stop_cleanly_and_keep_the_trajectory(tmp_path: Path, error, reason) -> None:
    executor = RecordingExecutor(raise_on={1: error})
    result, _, _ = _run(tmp_path, [click_screen(-1000, 0)], executor=executor)
    assert result.status == "stopped" and reason in result.stop_reason
    saved = json.loads((tmp_path / "run" / "trajectory.json").read_text())
    assert saved["status"] == "stopped" and len(saved["steps"]) >= 1
    assert saved["steps"][0]["executed"] is True


def test_step_and_time_limits(tmp_path: Path) -> None:
    result, _, _ = _run(tmp_path / "steps", [fixed(Wait(ms=0))], max_steps=3)
    assert result.status == "max_steps" and len(result.steps) == 3
    # The policy's own limit is stricter than --max-steps: it wins.
    limited, _, _ = _run(tmp_path / "policy", [fixed(Wait(ms=0))], "limits:\n  max_steps: 2\n", max_steps=9)
    assert limited.status == "max_steps" and len(limited.steps) == 2
    slow, _, _ = _run(tmp_path / "time", [fixed(Wait(ms=0))], max_steps=50, max_runtime_s=0.001)
    assert slow.status == "deadline" and "0.001 s time limit (--max-runtime)" in slow.stop_reason


def test_history_keeps_k_images_and_evicts_in_blocks_with_a_stable_prefix(tmp_path: Path) -> None:
    result, chat, _ = _run(tmp_path, [fixed(Wait(ms=0))], max_steps=9, history_images=4, history_block=2)
    assert chat.images_per_request() == [1, 2, 3, 4, 3, 4, 3, 4, 3]
    # Between evictions each request starts with the whole previous request (minus its last message).
    for before, after in ((0, 1), (1, 2), (2, 3), (4, 5), (6, 7)):
        prev, cur = chat.requests[before], chat.requests[after]
        assert [m.model_dump() for m in prev[:-1]] == [m.model_dump() for m in cur[: len(prev) - 1]]
    assert "Earlier steps" in chat.requests[4][1].parts[0].text and "step 1:" in chat.requests[4][1].parts[0].text


def test_replay_page_shows_every_step_with_overlays(tmp_path: Path) -> None:
    script = [click_screen(-1000, 0), lambda g: Click(x=g.image_width + 5, y=0), fixed(Done(result="ok"))]
    result, _, _ = _run(tmp_path, script, 'actions:\n  deny_regions:\n    - {x: 0, y: 0, w: 10, h: 10}\n')
    page = write_replay(Path(result.run)).read_text(encoding="utf-8")
    assert page.count('class="step"') == 3 and page.count("data:image/jpeg;base64,") == 3
    assert "<circle" in page and "invalid" in page and 'href="#step-2"' in page


def test_default_history_evicts_k_minus_one_screenshots_at_once(tmp_path: Path) -> None:
    # K=4 keeps 2..4 screenshots and evicts 3 at a time: two of every three requests extend the
    # previous one, which is what brings the prefix-cache hit rate over 0.60 (tests/bench/bench_desktop.py).
    result, chat, _ = _run(tmp_path, [fixed(Wait(ms=0))], max_steps=9)
    assert chat.images_per_request() == [1, 2, 3, 4, 2, 3, 4, 2, 3]
    for before, after in ((0, 1), (1, 2), (2, 3), (4, 5), (5, 6), (7, 8)):
        prev, cur = chat.requests[before], chat.requests[after]
        assert [m.model_dump() for m in prev[:-1]] == [m.model_dump() for m in cur[: len(prev) - 1]]


def test_a_step_too_large_for_the_model_is_a_one_line_usage_error(tmp_path: Path) -> None:
    profile = tiny_profile()  # room for the rules and the task, not for one screenshot:
    small = profile.model_copy(update={"max_model_len": profile.output_reserve + 200})
    with pytest.raises(StepTooLargeError) as caught:
        _run(tmp_path, [fixed(Wait(ms=0))], chat=ScriptedChat([fixed(Wait(ms=0))], screen=SCREEN, profile=small))
    assert isinstance(caught.value, UsageError) and exit_code_for(caught.value) == 2
    assert "--budget" in str(caught.value) and "\n" not in str(caught.value)


class _BuggyCounter(ScriptedChat):
    def count_prompt_tokens(self, messages, image_budget=None) -> int:
        return DesktopOptions.model_validate({"task": ""}).max_steps  # a bug: a model built from bad values


def test_a_bug_while_building_the_prompt_is_not_reported_as_the_users_mistake(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as caught:
        _run(tmp_path, [fixed(Wait(ms=0))], chat=_BuggyCounter([fixed(Wait(ms=0))], screen=SCREEN))
    assert not isinstance(caught.value, USER_ERRORS)
