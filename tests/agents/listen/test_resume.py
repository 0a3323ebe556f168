"""``tilepilot listen --resume`` after a SIGKILL, against the real CPU vLLM server (tiny model): no clip is sent twice."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tilepilot.agents.checkpoints import recover_thread
from tilepilot.agents.runs import CHECKPOINT_NAME, EVENTS_NAME, RUN_FINISHED, RUN_RESUMED, read_events
from tests.agents.killing import kill_when
from tests.conftest import tilepilot
from tests.gen.audio import AudioFactory

pytestmark = pytest.mark.integration


def _saved_clips(run: Path) -> set[int]:
    """Clips whose transcripts LangGraph saved before the kill (state plus the pending writes of the batch)."""
    from langgraph.checkpoint.sqlite import SqliteSaver

    saver = SqliteSaver(sqlite3.connect(run / CHECKPOINT_NAME, check_same_thread=False))
    recover_thread(saver, "0")  # what a resume does first, should the kill have hit a prune
    snapshot = saver.get_tuple({"configurable": {"thread_id": "0"}})
    saved = {c["index"] for c in snapshot.checkpoint["channel_values"].get("clips", [])} if snapshot else set()
    for _task, channel, value in (snapshot.pending_writes or []) if snapshot else []:
        if channel == "clips":
            saved |= {c["index"] for c in value}
    saver.conn.close()
    return saved


def test_sigkill_then_resume_sends_no_clip_twice(audio_gen: AudioFactory, server_env: dict, tmp_path: Path) -> None:
    talk = audio_gen.talk(seconds=100.0)  # four clips; --workers 1 plans them in batches of two
    run = tmp_path / "run"
    kill_when(["listen", str(talk.path), "--workers", "1", "--out", str(run), "--json"], run, "clip", 2, server_env)
    saved = _saved_clips(run)
    assert saved and len(saved) < 4, saved
    sent_before = len(list(read_events(run / EVENTS_NAME, "clip")))

    proc = tilepilot("listen", "--resume", str(run), "--json", env=server_env, check=True)
    data = json.loads(proc.stdout)
    resent = {e["index"] for e in list(read_events(run / EVENTS_NAME, "clip"))[sent_before:]} & saved
    assert not resent, f"clips sent again after the resume: {resent}"
    assert data["duration_s"] == pytest.approx(100.0, abs=1e-3)
    assert [c["start_s"] for c in data["clips"]] == sorted(c["start_s"] for c in data["clips"]) and len(data["clips"]) == 4
    saved_json = json.loads((run / "transcript.json").read_text())
    assert [c["index"] for c in saved_json["clips"]] == [0, 1, 2, 3]
    lifecycle = [e["kind"] for e in read_events(run / EVENTS_NAME) if e["kind"] in (RUN_RESUMED, RUN_FINISHED)]
    assert lifecycle == [RUN_RESUMED, RUN_FINISHED]


def test_max_runtime_stops_with_one_line(audio_gen: AudioFactory, server_env: dict, tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = tilepilot("listen", str(audio_gen.talk(seconds=45.0).path), "--max-runtime", "0.01", "--out", str(run),
                     env=server_env)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 6 and len(lines) == 1 and f"tilepilot listen --resume {run}" in lines[0], proc.stderr
    assert not (run / "transcript.json").exists()
    (finished,) = read_events(run / EVENTS_NAME, RUN_FINISHED)
    assert finished["status"] == "deadline"
