"""``--budget auto`` (issue 13, point 4): the smallest image budget whose grid keeps every screen pixel.

The grids come from tilepilot.model_runtime.budget.image_grid (the server's own resize); these tests pin
the documented choice for common screens and check the agent sends exactly that.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from tilepilot.model_runtime.budget import image_grid, native_budget
from tilepilot.model_runtime.profiles import IMAGE_BUDGETS
from tests.agents.desktop.doubles import fixed
from tests.agents.desktop.test_loop_offline import _run
from tests.conftest import tilepilot
from tilepilot.tools.actions import Done
from tilepilot.tools.screen import Capture, Geometry

DOCUMENTED = {(800, 600): 280, (1280, 800): 560, (1366, 768): 560, (1920, 1080): 1120, (2560, 1440): 1120}


@pytest.mark.parametrize("size, budget", DOCUMENTED.items(), ids=[f"{w}x{h}" for w, h in DOCUMENTED])
def test_auto_picks_the_smallest_budget_that_does_not_shrink_the_screen(size: tuple[int, int], budget: int) -> None:
    width, height = size
    assert native_budget(width, height) == budget
    grid = image_grid(width, height, budget)
    smaller = [b for b in IMAGE_BUDGETS if b < budget]
    if grid.width >= width and grid.height >= height:
        # Every smaller budget would shrink it.
        assert all(image_grid(width, height, b).width < width or image_grid(width, height, b).height < height for b in smaller)
    else:  # no budget keeps a 2560x1440 screen whole: the largest one
        assert budget == max(IMAGE_BUDGETS)


def _screen(width: int, height: int):
    class Screen:
        def capture_monitor(self, index: int = 1) -> Capture:
            geometry = Geometry(left=0, top=0, width=width, height=height, image_width=width, image_height=height)
            return Capture(image=Image.new("RGB", (width, height), "white"), geometry=geometry, monitor=index)

    return Screen


@pytest.mark.parametrize("budget, expected", [("auto", 560), (1120, 1120), (280, 280)])
def test_the_agent_sends_the_auto_grid_and_an_explicit_budget_wins(tmp_path: Path, monkeypatch, budget, expected) -> None:
    monkeypatch.setattr("tests.agents.desktop.test_loop_offline.FakeScreen", _screen(1280, 800))
    result, chat, _ = _run(tmp_path, [fixed(Done())], budget=budget)
    step = result.steps[0]
    grid = image_grid(1280, 800, expected)
    assert step.budget == expected and step.usage is not None
    assert (step.geometry.image_width, step.geometry.image_height) == (grid.width, grid.height)
    sent = [p.image for p in chat.requests[0][-1].parts if hasattr(p, "image")][0]
    assert sent.size == (grid.width, grid.height)


def test_a_bad_budget_is_one_line() -> None:
    proc = tilepilot("desktop", "do it", "--budget", "lots")
    assert proc.returncode != 0 and "--budget must be auto or one of" in proc.stderr and "Traceback" not in proc.stderr
    proc = tilepilot("desktop", "do it", "--budget", "300")
    assert proc.returncode != 0 and "--budget must be one of" in proc.stderr and "Traceback" not in proc.stderr
