"""The guard sees inside windows through the accessibility tree: real GTK apps under Xvfb, with
their accessibility bus started by the test; a Tk window, which has none, is reported as such."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from tilepilot.agents.desktop.screen_texts import AccessibilityTexts, desktop_texts
from tilepilot.agents.rules import Allow, Confirm, Deny, GuardContext, ScreenBounds, ScreenText, guard
from tilepilot.agents.rules.loader import load_rule_file
from tilepilot.agents.rules.merge import merge_files
from tests.agents.desktop.conftest import drive
from tests.conftest import tilepilot
from tests.requires import skip_missing
from tests.x11.a11y import A11ySession, launch_gtk_form, start_a11y_session
from tilepilot.tools.actions import Click, Key, Type
from tilepilot.tools.ui import UIExecutor

pytestmark = pytest.mark.x11

RULES = """---
actions:
  deny_text: ['/delete/i']
  confirm:
    - action: type
      near_label: /password/i
---
"""


@pytest.fixture(scope="module")
def a11y(xvfb) -> A11ySession:
    session = start_a11y_session(xvfb)
    yield session
    session.close()


@pytest.fixture(scope="module")
def gtk_form(a11y: A11ySession, tmp_path_factory) -> dict[str, tuple[int, int]]:
    boxes = launch_gtk_form(a11y, tmp_path_factory.mktemp("gtk") / "events.jsonl")
    return {name: (x + w // 2, y + h // 2) for name, (x, y, w, h) in boxes.items()}


def _policy(tmp_path: Path, text: str = RULES):
    path = tmp_path / "rules.md"
    path.write_text(text)
    return merge_files("desktop", [load_rule_file(path)])


def _context(display: str, focus=None) -> GuardContext:
    texts = desktop_texts(display).read()
    return GuardContext(agent="desktop", screen=ScreenBounds(width=1280, height=800), screen_texts=texts.texts,
                        window_title=texts.window_title, focus_point=focus)


def test_tree_lists_the_forms_widgets_with_roles_names_and_boxes(xvfb, gtk_form):
    texts = AccessibilityTexts(xvfb.display)
    widgets = [t for t in texts.read().texts if t.source == "accessibility"]
    texts.close()
    by_name = {(t.role, t.text): t for t in widgets}
    assert ("push button", "Delete") in by_name and ("frame", "Account form") in by_name
    password = by_name[("password text", "Password:")]  # named by its label (labelled-by relation)
    x, y = gtk_form["password"]
    assert password.bbox[0] <= x <= password.bbox[2] and password.bbox[1] <= y <= password.bbox[3]


def test_click_on_a_denied_button_inside_a_window_is_denied_naming_the_rule(xvfb, gtk_form, tmp_path):
    policy = _policy(tmp_path)
    decision = guard(Click(x=gtk_form["delete"][0], y=gtk_form["delete"][1]), _context(xvfb.display), policy)
    assert isinstance(decision, Deny), decision
    assert decision.rule_key == "actions.deny_text[0]" and "push button 'Delete'" in decision.reason
    assert decision.widget == "push button 'Delete'" and decision.widget_box is not None
    allowed = guard(Click(x=gtk_form["save"][0], y=gtk_form["save"][1]), _context(xvfb.display), policy)
    assert isinstance(allowed, Allow) and allowed.widget == "push button 'Save'"


def _focus(display: str, role: str, timeout_s: float = 10.0) -> ScreenText:
    """Wait until the accessibility tree reports a focused widget of ``role``."""
    texts = AccessibilityTexts(display)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            focused = [t for t in texts.read().texts if "focused" in t.states and t.role == role]
            if focused:
                return focused[0]
            if time.monotonic() > deadline:
                raise TimeoutError(f"no focused {role} within {timeout_s}s")
            time.sleep(0.1)
    finally:
        texts.close()


def test_typing_into_the_password_field_asks_for_confirmation(xvfb, gtk_form, tmp_path):
    policy = _policy(tmp_path)
    executor = UIExecutor(xvfb.display, pause_s=0.03)
    executor.execute(Click(x=gtk_form["password"][0], y=gtk_form["password"][1]))
    _focus(xvfb.display, "password text")
    # No focus point given: where typing goes comes from the tree's focused state alone.
    decision = guard(Type(text="hunter2"), _context(xvfb.display), policy)
    assert isinstance(decision, Confirm) and "password field" in decision.reason, decision
    assert decision.widget == "password text 'Password:'"
    executor.execute(Click(x=gtk_form["name"][0], y=gtk_form["name"][1]))
    _focus(xvfb.display, "text")
    name = guard(Type(text="Ada"), _context(xvfb.display), policy)
    assert isinstance(name, Allow) and name.widget == "text 'Name:'", name


def test_tab_into_the_password_field_then_typing_asks_for_confirmation(xvfb, gtk_form, tmp_path):
    policy = _policy(tmp_path, "---\nactions:\n  deny_text: ['/delete/i']\n---\n")  # no rule names passwords
    executor = UIExecutor(xvfb.display, pause_s=0.03)
    executor.execute(Click(x=gtk_form["name"][0], y=gtk_form["name"][1]))
    _focus(xvfb.display, "text")
    # The name field has focus: text after a Tab in one action may land in the password field.
    both = guard(Type(text="alice\tS3cret"), _context(xvfb.display, focus=gtk_form["name"]), policy)
    assert isinstance(both, Confirm) and "after tab" in both.reason and "password" in both.reason, both
    assert isinstance(guard(Type(text="alice"), _context(xvfb.display, focus=gtk_form["name"]), policy), Allow)
    executor.execute(Key(key="tab"))
    _focus(xvfb.display, "password text")
    # The last click was the name field; the tree says the password field has focus now, and it wins.
    decision = guard(Type(text="S3cret"), _context(xvfb.display, focus=gtk_form["name"]), policy)
    assert isinstance(decision, Confirm) and decision.widget == "password text 'Password:'", decision


def test_the_agent_loop_with_a_scripted_double_is_denied_on_delete_and_asks_before_the_password(xvfb, gtk_form, tmp_path):
    rules = tmp_path / "rules.md"
    rules.write_text(RULES)
    script = [{"click": list(gtk_form["delete"])}, {"click": list(gtk_form["password"])},
              {"action": {"kind": "type", "text": "hunter2"}}, {"action": {"kind": "done", "result": "ok"}}]
    spec = {"display": xvfb.display, "run_dir": str(tmp_path / "run"), "task": "delete the account", "rules": [str(rules)],
            "screen": [0, 0, 1280, 800], "script": script, "texts": None, "approve": False,
            "options": {"max_steps": 6, "budget": 1120}}
    result = drive(spec, tmp_path)
    first, second, third = result["steps"][:3]
    assert first["guard"]["verdict"] == "deny" and first["guard"]["rule_key"] == "actions.deny_text[0]"
    assert first["guard"]["widget"] == "push button 'Delete'" and not first["executed"]
    assert second["guard"]["widget"] == "password text 'Password:'" and second["executed"]
    assert third["guard"]["verdict"] == "confirm" and third["guard"]["approved"] is False and not third["executed"]
    # The password never enters the record: trajectory, events, audit log, replay page, checkpoint.
    assert third["secret"] and third["action"]["text"] == "••••••"
    for path in (tmp_path / "run").rglob("*"):
        if path.is_file():
            assert b"hunter2" not in path.read_bytes(), path
    audit = [json.loads(line) for line in (tmp_path / "run" / "audit.jsonl").read_text().splitlines()]
    assert audit[0]["widget"] == "push button 'Delete'"


def test_a_tk_window_has_no_accessibility_and_require_accessibility_fails_closed(xvfb, a11y, tk_app, tmp_path):
    x, y = tk_app.widget(".delete").center
    loose = guard(Click(x=x, y=y), _context(xvfb.display), _policy(tmp_path))
    assert isinstance(loose, Allow) and loose.widget == "unknown (no accessibility information)"
    strict = _policy(tmp_path, "---\nactions:\n  require_accessibility: true\n---\n")
    decision = guard(Click(x=x, y=y), _context(xvfb.display), strict)
    assert isinstance(decision, Deny) and decision.rule_key == "actions.require_accessibility", decision
    assert "no accessibility information" in decision.reason


def test_a_debian_gtk_app_mousepad_exposes_its_menus(xvfb, a11y, tmp_path):
    if shutil.which("mousepad") is None:
        skip_missing("mousepad", "apt-get install mousepad")
    a11y.launch("mousepad", "--disable-server")
    widgets = a11y.wait_for_widgets("mousepad", lambda ws: any(w.role == "menu" and w.name == "File" for w in ws))
    file_menu = next(w for w in widgets if w.role == "menu" and w.name == "File")
    x, y = (file_menu.bbox[0] + file_menu.bbox[2]) // 2, (file_menu.bbox[1] + file_menu.bbox[3]) // 2
    decision = guard(Click(x=x, y=y), _context(xvfb.display), _policy(tmp_path, "---\nactions:\n  deny_text: ['/^file$/i']\n---\n"))
    assert isinstance(decision, Deny) and decision.widget == "menu 'File'", decision


@pytest.mark.integration
@pytest.mark.slow
def test_real_tiny_model_steps_go_through_the_accessibility_guard(xvfb, gtk_form, a11y, screen_only_env, tmp_path):
    # The tiny model's clicks land anywhere; each one's guard record names the widget under it,
    # and none that lands on Delete is allowed. --dry-run keeps the form intact for other tests.
    rules = tmp_path / "rules.md"
    rules.write_text(RULES)
    env = {**screen_only_env, "DISPLAY": xvfb.display}  # clicks only: no done/fail (screen_only_proxy)
    proc = tilepilot("desktop", "delete the account", "--rules", str(rules), "--max-steps", "6", "--actions", "click",
                     "--dry-run", "--out", str(tmp_path / "run"), "--json", env=env, input="", timeout=600)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    steps = json.loads((tmp_path / "run" / "trajectory.json").read_text())["steps"]
    clicks = [s for s in steps if s["action"] and s["action"]["kind"] == "click" and s["guard"]]
    assert clicks, steps
    for step in clicks:
        assert step["guard"]["widget"], step["guard"]
        if step["guard"]["widget"] == "push button 'Delete'":
            assert step["guard"]["verdict"] == "deny"
