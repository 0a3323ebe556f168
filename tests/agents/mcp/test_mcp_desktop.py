"""``tilepilot mcp``'s desktop tool on the real Tk app (Xvfb): a guard confirmation becomes an MCP elicitation.

The model is the reference answerer's OpenAI-compatible server with a scripted answer (click the
OK button, then done), served under the tiny profile's name, so the guard's question comes at a
known step. The Tk app's own event log is the proof of what happened on the screen.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
from pathlib import Path

import pytest
from mcp_types import ElicitResult
from PIL import Image

from tests.agents.mcp.sessions import mcp_session
from tests.x11.servers import XServer
from tests.x11.tk import TkApp
from tilepilot.agents.eval.rigs.oracle import OracleReply, OracleServer
from tilepilot.model_runtime.profiles import tiny_profile
from tilepilot.tools.actions import Click, Done

pytestmark = [pytest.mark.x11]

SCREEN = (1280, 800)  # tests.x11.fixtures.XVFB_SIZE


def _screenshot_size(body: dict) -> tuple[int, int]:
    for message in reversed(body["messages"]):
        for part in reversed(message["content"] if isinstance(message["content"], list) else []):
            if part.get("type") == "image_url":
                data = part["image_url"]["url"].split(",", 1)[1]
                return Image.open(io.BytesIO(base64.b64decode(data))).size
    raise AssertionError("a desktop request without a screenshot")


def scripted_model(app: TkApp):
    """Click OK (in the screenshot's pixels) until the app saw it pressed; then done."""

    def answer(body: dict) -> OracleReply:
        if app.events_of("button_invoked"):
            action = Done(result="OK pressed")
        else:
            width, height = _screenshot_size(body)
            x, y = app.widget(".ok").center
            action = Click(x=round(x * width / SCREEN[0]), y=round(y * height / SCREEN[1]))
        reply = {"thought": "press OK", "action": action.model_dump(mode="json")}
        return OracleReply(key="desktop", right=reply, wrong=reply)

    return answer


def _confirms(run: Path) -> list[dict]:
    lines = (run / "events.jsonl").read_text().splitlines()
    return [event for event in map(json.loads, lines) if event["kind"] == "confirm"]


def test_guard_confirmation_is_elicited_declined_cancelled_unasked_then_accepted(xvfb: XServer, tk_app: TkApp, tmp_path: Path) -> None:
    rules = tmp_path / "confirm-clicks.md"
    rules.write_text("---\napplies_to: [desktop]\nactions:\n  confirm: [click]\n---\nAsk before any click.\n")
    asked: list[str] = []
    answers = iter([ElicitResult(action="decline"), ElicitResult(action="cancel"),
                    ElicitResult(action="accept", content={"execute": True})])

    async def elicit(context, params) -> ElicitResult:
        asked.append(params.message)
        return next(answers)

    def task(run: Path, **extra) -> dict:
        return {"task": "press the OK button", "rules": [str(rules)], "base_url": [oracle.base_url], "out": str(run),
                "max_steps": 2, "budget": 560, **extra}

    async def session_work(callback, run: Path):
        async with mcp_session("stdio", tmp_path / "runs", env={"DISPLAY": xvfb.display}, roots=[tmp_path],
                               **({"elicitation_callback": callback} if callback else {})) as session:
            return await session.call_tool("run_desktop_task", task(run))

    with OracleServer(scripted_model(tk_app), profile=tiny_profile()) as oracle:
        declined = asyncio.run(session_work(elicit, tmp_path / "declined"))
        assert not declined.is_error, declined.content
        assert len(asked) == 1 and "click" in asked[0] and "needs approval" in asked[0]
        assert declined.structured_content["status"] == "denied"
        assert [(c["approved"], c["asked"]) for c in _confirms(tmp_path / "declined")] == [(False, True)]
        tk_app.settle()
        assert not tk_app.events_of("button_invoked")
        assert [s["executed"] for s in declined.structured_content["steps"]] == [False]

        cancelled = asyncio.run(session_work(elicit, tmp_path / "cancelled"))  # the user dismissed the question
        assert len(asked) == 2 and cancelled.structured_content["status"] == "denied"
        assert [(c["approved"], c["asked"]) for c in _confirms(tmp_path / "cancelled")] == [(False, True)]
        tk_app.settle()
        assert not tk_app.events_of("button_invoked")

        unasked = asyncio.run(session_work(None, tmp_path / "unasked"))  # a client that cannot elicit
        assert unasked.structured_content["status"] == "denied"
        assert [(c["approved"], c["asked"]) for c in _confirms(tmp_path / "unasked")] == [(False, False)]
        assert not tk_app.events_of("button_invoked") and len(asked) == 2

        accepted = asyncio.run(session_work(elicit, tmp_path / "accepted"))
        assert len(asked) == 3
        assert accepted.structured_content["status"] == "done", accepted.structured_content
        assert [e["name"] for e in tk_app.settle() if e["event"] == "button_invoked"] == ["OK"]
        assert [(c["approved"], c["asked"]) for c in _confirms(tmp_path / "accepted")] == [(True, True)]
