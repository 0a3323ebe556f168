"""A suggestion list that typing opened does not eat the next click (tools/popups.py, tools/ui.py).

GTK's entry completion pops a list under the field that grabs the pointer: a click anywhere outside
it only closes it. Found in real mousepad (examples/desktop-tasks/mousepad-open-completion.yaml: the
file chooser's Open button did nothing); here on a small GTK field with the shared Xvfb and openbox.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.x11.servers import XServer, terminate_process
from tilepilot.tools.actions import Click, Hotkey, Key, Type
from tilepilot.tools.popups import TypingPopups
from tilepilot.tools.ui import UIExecutor

pytestmark = pytest.mark.x11
APP = Path(__file__).resolve().parents[1] / "apps" / "gtk_completion.py"
SYSTEM_PYTHON = "/usr/bin/python3"


class CityApp:
    def __init__(self, xvfb: XServer, events: Path) -> None:
        probe = subprocess.run([SYSTEM_PYTHON, "-c", "import gi; gi.require_version('Gtk', '3.0')"], capture_output=True)
        if probe.returncode != 0:
            pytest.skip("needs GTK 3 for Debian's python3: apt-get install python3-gi gir1.2-gtk-3.0")
        self.events = events
        # NO_AT_BRIDGE: no accessibility bus is needed here, and GTK would wait for one.
        self.proc = subprocess.Popen([SYSTEM_PYTHON, str(APP), str(events)], env={**xvfb.env, "NO_AT_BRIDGE": "1"},
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
        line = self.proc.stdout.readline()
        assert line, "gtk_completion.py exited before it was ready"
        self.boxes = json.loads(line)["widgets"]

    def centre(self, name: str) -> tuple[int, int]:
        x, y, w, h = self.boxes[name]
        return x + w // 2, y + h // 2

    def wait_for(self, event: dict, timeout_s: float = 5.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if event in [json.loads(line) for line in self.events.read_text(encoding="utf-8").splitlines()]:
                return
            time.sleep(0.05)
        raise AssertionError(f"never saw {event}; saw {self.events.read_text(encoding='utf-8')[-400:]}")


@pytest.fixture()
def city_app(xvfb: XServer, tmp_path: Path) -> Iterator[CityApp]:
    app = CityApp(xvfb, tmp_path / "events.jsonl")
    yield app
    terminate_process(app.proc)


def _type_until_the_list_shows(executor: UIExecutor, popups: TypingPopups, app: CityApp, text: str) -> tuple[int, int, int, int]:
    x, y = app.centre("entry")
    executor.execute(Click(x=x, y=y))
    executor.execute(Hotkey(keys=["ctrl", "a"]))  # the typed text replaces what the field holds
    executor.execute(Type(text=text))
    deadline = time.monotonic() + 5
    while not popups.showing() and time.monotonic() < deadline:
        time.sleep(0.05)
    shown = list(popups.showing().values())
    assert len(shown) == 1, shown
    return shown[0]


def test_a_click_outside_the_list_typing_opened_reaches_its_target(xvfb: XServer, city_app: CityApp) -> None:
    executor, popups = UIExecutor(xvfb.display, pause_s=0.03), TypingPopups(xvfb.display)
    box = _type_until_the_list_shows(executor, popups, city_app, "Zan")
    assert popups.pointer_grabbed()  # the list holds the pointer: the next press is its own
    x, y = city_app.centre("book")
    record = executor.execute(Click(x=x, y=y))
    city_app.wait_for({"kind": "click", "button": "Book"})  # without the fix the list ate it
    assert record.closed_popups == [box] and record.detail.startswith("a first click closed the suggestion list")
    assert not popups.showing() and not popups.pointer_grabbed()


def test_a_click_on_the_list_chooses_a_suggestion_and_a_key_forgets_the_typing(xvfb: XServer, city_app: CityApp) -> None:
    executor, popups = UIExecutor(xvfb.display, pause_s=0.03), TypingPopups(xvfb.display)
    left, top, width, _ = _type_until_the_list_shows(executor, popups, city_app, "Zanz")
    record = executor.execute(Click(x=left + width // 4, y=top + 12))  # the first (only) row: Zanzibar
    city_app.wait_for({"kind": "text", "value": "Zanzibar"})
    assert record.closed_popups == [] and record.detail.startswith("click")
    # After a key the list is the keyboard's business: the next click is not preceded by one of ours.
    _type_until_the_list_shows(executor, popups, city_app, "Zu")
    executor.execute(Key(key="end"))
    x, y = city_app.centre("book")
    assert executor.execute(Click(x=x, y=y)).closed_popups == []
