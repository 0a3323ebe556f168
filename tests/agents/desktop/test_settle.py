"""After an action the agent waits until the screen stops changing before the next screenshot, and never
longer than ``settle_max_ms``: a redraw that takes a few frames is waited out, an endless animation is not."""

from __future__ import annotations

from types import SimpleNamespace

from PIL import Image, ImageDraw

from tilepilot.agents.desktop.graph import wait_until_settled
from tilepilot.agents.desktop.state import DesktopOptions
from tilepilot.tools.screen import Capture, Geometry

SIZE = (320, 200)


class RedrawingScreen:
    """A screen whose bar grows for ``changing`` captures, then stays (``changing=None``: grows forever)."""

    def __init__(self, changing: int | None) -> None:
        self.changing, self.captures = changing, 0

    def capture_monitor(self, index: int = 1) -> Capture:
        self.captures += 1
        frame = self.captures if self.changing is None else min(self.captures, self.changing)
        image = Image.new("RGB", SIZE, "white")
        ImageDraw.Draw(image).rectangle((0, 0, 8 * frame % SIZE[0] + 8, 60), fill="navy")
        geometry = Geometry(left=0, top=0, width=SIZE[0], height=SIZE[1], image_width=SIZE[0], image_height=SIZE[1])
        return Capture(image=image, geometry=geometry, monitor=index)


def _ctx(screen: RedrawingScreen, settle_max_ms: int) -> SimpleNamespace:
    sleeps: list[float] = []
    return SimpleNamespace(screen=screen, options=DesktopOptions(task="t", settle_max_ms=settle_max_ms), sleep=sleeps.append, sleeps=sleeps)


def test_a_redraw_is_waited_out_until_two_captures_match():
    screen = RedrawingScreen(changing=5)
    wait_until_settled(_ctx(screen, 3000))
    assert screen.captures == 6  # frames 1..5 differ, the 6th matches the 5th


def test_a_screen_that_never_settles_is_given_up_on_at_the_bound():
    screen = RedrawingScreen(changing=None)
    ctx = _ctx(screen, 50)
    ctx.sleep = lambda s: __import__("time").sleep(s)  # real time: the bound is wall time
    wait_until_settled(ctx)
    assert 1 <= screen.captures <= 3  # 50 ms allow at most one 120 ms poll: returned, not an endless wait


def test_settling_can_be_turned_off():
    screen = RedrawingScreen(changing=None)
    wait_until_settled(_ctx(screen, 0))
    assert screen.captures == 0
