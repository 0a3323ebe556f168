"""UIExecutor against a real Xvfb + openbox + the Tk test app: every action must arrive."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.x11.servers import XServer
from tests.x11.tk import TkApp
from tilepilot.tools.actions import Click, Done, Drag, Fail, Hotkey, Key, Move, Scroll, Type, Wait
from tilepilot.tools.errors import (
    ActionExecutionError,
    DisplayUnavailableError,
    FailSafeTriggered,
    OffScreenError,
)
from tilepilot.tools.screen import Monitor
from tilepilot.tools.ui import ActionRecord, UIExecutor
from tilepilot.tools.ui_unicode import KeymapPatch, segments

pytestmark = pytest.mark.x11
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def executor(xvfb: XServer) -> UIExecutor:  # noqa: F811
    return UIExecutor(xvfb.display, pause_s=0.03)


def _pointer(xvfb: XServer) -> tuple[int, int]:  # noqa: F811
    fields = dict(kv.split(":") for kv in xvfb.run("xdotool", "getmouselocation").split())
    return int(fields["x"]), int(fields["y"])


def _click_entry(executor: UIExecutor, app: TkApp) -> int:
    """Focus the entry by clicking it; returns the log length afterwards."""
    x, y = app.widget(".entry").center
    executor.execute(Click(x=x, y=y))
    app.wait_for(lambda e: e["event"] == "button_release" and e["widget"] == ".entry")
    return len(app.events())


def test_single_click_invokes_button_at_its_screen_position(executor: UIExecutor, tk_app: TkApp) -> None:  # noqa: F811
    ok = tk_app.widget(".ok")
    record = executor.execute(Click(x=ok.x + 5, y=ok.y + 7))
    tk_app.wait_for(lambda e: e["event"] == "button_invoked" and e["name"] == "OK")
    press = tk_app.events_of("button_press")[-1]
    assert (press["widget"], press["button"]) == (".ok", 1)
    assert (press["x_root"], press["y_root"]) == (ok.x + 5, ok.y + 7)
    assert (press["x"], press["y"]) == (5, 7)
    assert record.screen_points == [(ok.x + 5, ok.y + 7)] and not record.dry_run
    assert tk_app.events_of("button_invoked") == [tk_app.events_of("button_invoked")[0]]  # exactly once


def test_delete_button_is_distinguished_from_ok(executor: UIExecutor, tk_app: TkApp) -> None:  # noqa: F811
    x, y = tk_app.widget(".delete").center
    executor.execute(Click(x=x, y=y))
    event = tk_app.wait_for(lambda e: e["event"] == "button_invoked")
    assert event["name"] == "Delete"


def test_double_click_on_list_item(executor: UIExecutor, tk_app: TkApp) -> None:  # noqa: F811
    box = tk_app.widget(".listbox")
    executor.execute(Click(x=box.x + 20, y=box.y + 8, count=2))
    event = tk_app.wait_for(lambda e: e["event"] == "double_click")
    assert event["widget"] == ".listbox"
    presses = [e for e in tk_app.settle() if e["event"] == "button_press" and e["widget"] == ".listbox"]
    assert len(presses) == 2
    assert tk_app.events_of("list_select")[-1]["selected"] == ["alpha"]


def test_right_click(executor: UIExecutor, tk_app: TkApp) -> None:  # noqa: F811
    x, y = tk_app.widget(".canvas").center
    executor.execute(Click(x=x, y=y, button="right"))
    event = tk_app.wait_for(lambda e: e["event"] == "button_press")
    assert (event["widget"], event["button"], event["x_root"], event["y_root"]) == (".canvas", 3, x, y)
    assert not tk_app.events_of("drag_start")  # right button is not a drag


def test_drag_on_canvas_follows_the_path(executor: UIExecutor, tk_app: TkApp) -> None:  # noqa: F811
    c = tk_app.widget(".canvas")
    path = [(c.x + 20, c.y + 20), (c.x + 150, c.y + 60), (c.x + 250, c.y + 170)]
    executor.execute(Drag(path=path))
    end = tk_app.wait_for(lambda e: e["event"] == "drag_end")
    start = tk_app.events_of("drag_start")[0]
    motions = tk_app.events_of("drag_motion")
    assert (start["x_root"], start["y_root"]) == path[0]
    assert (end["x_root"], end["y_root"]) == path[-1]
    assert len(motions) >= 2  # intermediate motion, not a teleport
    assert (motions[-1]["x_root"], motions[-1]["y_root"]) == path[-1]
    assert any((m["x_root"], m["y_root"]) == path[1] for m in motions)


def test_scroll_vertical_and_horizontal(executor: UIExecutor, tk_app: TkApp) -> None:  # noqa: F811
    x, y = tk_app.widget(".listbox").center
    executor.execute(Scroll(x=x, y=y, dy=-3))
    executor.execute(Scroll(x=x, y=y, dy=2, dx=1))
    events = tk_app.settle()
    wheel = [(e["direction"], e["widget"]) for e in events if e["event"] == "wheel"]
    assert wheel == [("down", ".listbox")] * 3 + [("up", ".listbox")] * 2 + [("right", ".listbox")]


def test_type_ascii(executor: UIExecutor, tk_app: TkApp) -> None:  # noqa: F811
    _click_entry(executor, tk_app)
    executor.execute(Type(text="hello world 123"))
    tk_app.wait_for(lambda e: e["event"] == "entry_changed" and e["value"] == "hello world 123")


def test_type_unicode(executor: UIExecutor, tk_app: TkApp) -> None:  # noqa: F811
    text = "Grüße, Zoë — 東京"
    _click_entry(executor, tk_app)
    record = executor.execute(Type(text=text))
    tk_app.wait_for(lambda e: e["event"] == "entry_changed" and e["value"] == text, timeout_s=10)
    assert "xdotool" in record.detail


def test_type_more_distinct_characters_than_free_keycodes(executor: UIExecutor, xvfb: XServer, tk_app: TkApp) -> None:  # noqa: F811
    text = "αβγδεζηθικλμνξοπρστυφχψω 一二三四五六七八九十 ok"
    free_before = KeymapPatch(xvfb.display)
    try:
        assert len(free_before.missing(text)) > len(free_before.free)  # forces several segments
    finally:
        free_before.close()
    _click_entry(executor, tk_app)
    executor.execute(Type(text=text))
    tk_app.wait_for(lambda e: e["event"] == "entry_changed" and e["value"] == text, timeout_s=15)
    after = KeymapPatch(xvfb.display)
    try:
        assert after.free == free_before.free  # temporary key bindings were removed
    finally:
        after.close()


def test_segments_respect_capacity() -> None:
    text = "aäbößc"
    parts = segments(text, ["ä", "ö", "ß"], capacity=2)
    assert "".join(p for p, _ in parts) == text
    assert parts == [("aäbö", ["ä", "ö"]), ("ßc", ["ß"])]
    assert all(len(needed) <= 2 for _, needed in parts)


def test_hotkey_and_key_reach_the_entry(executor: UIExecutor, tk_app: TkApp) -> None:  # noqa: F811
    _click_entry(executor, tk_app)
    executor.execute(Type(text="world"))
    tk_app.wait_for(lambda e: e["event"] == "entry_changed" and e["value"] == "world")
    mark = len(tk_app.events())
    executor.execute(Hotkey(keys=["ctrl", "a"]))  # Tk entry on X11: ctrl+a = go to line start
    key = tk_app.wait_for(lambda e: e["event"] == "key_press" and e["keysym"] == "a", after=mark)
    assert key["widget"] == ".entry" and int(key["state"]) & 0x4  # ControlMask
    executor.execute(Type(text="hi "))
    tk_app.wait_for(lambda e: e["event"] == "entry_changed" and e["value"] == "hi world")
    executor.execute(Key(key="End"))  # model-style capitalisation is normalised
    executor.execute(Key(key="backspace"))
    tk_app.wait_for(lambda e: e["event"] == "entry_changed" and e["value"] == "hi worl")


def test_move_puts_the_pointer_there(executor: UIExecutor, xvfb: XServer) -> None:  # noqa: F811
    executor.execute(Move(x=321, y=234))
    assert _pointer(xvfb) == (321, 234)


def test_wait_done_fail_are_recorded(executor: UIExecutor) -> None:
    started = time.perf_counter()
    record = executor.execute(Wait(ms=120))
    assert time.perf_counter() - started >= 0.12 and record.duration_ms >= 120
    for action in (Done(result="ok"), Fail(reason="stuck")):
        rec = executor.execute(action)
        assert rec.action == action and rec.screen_points == [] and not rec.dry_run


def test_off_screen_is_rejected_not_clamped(executor: UIExecutor, tk_app: TkApp) -> None:  # noqa: F811
    before = tk_app.settle()
    for action in (Click(x=1280, y=10), Click(x=-1, y=10), Move(x=5, y=800),
                   Drag(path=[(100, 100), (1400, 100)]), Scroll(x=10, y=900, dy=1)):
        with pytest.raises(OffScreenError) as err:
            executor.execute(action)
        assert "\n" not in str(err.value) and "1280x800+0+0" in str(err.value)
    assert tk_app.settle() == before


def test_dry_run_records_but_touches_nothing(xvfb: XServer, tk_app: TkApp) -> None:  # noqa: F811
    dry = UIExecutor(xvfb.display, dry_run=True)
    pointer = _pointer(xvfb)
    before = tk_app.settle()
    ok, entry, canvas = (tk_app.widget(n).center for n in (".ok", ".entry", ".canvas"))
    actions = [Click(x=ok[0], y=ok[1]), Click(x=entry[0], y=entry[1], count=2), Type(text="nope"),
               Hotkey(keys=["ctrl", "a"]), Drag(path=[canvas, (canvas[0] + 50, canvas[1])]),
               Scroll(x=canvas[0], y=canvas[1], dy=-2), Move(x=10, y=10), Key(key="enter")]
    records = [dry.execute(a) for a in actions]
    assert all(isinstance(r, ActionRecord) and r.dry_run for r in records)
    assert records[0].screen_points == [ok] and records[3].detail == "dry run: hotkey ctrl+a"
    assert tk_app.settle(quiet_s=0.5) == before
    assert _pointer(xvfb) == pointer
    with pytest.raises(OffScreenError):
        dry.execute(Click(x=5000, y=5))


def test_dry_run_without_display_uses_given_monitors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    mons = [Monitor(index=0, left=0, top=0, width=3200, height=1080),
            Monitor(index=1, left=0, top=0, width=1920, height=1080),
            Monitor(index=2, left=1920, top=0, width=1280, height=1024)]
    dry = UIExecutor(dry_run=True, monitors=mons)
    assert dry.execute(Click(x=2500, y=1000)).screen_points == [(2500, 1000)]
    # Inside the bounding box but below the shorter second monitor: on no monitor at all.
    with pytest.raises(OffScreenError):
        dry.execute(Click(x=2500, y=1050))
    assert dry.execute(Hotkey(keys=["Ctrl", "A"])).detail == "dry run: hotkey ctrl+a"
    with pytest.raises(ActionExecutionError):
        dry.execute(Key(key="bogus"))


def test_fail_safe_corner_raises(executor: UIExecutor, xvfb: XServer, tk_app: TkApp) -> None:  # noqa: F811
    xvfb.run("xdotool", "mousemove", "0", "0")
    x, y = tk_app.widget(".ok").center
    with pytest.raises(FailSafeTriggered) as err:
        executor.execute(Click(x=x, y=y))
    assert "corner" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(FailSafeTriggered):
        executor.execute(Type(text="x"))
    xvfb.run("xdotool", "mousemove", "640", "400")
    assert not tk_app.events_of("button_invoked")


def test_unknown_key_name_is_refused(executor: UIExecutor) -> None:
    with pytest.raises(ActionExecutionError) as err:
        executor.execute(Hotkey(keys=["ctrl", "definitely-not-a-key"]))
    assert "definitely-not-a-key" in str(err.value)


def test_no_display_is_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    with pytest.raises(DisplayUnavailableError) as err:
        UIExecutor()
    assert "DISPLAY" in str(err.value) and "\n" not in str(err.value)


def test_invalid_display_is_one_line_error_in_a_fresh_process() -> None:
    # pyautogui is bound to Xvfb in this process, so check the import path in a child.
    code = (
        "from tilepilot.tools.ui import UIExecutor\nfrom tilepilot.tools.actions import Click\n"
        "from tilepilot.tools.errors import DisplayUnavailableError\nfrom tilepilot.tools.screen import Monitor\n"
        "mons = [Monitor(index=1, left=0, top=0, width=100, height=100)]\n"
        "try:\n    UIExecutor(':987', monitors=mons).execute(Click(x=1, y=1))\n"
        "except DisplayUnavailableError as e:\n    print('ERR', e)\n"
    )
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env=env, cwd=REPO_ROOT)
    assert proc.stdout.startswith("ERR "), proc.stderr[-500:]
    assert "':987'" in proc.stdout and proc.stdout.count("\n") == 1
