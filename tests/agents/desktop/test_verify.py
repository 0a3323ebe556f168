"""Verified steps (issue 13, point 2): "no visible change" goes back to the model, and the same
action on an unchanged screen three times in a row ends the run as ``stuck``.

The offline tests use a frozen screen and the recording executor; the last one is the real
thing: Xvfb, openbox and the Tk app, clicking an empty spot of the desktop.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from tilepilot.agents.desktop.replay import write_replay
from tilepilot.agents.desktop.state import NO_CHANGE
from tilepilot.agents.desktop.verify import STUCK_REPEATS, compare, thumbnail
from tilepilot.model_runtime.payloads import image_bytes
from tests.agents.desktop.conftest import drive
from tests.agents.desktop.doubles import click_screen, fixed
from tests.agents.desktop.test_loop_offline import SCREEN, _run
from tilepilot.tools.actions import Click, Done, Wait
from tilepilot.tools.screen import Capture, Geometry


def _form(label: str) -> Image.Image:
    image = Image.new("RGB", (1280, 800), "#ececec")
    draw = ImageDraw.Draw(image)
    draw.rectangle((100, 100, 400, 130), fill="white", outline="grey")
    draw.text((110, 110), label, fill="black", font=ImageFont.load_default())
    return image


def test_a_jpeg_round_trip_is_no_change_but_one_short_word_is() -> None:
    before = _form("Name")
    reread = Image.open(__import__("io").BytesIO(image_bytes(before, "jpeg", 90))).convert("RGB")
    assert not compare(thumbnail(before), thumbnail(reread)).changed
    change = compare(thumbnail(before), thumbnail(_form("Name!")))
    assert change.changed and 0 < change.changed_pixels < 20
    assert compare(thumbnail(before), thumbnail(before.resize((640, 400)))).changed  # another size


class FrozenScreen:
    """A screen that never changes, whatever the agent does."""

    def capture_monitor(self, index: int = 1) -> Capture:
        left, top, width, height = SCREEN
        geometry = Geometry(left=left, top=top, width=width, height=height, image_width=width, image_height=height)
        return Capture(image=_form("static"), geometry=geometry, monitor=index)


def test_the_same_click_on_a_static_screen_is_reported_and_ends_stuck(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("tests.agents.desktop.test_loop_offline.FakeScreen", FrozenScreen)
    result, chat, executor = _run(tmp_path, [click_screen(-1000, 0)], max_steps=10)
    assert result.status == "stuck" and len(result.steps) == STUCK_REPEATS == len(executor.done)
    assert "same click action on an unchanged screen 3 times" in result.stop_reason
    assert all(s.screen_changed is False and s.outcome().endswith(NO_CHANGE) for s in result.steps)
    # The model read it: the outcome of step 0 in the request of step 1 says so.
    texts = [p.text for m in chat.requests[1] for p in m.parts if hasattr(p, "text")]
    assert f"Outcome of step 0: ok; {NO_CHANGE}" in texts
    saved = json.loads((Path(result.run) / "trajectory.json").read_text())
    assert saved["status"] == "stuck" and [s["screen_changed"] for s in saved["steps"]] == [False] * 3
    events = [json.loads(line) for line in (Path(result.run) / "events.jsonl").read_text().splitlines()]
    assert [e["changed"] for e in events if e["kind"] == "verified"] == [False] * 3
    assert events[-1]["kind"] == "run_finished" and events[-1]["status"] == "stuck"
    page = write_replay(Path(result.run)).read_text(encoding="utf-8")
    assert "stuck" in page and page.count(NO_CHANGE) >= 3


def test_varied_actions_waits_and_a_changing_screen_are_not_stuck(tmp_path: Path, monkeypatch) -> None:
    # A changing screen (the default fake draws a longer bar each frame): never "no change".
    changing, _, _ = _run(tmp_path / "changing", [click_screen(-1000, 0)], max_steps=5)
    assert changing.status == "max_steps" and [s.screen_changed for s in changing.steps] == [True] * 4 + [None]
    monkeypatch.setattr("tests.agents.desktop.test_loop_offline.FakeScreen", FrozenScreen)
    script = [fixed(Click(x=5, y=5)), fixed(Click(x=5, y=5)), fixed(Click(x=6, y=5)), fixed(Click(x=6, y=5)), fixed(Done())]
    varied, _, _ = _run(tmp_path / "varied", script)
    assert varied.status == "done" and [s.screen_changed for s in varied.steps] == [False] * 4 + [None]
    waits, _, _ = _run(tmp_path / "waits", [fixed(Wait(ms=0))], max_steps=5)
    assert waits.status == "max_steps"  # waiting for a slow app is not being stuck


@pytest.mark.x11
def test_clicking_empty_desktop_on_xvfb_ends_stuck(xvfb, tk_app, tmp_path: Path) -> None:
    from tests.x11.fixtures import XVFB_SIZE

    rules = tmp_path / "rules.md"
    rules.write_text("---\napplies_to: [desktop]\n---\n", encoding="utf-8")
    spot = (XVFB_SIZE[0] - 120, XVFB_SIZE[1] - 100)  # bare root window, far from the Tk app and the corners
    spec = {"display": xvfb.display, "run_dir": str(tmp_path / "run"), "task": "press OK", "rules": [str(rules)],
            "screen": [0, 0, *XVFB_SIZE], "script": [{"click": list(spot)}], "texts": [],
            "options": {"max_steps": 8, "budget": 560}}
    result = drive(spec, tmp_path)
    assert result["status"] == "stuck", result["stop_reason"]
    tail = result["steps"][-STUCK_REPEATS:]
    assert all(s["screen_changed"] is False and s["executed"] for s in tail)
    assert any(NO_CHANGE in t for t in result["last_request_texts"])
