"""No denied key reaches an app under any spelling: guard, then the real executor, on Xvfb with a key-logging app.

The rows are the spellings that reached the app before the guard judged key events (issue 29's table);
each goes through ``guard`` and, where allowed, ``UIExecutor.execute``, as the desktop graph does. A
sentinel key pressed after each row shows the app was listening, so "nothing arrived" is a real result.
"""

from __future__ import annotations

import pytest

from tests.x11.servers import XServer
from tests.x11.tk import TkApp
from tilepilot.agents.rules.guard import GuardContext, guard
from tilepilot.agents.rules.loader import load_rule_file
from tilepilot.agents.rules.merge import merge_files
from tilepilot.tools.actions import Click, Hotkey, Key, Type
from tilepilot.tools.ui import UIExecutor

pytestmark = pytest.mark.x11

RULES = """---
actions:
  deny: ["hotkey:ctrl+w", "hotkey:alt+f4", "key:enter", "key:tab"]
---
"""
# What each denied key looks like to a Tk app: any of these keysyms arriving means a denied key got through.
DENIED_KEYSYMS = {"Return", "KP_Enter", "Linefeed", "Tab", "ISO_Left_Tab", "F4"}
ROWS = [
    Hotkey(keys=["ctrl", "w"]), Key(key="return"), Hotkey(keys=["ctrlleft", "w"]), Hotkey(keys=["ctrlright", "w"]),
    Hotkey(keys=["altleft", "f4"]), Key(key="\n"), Key(key="\t"), Type(text="go\n"), Type(text="a\tb"),
]


def _label(action) -> str:
    return f"{action.kind} {getattr(action, 'keys', None) or getattr(action, 'key', None) or getattr(action, 'text', '')!r}"


def test_no_spelling_of_a_denied_key_reaches_the_app(xvfb: XServer, tk_app: TkApp, tmp_path) -> None:
    path = tmp_path / "rules.md"
    path.write_text(RULES)
    policy = merge_files("desktop", [load_rule_file(path)])
    executor = UIExecutor(xvfb.display, pause_s=0.03)
    entry = tk_app.widget(".entry").center
    executor.execute(Click(x=entry[0], y=entry[1]))
    context = GuardContext(agent="desktop", window_title=None, focus_point=entry)
    table = []
    for action in ROWS:
        before = len(tk_app.events())
        decision = guard(action, context, policy)
        if decision.verdict == "allow":
            executor.execute(action)
        executor.execute(Key(key="f9"))  # the sentinel: allowed, and proves the app hears keys
        tk_app.wait_for(lambda e: e["event"] == "key_press" and e["keysym"] == "F9", timeout_s=10, after=before)
        received = [e["keysym"] for e in tk_app.events()[before:] if e["event"] == "key_press" and e["keysym"] != "F9"]
        table.append((_label(action), decision.verdict, received))
    print("\n".join(f"{label:32} {verdict:6} {received}" for label, verdict, received in table))
    assert all(verdict == "deny" for _, verdict, _ in table), table
    assert not [r for _, _, r in table if DENIED_KEYSYMS & set(r)], table


def test_allowed_keys_and_multiline_text_reach_the_app(xvfb: XServer, tk_app: TkApp) -> None:
    executor = UIExecutor(xvfb.display, pause_s=0.03)
    entry = tk_app.widget(".entry").center
    executor.execute(Click(x=entry[0], y=entry[1]))
    before = len(tk_app.events())
    executor.execute(Hotkey(keys=["ctrlright", "a"]))  # pressed as the canonical ctrl (Control_L)
    executor.execute(Type(text="one\ntwo"))
    tk_app.wait_for(lambda e: e["event"] == "key_press" and e["keysym"] == "o", timeout_s=10, after=before)
    tk_app.settle()
    keysyms = [e["keysym"] for e in tk_app.events()[before:] if e["event"] == "key_press"]
    assert "Control_L" in keysyms and "Control_R" not in keysyms, keysyms
    # The newline arrives as Return (what an editor takes as a new line), not as Linefeed.
    assert "Return" in keysyms and "Linefeed" not in keysyms, keysyms
    assert keysyms.index("Return") < keysyms.index("t"), keysyms
