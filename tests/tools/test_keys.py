"""The key table is what pyautogui really presses on X11: checked against pyautogui's own keymap on Xvfb."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.x11.servers import XServer
from tilepilot.tools.keys import KEYS, MODIFIERS, UnknownKeyError, hotkey_keys, lookup, text_runs

pytestmark = pytest.mark.x11

# Run in a child: pyautogui binds to $DISPLAY at import, once per process.
CHECK = r"""
import json, sys
import pyautogui
from pyautogui import _pyautogui_x11 as x11
from Xlib import XK
table = json.loads(sys.stdin.read())
wrong = []
for name, (press_as, keysym, shift) in table.items():
    want = x11._display.keysym_to_keycode(XK.string_to_keysym(keysym))
    got = x11.keyboardMapping.get(press_as)
    if got is None or got != want or bool(pyautogui.isShiftCharacter(press_as)) != shift or want == 0:
        wrong.append([name, press_as, keysym, got, want])
print(json.dumps(wrong))
"""


def test_every_name_presses_the_keysym_the_guard_judged(xvfb: XServer) -> None:
    table = {name: (key.press_as, key.keysym, key.shift) for name, key in KEYS.items()}
    proc = subprocess.run([sys.executable, "-c", CHECK], input=json.dumps(table), capture_output=True, text=True,
                          env={**os.environ, "DISPLAY": xvfb.display, "XAUTHORITY": os.devnull}, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    wrong = json.loads(proc.stdout.strip().splitlines()[-1])
    assert wrong == [], " ".join(w[0] for w in wrong)


def test_left_and_right_modifiers_collapse_and_unknown_names_are_refused() -> None:
    for side in ("ctrlleft", "ctrlright", "CONTROL", "Control_R"):
        assert lookup(side).name == "ctrl" and lookup(side).press_as == "ctrl"
    assert {k.name for k in KEYS.values() if k.is_modifier} == set(MODIFIERS)
    for name in ("fn", "volumeup", "command+w", "é", ""):
        with pytest.raises(UnknownKeyError):
            lookup(name)
    assert [k.name for k in hotkey_keys(["w", "shiftright", "ctrlleft", "ctrlright"])] == ["ctrl", "shift", "w"]


def test_typed_text_splits_into_characters_and_keys() -> None:
    runs = text_runs("line one\r\nline two\tend\x01")
    assert [(r.text, r.keys) for r in runs] == [
        ("line one", ()), ("", ("enter",)), ("line two", ()), ("", ("tab",)), ("end", ()), ("", ("ctrl", "a"))]
