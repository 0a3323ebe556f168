"""Listen's loop logic offline, with the WordChat double: hierarchical condense, the deadline, resume.

Real audio (espeak-ng), the real clip planner and graph; only the model is a double.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tilepilot.agents.listen.agent import ListenAgent
from tilepilot.agents.rules import build_policy
from tilepilot.agents.runs import Deadline, DeadlineReached
from tilepilot.model_runtime.payloads import AudioPart, TextPart
from tests.agents.doubles import WordChat
from tests.gen.audio import AudioFactory

TRANSCRIPT = " ".join(f"w{i}" for i in range(2000))


def _policy(tmp_path: Path, limit: int):
    rules = tmp_path / "tight.md"
    rules.write_text(f"---\napplies_to: [listen]\nlimits:\n  max_prompt_tokens: {limit}\n---\nBe brief.\n")
    return build_policy("listen", [str(rules)])


def _text(messages) -> str:
    return " ".join(p.text for m in messages for p in m.parts if isinstance(p, TextPart))


def test_condense_fits_the_budget_in_levels_and_counts_its_requests(tmp_path: Path) -> None:
    notes = iter(range(10_000))
    chat = WordChat(reply=lambda messages: f"note{next(notes)} " * 12)
    agent = ListenAgent(chat, _policy(tmp_path, 400), workers=2)
    summary, requests = agent.condense(TRANSCRIPT, "summarize", None)
    assert requests == len(chat.requests) > 2
    assert all(tokens <= 400 for tokens, _ in chat.requests)
    # Every transcript word went into exactly one first-level part, in order.
    parts = [_text(m).split("Transcript:")[1].split() for _, m in chat.requests]
    first_level = [part for part in parts if part[0].startswith("w")]
    assert len(first_level) > 1 and [w for part in first_level for w in part] == TRANSCRIPT.split()
    # The final request reads the notes of the level below, not the transcript.
    final = _text(chat.requests[-1][1])
    assert "note" in final and "w0" not in final and summary.startswith("note")


def test_a_transcript_that_fits_is_one_request(tmp_path: Path) -> None:
    chat = WordChat(reply=lambda messages: "the answer")
    agent = ListenAgent(chat, _policy(tmp_path, 5000), workers=2)
    assert agent.condense("a short transcript", "ask", "what?") == ("the answer", 1)
    assert "Question: what?" in _text(chat.requests[0][1])


def test_the_deadline_stops_between_clips_and_resume_sends_no_clip_twice(audio_gen: AudioFactory, tmp_path: Path) -> None:
    talk = audio_gen.talk(seconds=100.0)  # four clips
    now = [0.0]
    sent: list[int] = []

    def on_chat(messages) -> None:  # each clip takes "10 s" of the fake clock
        if any(isinstance(p, AudioPart) for m in messages for p in m.parts):
            sent.append(len(sent))
            now[0] += 10.0

    chat = WordChat(reply=lambda messages: "words heard", on_chat=on_chat)
    deadline = Deadline(15.0, "test limit", clock=lambda: now[0])
    with pytest.raises(DeadlineReached):
        ListenAgent(chat, build_policy("listen"), workers=1, deadline=deadline).run(talk.path, tmp_path / "run")
    stopped_after = len(sent)
    assert 1 <= stopped_after < 4
    result = ListenAgent(chat, build_policy("listen"), workers=1).run(talk.path, tmp_path / "run")
    assert len(sent) == 4, f"{len(sent)} clip requests for 4 clips"
    assert [c.index for c in result.clips] == [0, 1, 2, 3]
    assert result.duration_s == pytest.approx(100.0, abs=1e-3) and result.text
