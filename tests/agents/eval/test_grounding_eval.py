"""``tilepilot eval grounding``: the reference answerer hits every real Tk widget through the real desktop
path (budget resize, request, schema, image -> screen mapping, pyautogui click seen by the app) at two
screen sizes and two budgets; oracle:0.5 hits about half; the answerer's frame agrees with the agent's."""

from __future__ import annotations

import base64
import io
import os
import random

import pytest
from PIL import Image

from tilepilot.agents.eval.rigs.apps.client import Target, gtk_python
from tilepilot.agents.eval.grounding import GroundingAnswerer, ScreenLabels, pick_targets
from tilepilot.agents.eval.rigs.screen_oracle import ScreenRegistry, fingerprint, to_image_frame
from tilepilot.agents.eval.rigs.xserver import require_xvfb
from tests.requires import require_binary
from tilepilot.tools.errors import DisplayUnavailableError
from tilepilot.tools.screen import Geometry


@pytest.fixture(scope="module")
def x_tools() -> None:
    require_binary("Xvfb", "xvfb")



def test_oracle_hits_every_widget_at_every_budget_and_screen(x_tools, grounding_run):
    _, results = grounding_run
    metrics, breakdown = results["oracle"]["metrics"], results["oracle"]["breakdown"]
    assert metrics["hit_rate"] == 1.0 and metrics["oracle_unidentified"] == 0, metrics
    assert metrics["targets"] >= 12 and metrics["cases"] == 2 * metrics["targets"]
    assert {"budget=70", "budget=1120", "screen=1024x768", "screen=1920x1080", "budget=70,screen=1920x1080"} <= set(breakdown)
    assert all(group["hit_rate"] == 1.0 for group in breakdown.values()), breakdown
    assert "toolkit=tk" in breakdown and ("toolkit=gtk" in breakdown) == (gtk_python() is not None)


def test_half_oracle_hits_about_half_and_misses_are_drawn(x_tools, grounding_run):
    out, results = grounding_run
    metrics = results["oracle:0.5"]["metrics"]
    assert 0.3 <= metrics["hit_rate"] <= 0.7, metrics
    assert results["oracle:0.5"]["misses"] > 0 and results["oracle"]["misses"] == 0
    html = (out / "report.html").read_text()
    assert "<rect" in html and "<path" in html and "app saw" in html  # expected box, clicked point, app's view


def _request(image: Image.Image, task: str) -> dict:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    url = "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()
    content = [{"type": "text", "text": f"Task: {task}"}, {"type": "image_url", "image_url": {"url": url}},
               {"type": "text", "text": "Screenshot of step 0. Your next action?"}]
    return {"messages": [{"role": "system", "content": "rules"}, {"role": "user", "content": content}],
            "mm_processor_kwargs": {"max_soft_tokens": 280}}


def test_answerer_clicks_inside_the_target_in_the_image_frame_and_ignores_unknown_screens(tmp_path):
    rng = random.Random(7)
    screen = Image.new("RGB", (1280, 800), "#dfe8f0")
    for _ in range(40):  # some structure, so the fingerprint means something
        x, y = rng.randrange(1200), rng.randrange(760)
        screen.paste(tuple(rng.randrange(256) for _ in range(3)), (x, y, x + 60, y + 30))
    target = Target(x=500, y=300, width=24, height=18, text="checkbox:mute")
    decoy = Target(x=100, y=100, width=80, height=30, text="button:save")
    ScreenRegistry(tmp_path, ScreenLabels).add("s", ScreenLabels(
        key="s", width=1280, height=800, fingerprint=fingerprint(screen),
        targets={"click the Mute checkbox": target, "click the Save button": decoy}))
    answerer = GroundingAnswerer(tmp_path)
    for size in ((336, 192), (1392, 864), (2016, 1248)):  # shrunk, about native, upscaled
        reply = answerer(_request(screen.resize(size), "click the Mute checkbox"))
        assert reply is not None
        x, y = reply.right["action"]["x"], reply.right["action"]["y"]
        geometry = Geometry(left=0, top=0, width=1280, height=800, image_width=size[0], image_height=size[1])
        assert target.contains(*geometry.to_screen(x, y)), (size, x, y)
        wrong = reply.wrong["action"]
        assert not target.contains(*geometry.to_screen(wrong["x"], wrong["y"]))
    other = Image.new("RGB", (1280, 800), "black")
    assert answerer(_request(other.resize((1392, 864)), "click the Mute checkbox")) is None
    assert answerer(_request(screen.resize((1392, 864)), "click the Print button")) is None


def test_image_frame_agrees_with_the_agents_mapping():
    """The image pixel the oracle picks shows the screen pixel it aims at, and the agent maps it back onto
    one of the screen pixels that image pixel shows: a perfect model's click is never moved off its widget."""
    rng = random.Random(3)
    for _ in range(500):
        width, height = rng.randint(640, 2560), rng.randint(480, 1440)
        image = (rng.randint(96, 2200), rng.randint(96, 1400))
        x, y = rng.randrange(width), rng.randrange(height)
        u, v = to_image_frame(x + 0.5, y + 0.5, (width, height), image)
        sx, sy = Geometry(left=0, top=0, width=width, height=height, image_width=image[0],
                          image_height=image[1]).to_screen(u, v)
        for aimed, mapped, pixel, size, image_size in ((x, sx, u, width, image[0]), (y, sy, v, height, image[1])):
            shown = range(pixel * size // image_size, -(-(pixel + 1) * size // image_size))
            assert aimed in shown and mapped in shown, (size, image_size, aimed, pixel, mapped)


def test_small_variant_spreads_over_widget_kinds():
    targets = {f"{kind}:{i}": Target(x=10 * i, y=10, width=8, height=8) for kind in ("button", "field", "item") for i in range(5)}
    picked = pick_targets(targets, 1280, 800, 6)
    assert sorted(name.split(":")[0] for name, _ in picked) == ["button", "button", "field", "field", "item", "item"]


def test_missing_xvfb_is_one_line(monkeypatch):
    monkeypatch.setattr("tilepilot.agents.eval.rigs.xserver.shutil.which", lambda _name: None)
    with pytest.raises(DisplayUnavailableError) as err:
        require_xvfb()
    assert "\n" not in str(err.value) and "apt-get install xvfb" in str(err.value)
    with pytest.raises(DisplayUnavailableError, match="Xvfb and xdotool are not installed"):
        require_xvfb("xdotool")


def test_a_failing_screen_worker_is_one_line_and_leaves_no_x_server(tmp_path):
    require_binary("Xvfb", "xvfb")
    from pydantic import BaseModel

    from tilepilot.agents.errors import RunError
    from tilepilot.agents.eval.rigs.xserver import run_screens

    class Job(BaseModel):
        display: str

    displays: list[str] = []

    def job(display: str, _width: int, _height: int) -> Job:
        displays.append(display)
        return Job(display=display)

    with pytest.raises(RunError) as err:
        run_screens("tilepilot.agents.eval.no_such_suite", [(640, 480), (800, 600)], job, lambda w, h: tmp_path / f"{w}x{h}")
    assert "\n" not in str(err.value) and "No module named tilepilot.agents.eval.no_such_suite" in str(err.value)
    assert len(displays) == 2
    for display in displays:  # both servers are gone
        assert not os.path.exists(f"/tmp/.X11-unix/X{display.lstrip(':')}")
