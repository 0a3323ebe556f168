"""``tilepilot listen`` as a user runs it: real files, real server, a child process per command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import tilepilot
from tests.gen.audio import SENTENCES, AudioFactory

JSON_KEYS = {"run", "duration_s", "clips", "text"}
CLIP_KEYS = {"start_s", "end_s", "text", "prompt_tokens"}


@pytest.mark.integration
@pytest.mark.parametrize("fmt", ["mp3", "ogg"])
def test_stereo_44k_compressed_input_end_to_end(fmt: str, audio_gen: AudioFactory, server_env: dict,
                                                tmp_path: Path) -> None:
    path = audio_gen.speech(SENTENCES[1], fmt=fmt, rate=44_100, channels=2)
    run = tmp_path / "run"
    proc = tilepilot("listen", str(path), "--json", "--out", str(run), env=server_env, check=True)
    data = json.loads(proc.stdout)
    assert set(data) == JSON_KEYS
    assert data["run"] == str(run)
    assert 2.0 < data["duration_s"] < 6.0
    assert len(data["clips"]) == 1 and set(data["clips"][0]) == CLIP_KEYS
    clip = data["clips"][0]
    assert clip["start_s"] == 0.0 and clip["end_s"] == pytest.approx(data["duration_s"], abs=1e-3)
    assert clip["prompt_tokens"] > 100 and data["text"] == clip["text"]
    saved = json.loads((run / "transcript.json").read_text())
    assert saved["clips"][0]["prompt_tokens"] == saved["clips"][0]["estimated_prompt_tokens"] == clip["prompt_tokens"]
    assert (run / "transcript.txt").read_text().strip() == data["text"]
    assert not list(run.glob(".*.tmp"))  # atomic writes leave no temporaries


@pytest.mark.integration
def test_ask_prints_an_answer_and_two_inputs_get_two_folders(audio_gen: AudioFactory, server_env: dict,
                                                             tmp_path: Path) -> None:
    a = audio_gen.speech(SENTENCES[2])
    b = audio_gen.speech(SENTENCES[3], fmt="flac", rate=22_050)
    run = tmp_path / "run"
    proc = tilepilot("listen", str(a), str(b), "--question", "When does the meeting start?", "--json",
                     "--out", str(run), env=server_env, check=True)
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(lines) == 2
    for data in lines:
        assert set(data) == JSON_KEYS | {"answer"} and data["answer"]
    assert sorted(p.name for p in run.iterdir() if p.is_dir()) == [f"1-{a.stem}", f"2-{b.stem}"]
    saved = json.loads((run / f"2-{b.stem}" / "transcript.json").read_text())
    assert saved["task"] == "ask" and saved["question"] == "When does the meeting start?"
    assert "## Answer" in (run / f"1-{a.stem}" / "transcript.txt").read_text()


def _bad_files(gen: AudioFactory, tmp_path: Path) -> dict[str, Path]:
    return {
        "corrupt": gen.corrupt("wav"),
        "zero bytes": gen.zero_bytes("mp3"),
        "header only": gen.header_only(),
        "not audio": gen.not_audio(),
        "missing": tmp_path / "nope.wav",
    }


@pytest.mark.parametrize("kind", ["corrupt", "zero bytes", "header only", "not audio", "missing"])
def test_bad_file_is_one_line_and_leaves_no_run_folder(kind: str, audio_gen: AudioFactory, tmp_path: Path) -> None:
    # No server needed: inputs are checked before a run folder or a server is touched.
    path = _bad_files(audio_gen, tmp_path)[kind]
    run = tmp_path / "run"
    proc = tilepilot("listen", str(path), "--out", str(run), env={"TILEPILOT_BASE_URL": "http://127.0.0.1:9"})
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tilepilot: error: ") and str(path) in lines[0]
    assert "Traceback" not in proc.stderr and not run.exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--task", "ask"], "--task ask needs --question"),
    (["--task", "translate"], "--task must be one of transcribe, summarize, ask"),
    (["--task", "summarize", "--question", "why?"], "--question only goes with --task ask"),
])
def test_usage_errors(args: list[str], message: str, audio_gen: AudioFactory) -> None:
    proc = tilepilot("listen", str(audio_gen.speech(SENTENCES[0])), *args)
    assert proc.returncode == 2 and message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_unreachable_server_is_one_line_and_leaves_no_run_folder(audio_gen: AudioFactory, tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = tilepilot("listen", str(audio_gen.speech(SENTENCES[0])), "--out", str(run),
                     env={"TILEPILOT_BASE_URL": "http://127.0.0.1:9"})
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach the model server at http://127.0.0.1:9" in lines[0]
    assert not run.exists()
