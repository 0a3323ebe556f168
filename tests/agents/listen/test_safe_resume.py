"""Listen resumes only checkpoints of its own types: a tampered one stops in one line, an honest one finishes.

Real audio, the real graph and checkpoint; the model is the WordChat double.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tilepilot.agents.listen.agent import ListenAgent
from tilepilot.agents.rules import build_policy
from tilepilot.agents.runs import Deadline, DeadlineReached
from tilepilot.agents.safe_checkpoint import CheckpointRefusedError
from tilepilot.model_runtime.payloads import AudioPart
from tests.agents.doubles import WordChat
from tests.agents.tampering import tamper_checkpoints, tamper_writes
from tests.gen.audio import AudioFactory


@pytest.fixture(scope="module")
def stopped_listen(audio_gen: AudioFactory, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A listen run of four clips stopped by its deadline after one or two: (audio, run folder)."""
    talk = audio_gen.talk(seconds=100.0)
    now = [0.0]

    def on_chat(messages) -> None:  # each clip takes "10 s" of the fake clock
        if any(isinstance(p, AudioPart) for m in messages for p in m.parts):
            now[0] += 10.0

    run = tmp_path_factory.mktemp("listen") / "run"
    chat = WordChat(reply=lambda messages: "words heard", on_chat=on_chat)
    with pytest.raises(DeadlineReached):
        ListenAgent(chat, build_policy("listen"), workers=1, deadline=Deadline(15.0, "test", clock=lambda: now[0])).run(talk.path, run)
    return talk.path, run


@pytest.mark.parametrize("tamper", [tamper_checkpoints, tamper_writes], ids=["checkpoint", "pending-write"])
def test_tampered_listen_checkpoint_is_refused_before_any_clip(stopped_listen, tmp_path: Path, tamper) -> None:
    audio, stopped = stopped_listen
    run, marker = tmp_path / "run", tmp_path / "pwned"
    shutil.copytree(stopped, run)
    tamper(run, marker)
    sent: list[object] = []
    chat = WordChat(reply=lambda messages: "words heard", on_chat=sent.append)
    with pytest.raises(CheckpointRefusedError, match=r"names os\.system.*refusing to resume"):
        ListenAgent(chat, build_policy("listen"), workers=1).run(audio, run)
    assert not marker.exists() and sent == []


def test_honest_listen_resume_finishes(stopped_listen, tmp_path: Path) -> None:
    audio, stopped = stopped_listen
    run = tmp_path / "run"
    shutil.copytree(stopped, run)
    result = ListenAgent(WordChat(reply=lambda messages: "words heard"), build_policy("listen"), workers=1).run(audio, run)
    assert [c.index for c in result.clips] == [0, 1, 2, 3]
