"""tilepilot.tools.screen against real X servers: Xvfb (one monitor) and Xorg+dummy (two side by side)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tools.test_geometry import model_grid
from tests.x11.servers import DEFAULT_DUAL_HEADS, XServer
from tests.x11.tk import TkApp, launch_tk_app
from tilepilot.tools.errors import CaptureError, DisplayUnavailableError, MonitorNotFoundError
from tilepilot.tools.screen import Capture, Region, Screen, capture, list_monitors

pytestmark = pytest.mark.x11
REPO_ROOT = Path(__file__).resolve().parents[2]


def _assert_patches_visible(cap: Capture, app: TkApp) -> None:
    """Every colour patch shows its exact colour, mapped through the capture's geometry."""
    assert app.ready is not None
    for name, patch in app.ready.patches.items():
        for sx, sy in (patch.center, (patch.x, patch.y), (patch.x + patch.width - 1, patch.y + patch.height - 1)):
            ix, iy = cap.geometry.to_image(sx, sy)
            assert cap.image.getpixel((round(ix), round(iy))) == patch.rgb, (name, sx, sy)


def test_list_monitors_single_screen(xvfb: XServer) -> None:  # noqa: F811
    monitors = list_monitors(xvfb.display)
    assert [(m.index, m.left, m.top, m.width, m.height) for m in monitors] == [
        (0, 0, 0, 1280, 800), (1, 0, 0, 1280, 800)]
    assert monitors[0].is_virtual and not monitors[1].is_virtual


def test_capture_monitor_shows_app_colours(xvfb: XServer, tk_app: TkApp) -> None:  # noqa: F811
    with Screen(xvfb.display) as screen:
        cap = screen.capture_monitor(1)
        everything = screen.capture_all()
    assert cap.image.mode == "RGB" and cap.image.size == (1280, 800) and cap.monitor == 1
    g = cap.geometry
    assert (g.left, g.top, g.width, g.height, g.image_width, g.image_height) == (0, 0, 1280, 800, 1280, 800)
    assert g.scale_x == g.scale_y == 1.0
    _assert_patches_visible(cap, tk_app)
    assert everything.monitor == 0 and everything.image.tobytes() == cap.image.tobytes()
    # Sanity: the mapping is not vacuous, the patches differ from the window background.
    red = tk_app.ready.patches["red"]
    assert cap.image.getpixel((red.x - 3, red.y)) != red.rgb


def test_capture_region_has_offset_geometry(xvfb: XServer, tk_app: TkApp) -> None:  # noqa: F811
    red, blue = tk_app.ready.patches["red"], tk_app.ready.patches["blue"]
    region = Region(left=red.x + 10, top=red.y + 5, width=blue.x + blue.width - red.x - 10, height=30)
    cap = capture(region=region, display=xvfb.display)
    assert cap.monitor == -1 and cap.image.size == (region.width, region.height)
    assert (cap.geometry.left, cap.geometry.top) == (region.left, region.top)
    assert cap.image.getpixel((0, 0)) == red.rgb
    assert cap.image.getpixel((cap.image.width - 1, 0)) == blue.rgb
    assert cap.geometry.to_screen(cap.image.width - 1, 29) == (blue.x + blue.width - 1, red.y + 34)


def test_resized_capture_maps_back_to_the_same_widgets(xvfb: XServer, tk_app: TkApp) -> None:  # noqa: F811
    full = capture(1, display=xvfb.display)
    for budget in (280, 1120):
        w, h = model_grid(1280, 800, budget)
        small = full.resized_to(w, h)
        assert small.image.size == (w, h) and small.geometry.image_width == w
        assert (small.geometry.width, small.geometry.height) == (1280, 800)
        for patch in tk_app.ready.patches.values():
            ix, iy = small.geometry.to_image(*patch.center)
            pixel = small.image.getpixel((round(ix), round(iy)))
            assert all(abs(a - b) <= 24 for a, b in zip(pixel, patch.rgb)), (budget, pixel, patch)
            # the image point maps back inside the patch on screen
            assert patch.contains(*small.geometry.to_screen(round(ix), round(iy)))
    assert full.resized_to(1280, 800) is full


def test_bad_monitor_and_region_are_one_line_errors(xvfb: XServer) -> None:  # noqa: F811
    with Screen(xvfb.display) as screen:
        with pytest.raises(MonitorNotFoundError) as err:
            screen.capture_monitor(5)
        assert "monitor 5" in str(err.value) and "\n" not in str(err.value)
        with pytest.raises(CaptureError) as err:
            screen.capture_region(Region(left=1200, top=700, width=200, height=200))
        assert "outside" in str(err.value) and "\n" not in str(err.value)


def test_no_display_is_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    with pytest.raises(DisplayUnavailableError) as err:
        capture()
    message = str(err.value)
    assert "DISPLAY is not set" in message and "\n" not in message


def test_unreachable_display_is_one_line_error(capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(DisplayUnavailableError) as err:
        list_monitors(":987")
    assert "':987'" in str(err.value) and "\n" not in str(err.value)
    assert "Traceback" not in capfd.readouterr().err


# --- two monitors side by side (Xorg + dummy driver) -------------------------------------
SECOND = DEFAULT_DUAL_HEADS[1]  # 1280x1024 at +1920+0


def test_dual_monitor_layout(xorg_dual: XServer) -> None:  # noqa: F811
    monitors = list_monitors(xorg_dual.display)
    assert [(m.left, m.top, m.width, m.height) for m in monitors] == [
        (0, 0, 3200, 1080), (0, 0, 1920, 1080), (SECOND.left, SECOND.top, SECOND.width, SECOND.height)]


@pytest.fixture()
def app_on_second_monitor(xorg_dual: XServer, tmp_path: Path):  # noqa: F811
    app = launch_tk_app(xorg_dual, tmp_path / "events.jsonl", geometry="640x420+2100+150")
    yield app
    app.stop()


def test_second_monitor_capture_and_click_through_geometry(
    xorg_dual: XServer, app_on_second_monitor: TkApp  # noqa: F811
) -> None:
    app = app_on_second_monitor
    assert app.ready.window.x >= SECOND.left  # the window really is on monitor 2
    cap = capture(2, display=xorg_dual.display)
    assert (cap.geometry.left, cap.geometry.top) == (SECOND.left, SECOND.top)
    assert cap.image.size == (SECOND.width, SECOND.height)
    _assert_patches_visible(cap, app)

    # What the agent does: resize to the model grid, pick an image point, map it back, click.
    w, h = model_grid(SECOND.width, SECOND.height, 1120)
    seen = cap.resized_to(w, h)
    delete = app.widget(".delete")
    ix, iy = (round(v) for v in seen.geometry.to_image(*delete.center))
    target = seen.geometry.to_screen(ix, iy)
    assert target[0] > 1920 and delete.contains(*target)
    _click_in_child_process(xorg_dual.display, target)
    event = app.wait_for(lambda e: e["event"] == "button_invoked")
    assert event["name"] == "Delete"
    press = app.events_of("button_press")[-1]
    assert (press["widget"], press["x_root"], press["y_root"]) == (".delete", *target)


def _click_in_child_process(display: str, point: tuple[int, int]) -> None:
    # pyautogui binds to one display per process (the session's Xvfb here), so use a child.
    code = (
        "import sys\nfrom tilepilot.tools.ui import UIExecutor\nfrom tilepilot.tools.actions import Click\n"
        f"UIExecutor({display!r}, pause_s=0.02).execute(Click(x={point[0]}, y={point[1]}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "DISPLAY": display}
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-800:]
