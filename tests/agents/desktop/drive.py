"""Run the desktop agent with the scripted double in a child process, on a given X display.

pyautogui binds to one display per process and every test module gets its own Xvfb, so the
agent loops that really move the mouse run here, not in the pytest process.

    python -m tests.agents.desktop.drive SPEC.json   ->  prints the RunResult as JSON

SPEC: {"display", "run_dir", "task", "rules": [...], "screen": [l, t, w, h],
       "script": [{"click": [x, y]} | {"action": {...}}], "texts": [{"text", "bbox"}] | null,
       "approve": true | false | null, "options": {DesktopOptions fields}}
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tilepilot.agents.desktop.runner import run_desktop
from tilepilot.agents.desktop.screen_texts import CombinedTexts, StaticTexts, X11WindowTitles
from tilepilot.agents.desktop.state import DesktopOptions
from tilepilot.agents.rules import ScreenText, build_policy
from tests.agents.desktop.doubles import ScriptedChat, click_screen, fixed
from tilepilot.tools.actions import parse_action


def main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    script = [click_screen(*s["click"]) if "click" in s else fixed(parse_action(s["action"])) for s in spec["script"]]
    chat = ScriptedChat(script, screen=tuple(spec["screen"]))
    options = DesktopOptions(task=spec["task"], **spec.get("options", {}))
    policy = build_policy("desktop", spec.get("rules", []))
    # "texts": null leaves the agent its own providers (window titles and the accessibility tree).
    given = spec.get("texts", [])
    texts = None if given is None else CombinedTexts(X11WindowTitles(spec["display"]), StaticTexts([ScreenText(**t) for t in given]))
    answer = spec.get("approve")
    approve = None if answer is None else (lambda _request: bool(answer))
    result = run_desktop(options, chat, policy, Path(spec["run_dir"]), display=spec["display"], texts=texts, approve=approve)
    out = result.model_dump(mode="json")
    out["images_per_request"] = chat.images_per_request()
    out["last_request_texts"] = [p.text for m in chat.requests[-1] for p in m.parts if hasattr(p, "text")] if chat.requests else []
    print(json.dumps(out, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
