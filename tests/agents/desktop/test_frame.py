"""One coordinate frame for the model (issue 13, point 3), property-based over random screens,
monitor offsets, image budgets and both conventions (screenshot pixels, 0..1000 normalised).

What the model reads back -- its own action in the history, the executor's outcome, the guard's
reason naming the point and the forbidden region -- is in the model's frame, never in screen
pixels. The guard and the executor are the real ones (a real rule file, a dry-run UIExecutor).
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from tilepilot.agents.desktop.actions import check_model_action, to_screen
from tilepilot.agents.desktop.frame import NORMALIZED_MAX, ModelFrame
from tilepilot.agents.desktop.history import history_line, instructions
from tilepilot.agents.desktop.state import ALL_KINDS, GuardRecord, StepRecord
from tilepilot.agents.rules import GuardContext, ScreenBounds, build_policy, guard
from tilepilot.model_runtime.budget import image_grid
from tilepilot.model_runtime.profiles import IMAGE_BUDGETS
from tilepilot.tools.actions import Click
from tilepilot.tools.screen import Geometry, Monitor
from tilepilot.tools.ui import UIExecutor

POINT = re.compile(r"\((-?\d+), (-?\d+)\)")
RECT = re.compile(r"\(x=(-?\d+), y=(-?\d+), w=(-?\d+), h=(-?\d+)\)")


@st.composite
def frames(draw) -> ModelFrame:
    width, height = draw(st.integers(640, 3840)), draw(st.integers(480, 2160))
    grid = image_grid(width, height, draw(st.sampled_from(IMAGE_BUDGETS)))
    geometry = Geometry(left=draw(st.integers(-4000, 4000)), top=draw(st.integers(-2000, 2000)), width=width,
                        height=height, image_width=grid.width, image_height=grid.height)
    return ModelFrame(geometry=geometry, convention=draw(st.sampled_from(["pixels", "normalized"])))


def _step(frame: ModelFrame, action: Click, verdict: str) -> StepRecord:
    g = frame.geometry
    screen_action = to_screen(action, frame)
    sx, sy = screen_action.points()[0]
    with tempfile.TemporaryDirectory() as tmp:
        rules = Path(tmp) / "rules.md"
        # A forbidden region around the point (relative to the monitor, as rule files write it), or far away.
        rx, ry = (max(0, sx - g.left - 5), max(0, sy - g.top - 5)) if verdict == "deny" else (0, 0)
        size = 10 if verdict == "deny" else 1
        rules.write_text(f"---\napplies_to: [desktop]\nactions:\n  deny_regions:\n    - {{x: {rx}, y: {ry}, w: {size}, h: {size}}}\n---\n",
                         encoding="utf-8")
        policy = build_policy("desktop", [str(rules)])
    context = GuardContext(agent="desktop", screen=ScreenBounds(left=g.left, top=g.top, width=g.width, height=g.height))
    decision = guard(screen_action, context, policy)
    assert decision.verdict == verdict
    monitor = Monitor(index=1, left=g.left, top=g.top, width=g.width, height=g.height)
    done = UIExecutor(dry_run=True, monitors=[monitor]).execute(screen_action) if verdict == "allow" else None
    return StepRecord(step=0, started_at=0, screenshot="", geometry=g, coordinates=frame.convention, action=action,
                      screen_action=screen_action, model_xy=action.points(), screen_xy=screen_action.points(),
                      guard=GuardRecord(verdict=decision.verdict, reason=decision.reason),
                      executed=False, result=done.detail if done else "")


def _close(found: tuple[int, int], expected: tuple[int, int], frame: ModelFrame) -> bool:
    # Screen pixels are coarser than model points when the grid upscales: one screen pixel back
    # in the model's frame is within one model unit per screen pixel (plus rounding).
    g = frame.geometry
    unit_x = (frame.x_max + 1) / g.width + 1
    unit_y = (frame.y_max + 1) / g.height + 1
    return abs(found[0] - expected[0]) <= unit_x and abs(found[1] - expected[1]) <= unit_y


@settings(max_examples=120, deadline=None)
@given(frames(), st.data(), st.sampled_from(["allow", "deny"]))
def test_history_and_outcome_lines_are_in_the_models_frame(frame: ModelFrame, data: st.DataObject, verdict: str) -> None:
    x = data.draw(st.integers(20, frame.x_max - 20))
    y = data.draw(st.integers(20, frame.y_max - 20))
    action = Click(x=x, y=y)
    assert check_model_action(action, frame, ("click",)) is None
    step = _step(frame, action, verdict)
    line = history_line(step)
    points = [(int(a), int(b)) for a, b in POINT.findall(line)]
    assert points, line
    assert all(_close(p, (x, y), frame) for p in points), (line, (x, y), step.screen_xy)
    sx, sy = step.screen_xy[0]
    if (sx, sy) != (x, y) and not _close((sx, sy), (x, y), frame):
        assert f"({sx}, {sy})" not in line  # the screen point never reaches the model
    for rx, ry, rw, rh in RECT.findall(line):  # the forbidden region, around the point, in the model's frame
        assert int(rx) <= x + 1 and int(ry) <= y + 1 and int(rx) + int(rw) >= x - 1 and int(ry) + int(rh) >= y - 1, line
        assert 0 < int(rw) <= frame.x_max and 0 < int(rh) <= frame.y_max


@settings(max_examples=200, deadline=None)
@given(frames(), st.data())
def test_both_conventions_reach_every_edge_and_round_trip(frame: ModelFrame, data: st.DataObject) -> None:
    g = frame.geometry
    assert frame.to_screen(0, 0) == (g.left, g.top)
    assert frame.to_screen(frame.x_max, frame.y_max) == (g.right, g.bottom)
    assert check_model_action(Click(x=frame.x_max + 1, y=0), frame, ("click",)) is not None
    sx, sy = data.draw(st.integers(g.left, g.right)), data.draw(st.integers(g.top, g.bottom))
    mx, my = frame.from_screen(sx, sy)
    assert frame.contains(mx, my)
    back = frame.to_screen(mx, my)
    # Normalised points are coarser than big screens' pixels: one unit spans width/1000 pixels.
    assert abs(back[0] - sx) <= max(1, g.width / (frame.x_max + 1)) and abs(back[1] - sy) <= max(1, g.height / (frame.y_max + 1))


def test_the_prompt_documents_every_offered_action_and_the_frame() -> None:
    g = Geometry(left=0, top=0, width=1280, height=800, image_width=1440, image_height=864)
    pixels = instructions(ModelFrame(geometry=g), ALL_KINDS)
    assert "x from 0 (left) to 1439" in pixels and "y from 0 (top) to 863" in pixels
    assert "dy > 0 scrolls up" in pixels and "enter, tab, escape" in pixels and "double click" in pixels
    assert all(f"- {kind} {{" in pixels for kind in ALL_KINDS)
    normal = instructions(ModelFrame(geometry=g, convention="normalized"), ("click", "done"))
    assert f"0..{NORMALIZED_MAX}" in normal and "- scroll" not in normal and "1439" not in normal
