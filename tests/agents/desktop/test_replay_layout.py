"""The replay page reads well (issue 13, point 5): a 1366x768 run rendered by headless Chromium
at 1280 px wide, with a script injected into a copy of the page that measures the real layout.

Nothing may overflow: the page never scrolls sideways, each screenshot fits its column, the
text panel is not cut off and every table cell wraps its text. The overlays mark the model's
point, the drag path and the widget box from the accessibility tree.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from tilepilot.agents.desktop.replay import write_replay
from tilepilot.agents.desktop.runner import run_desktop
from tilepilot.agents.desktop.screen_texts import StaticTexts
from tilepilot.agents.desktop.state import DesktopOptions
from tilepilot.agents.rules import ScreenText, build_policy
from tests.agents.desktop.doubles import ScriptedChat, click_screen, fixed
from tests.agents.desktop.test_loop_offline import RecordingExecutor
from tilepilot.tools.actions import Done, Drag, Type
from tilepilot.tools.screen import Capture, Geometry

SCREEN = (0, 0, 1366, 768)
DELETE = (1100, 600, 1220, 640)  # the Delete button's box, screen px
VIEWPORT = 1280

MEASURE = """<script>
const out = {page: [document.documentElement.scrollWidth, window.innerWidth], problems: []};
const box = el => el.getBoundingClientRect();
for (const step of document.querySelectorAll('.step')) {
  const outer = box(step);
  for (const part of step.children) {
    const r = box(part);
    if (r.right > outer.right + 1 || r.left < outer.left - 1) out.problems.push(step.id + ': ' + part.className + ' sticks out');
  }
  const shot = step.querySelector('.shot'), img = step.querySelector('.shot img');
  if (img && box(img).width > box(shot).width + 1) out.problems.push(step.id + ': screenshot wider than its column');
  if (img && box(img).width < 200) out.problems.push(step.id + ': screenshot shrunk to ' + box(img).width);
  for (const el of step.querySelectorAll('.info, td, code')) {
    if (el.scrollWidth > el.clientWidth + 1) out.problems.push(step.id + ': ' + el.tagName + ' overflows');
  }
}
out.steps = document.querySelectorAll('.step').length;
const pre = document.createElement('pre'); pre.id = 'layout'; pre.textContent = JSON.stringify(out);
document.body.appendChild(pre);
</script>"""


class DesktopScreen:
    def capture_monitor(self, index: int = 1) -> Capture:
        image = Image.new("RGB", SCREEN[2:], "#dfe3e8")
        ImageDraw.Draw(image).rectangle(DELETE, fill="#c62828")
        left, top, width, height = SCREEN
        return Capture(image=image, geometry=Geometry(left=left, top=top, width=width, height=height,
                                                      image_width=width, image_height=height), monitor=index)


def _run(tmp_path: Path) -> Path:
    rules = tmp_path / "rules.md"
    rules.write_text("---\napplies_to: [desktop]\nactions:\n  deny_text: ['/delete/i']\n---\n", encoding="utf-8")
    widget = ScreenText(text="Delete", bbox=DELETE, source="accessibility", role="push button")
    script = [
        click_screen(1160, 620),  # denied: the Delete button, its box drawn
        lambda g: Drag(path=[(20, 20), (g.image_width // 2, g.image_height // 3), (g.image_width - 30, g.image_height // 2)]),
        fixed(Type(text="W" * 180)),  # one unbreakable word, longer than any column
        fixed(Done(result="a long result " + "without-any-space-" * 12)),
    ]
    chat = ScriptedChat(script, screen=SCREEN)
    options = DesktopOptions(task="clean up the list " * 12, settle_ms=0, max_steps=6)
    result = run_desktop(options, chat, build_policy("desktop", [str(rules)]), tmp_path / "run",
                         texts=StaticTexts([widget], window_title="app"), screen=DesktopScreen(), executor=RecordingExecutor())
    assert result.status == "done" and result.steps[0].guard.verdict == "deny"
    return Path(result.run)


def test_replay_overlays_map_the_point_and_the_widget_box(tmp_path: Path) -> None:
    run = _run(tmp_path)
    page = write_replay(run).read_text(encoding="utf-8")
    first = json.loads((run / "trajectory.json").read_text())["steps"][0]
    g = Geometry(**first["geometry"])
    assert (g.image_width, g.image_height) == (1488, 816)  # --budget auto at 1366x768
    x0, y0 = g.to_image(DELETE[0], DELETE[1])
    assert f'<rect x="{x0:.1f}" y="{y0:.1f}"' in page and "push button" in page
    assert page.count("<polyline") == 1 and page.count("<circle") >= 2


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs chromium")
def test_a_1366x768_replay_fits_1280_px_in_chromium(tmp_path: Path) -> None:
    run = _run(tmp_path)
    page = write_replay(run).read_text(encoding="utf-8")
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", MEASURE + "</body>"), encoding="utf-8")
    proc = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         f"--window-size={VIEWPORT},1000", "--dump-dom", probe.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    found = re.search(r'<pre id="layout">(.*?)</pre>', proc.stdout, re.S)
    assert found, proc.stderr[-2000:]
    layout = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert layout["steps"] == 4
    scroll_width, inner_width = layout["page"]
    assert inner_width == VIEWPORT and scroll_width <= inner_width, layout
    assert layout["problems"] == []
