"""``tilepilot eval desktop``: the reference answerer completes every task in real Tk apps under Xvfb, judged by
the apps' own state (a form submitted, a menu entry chosen, a row selected after scrolling, Unicode typed, a
dialog closed, a confirmed Ctrl+Q, a refusal where the rules deny the only way); oracle:0.5 about half; a
``done`` that did nothing is a failure."""

from __future__ import annotations

import base64
import io
import json

import pytest
from PIL import Image

from tilepilot.agents.eval.rigs.apps.client import Layout, Target
from tilepilot.agents.eval.desktop_suite import SMALL_TASKS, TASKS, DesktopAnswerer, PlanStep, StepLabel, TaskLabels, concrete, matches
from tilepilot.agents.eval.rigs.screen_oracle import ScreenRegistry, fingerprint
from tests.agents.eval.eval_cli import oracle_run_fixture
from tests.requires import require_binary


@pytest.fixture(scope="module")
def x_tools() -> None:
    require_binary("Xvfb", "xvfb")
    require_binary("xdotool")


desktop_run = oracle_run_fixture("desktop")


def test_oracle_completes_every_task_by_the_apps_state(x_tools, desktop_run):
    _, results = desktop_run
    metrics, breakdown = results["oracle"]["metrics"], results["oracle"]["breakdown"]
    assert metrics["success_rate"] == 1.0 and metrics["oracle_unidentified"] == 0, (metrics, breakdown)
    assert metrics["tasks"] == len(SMALL_TASKS)
    assert metrics["guard_denials"] >= 1 and metrics["confirmations"] >= 1  # the deny task and Ctrl+Q
    assert metrics["seconds_per_step"] > 0 and metrics["steps_per_task"] >= 2
    assert {f"task={t}" for t in SMALL_TASKS} | {"screen=1280x800"} == set(breakdown)


def test_half_oracle_scores_about_half_and_a_claimed_done_is_not_success(x_tools, desktop_run):
    out, results = desktop_run
    assert 0.3 <= results["oracle:0.5"]["metrics"]["success_rate"] <= 0.7, results["oracle:0.5"]
    stored = {r["system"]: r for r in json.loads((out / "results.json").read_text())}
    misses = stored["oracle:0.5"]["misses"]
    assert misses and all("run done" in m["detail"] for m in misses)  # the model said done; the app says no
    assert all(m["image"] and (out / m["image"]).is_file() for m in misses)


def test_full_suite_covers_what_the_issue_lists():
    assert len(TASKS) >= 10 and len({t.id for t in TASKS}) == len(TASKS)
    kinds = {s.kind for t in TASKS for s in t.plan}
    assert {"click", "type", "scroll_to", "hotkey", "key", "drag", "fail"} <= kinds
    assert any(t.refuse and t.deny_target for t in TASKS) and any(t.confirm for t in TASKS)
    assert any(not s.text.isascii() for t in TASKS for s in t.plan if s.kind == "type")


def test_plan_steps_become_screen_actions_from_the_toolkits_layout():
    layout = Layout(targets={"list:cities": Target(x=40, y=60, width=260, height=200),
                             "item:zanzibar": Target(x=42, y=230, width=240, height=24)}, state={})
    scroll = PlanStep(kind="scroll_to", target="list:cities", goal="item:oslo")
    action = concrete(scroll, layout)
    assert action is not None and (action.kind, action.x, action.y, action.dy) == ("scroll", 169, 159, -5)
    assert concrete(PlanStep(kind="scroll_to", target="list:cities", goal="item:zanzibar"), layout) is None
    click = concrete(PlanStep(kind="click", target="item:zanzibar"), layout)
    assert click is not None and layout.targets["item:zanzibar"].contains(*click.points()[0])
    assert matches({"a": 1, "b": [1]}, {"b": [1]}) and not matches({"a": 1}, {"a": 2})


def _request(image: Image.Image, task: str, step: int) -> dict:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG")
    url = "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()
    content = [{"type": "text", "text": f"Task: {task}"}, {"type": "image_url", "image_url": {"url": url}},
               {"type": "text", "text": f"Screenshot of step {step}. Your next action?"}]
    return {"messages": [{"role": "user", "content": content}]}


def test_answerer_follows_the_rehearsal_and_refuses_to_guess(tmp_path):
    screen = Image.new("RGB", (1280, 800), "#ececec")
    screen.paste((40, 40, 200), (100, 100, 400, 300))
    steps = [StepLabel(fingerprint=fingerprint(screen), action={"kind": "click", "x": 639, "y": 399}),
             StepLabel(fingerprint=fingerprint(screen), action={"kind": "done", "result": "ok"})]
    ScreenRegistry(tmp_path, TaskLabels).add("t", TaskLabels(key="t", task="Do it.", width=1280, height=800, steps=steps))
    answerer = DesktopAnswerer(tmp_path)
    first = answerer(_request(screen.resize((640, 400)), "Do it.", 0))
    assert first is not None and first.right["action"] == {"kind": "click", "x": 319, "y": 199, "button": "left", "count": 1}
    assert first.wrong["action"]["kind"] == "done"
    assert answerer(_request(screen, "Do it.", 1)).right["action"]["kind"] == "done"  # type: ignore[union-attr]
    assert answerer(_request(screen, "Do it.", 2)) is None  # beyond the plan
    assert answerer(_request(screen, "Something else.", 0)) is None
    assert answerer(_request(Image.new("RGB", (1280, 800), "black"), "Do it.", 0)) is None  # another screen altogether
