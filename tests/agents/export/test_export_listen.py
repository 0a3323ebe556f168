"""``tilepilot export`` of listen runs: a real listen run on the tiny vLLM server, corrected clips, the set read back."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tilepilot.agents.export.cli import collect
from tilepilot.agents.export.dataset import load_dataset, write_dataset
from tilepilot.agents.runs import EVENTS_NAME, read_events
from tilepilot.model_runtime.payloads import AudioPart
from tests.conftest import tilepilot
from tests.gen.audio import SENTENCES, AudioFactory

pytestmark = pytest.mark.integration

TALK_FOLDER, SHORT_FOLDER = "1-talk", "2-short"
CORRECTIONS = {(TALK_FOLDER, 1): "Thank you all for coming,  and see you\nnext week.", (SHORT_FOLDER, 0): SENTENCES[1]}


@pytest.fixture(scope="module")
def listened(vllm_server, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished listen run of two inputs: a 40 s talk (two clips, cut at a pause) and one short sentence."""
    folder = tmp_path_factory.mktemp("export-listen")
    audio = AudioFactory(tmp_path_factory.getbasetemp() / "listen-audio")
    talk, short = folder / "talk.wav", folder / "short.wav"
    shutil.copyfile(audio.talk(seconds=40.0).path, talk)
    shutil.copyfile(audio.speech(SENTENCES[1]), short)
    run = folder / "run"
    tilepilot("listen", str(talk), str(short), "--json", "--out", str(run),
              env={"TILEPILOT_BASE_URL": vllm_server.base_url}, check=True)
    return run


def _copy(listened: Path, tmp_path: Path, corrections: dict[tuple[str, int], str]) -> Path:
    run = tmp_path / "run"
    shutil.copytree(listened, run)
    for (folder, index), text in corrections.items():
        path = run / folder / "transcript.json"
        data = json.loads(path.read_text())
        data["clips"][index]["corrected"] = text
        path.write_text(json.dumps(data, indent=2))
    return run


def test_export_round_trip_counts_the_recorded_tokens_and_teaches_the_corrections(listened: Path, chat_client, tmp_path: Path) -> None:
    run = _copy(listened, tmp_path, CORRECTIONS)
    clips = list(read_events(run / EVENTS_NAME, "clip"))
    assert len(clips) == 3  # the talk's two clips and the sentence
    summary = write_dataset(collect([run]), tmp_path / "set", license="cc-by-4.0")
    assert (summary.examples, summary.audios, summary.images, summary.by_agent) == (2, 2, 0, {"listen": 2})
    assert summary.sources[0].note == "2 of 3 clip(s) corrected"

    loaded = list(load_dataset(tmp_path / "set"))
    for example in loaded:
        assert chat_client.count_prompt_tokens(example.messages) == example.meta["prompt_tokens"]
    by_source = {e.meta["source"]: e for e in loaded}
    talk = by_source[f"{run / TALK_FOLDER}#clip=1"]
    assert talk.target == "Thank you all for coming, and see you next week."  # whitespace as the agent keeps it
    assert by_source[f"{run / SHORT_FOLDER}#clip=0"].target == SENTENCES[1]
    # the second clip of the talk starts where the run cut it (overlapping the first), padded to whole tokens
    second = next(c for c in clips if c["index"] == 1 and c["end_s"] == 40.0)
    samples = next(p.samples for m in talk.messages for p in m.parts if isinstance(p, AudioPart))
    assert len(samples) % 640 == 0 and len(samples) - 640 < round((second["end_s"] - second["start_s"]) * 16_000) <= len(samples)
    assert np.abs(samples).max() > 0.01  # speech, not silence
    assert "cc-by-4.0" in (tmp_path / "set" / "README.md").read_text()

    # The trainer's processor turns each clip into the tokens the server counted (two fine-tuning steps).
    proc = tilepilot("model", "finetune", str(tmp_path / "set"), "--out", str(tmp_path / "ckpt"), "--steps", "2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "prompt tokens equal to the recorded requests in 2/2 examples" in proc.stdout, proc.stdout


def _gone_audio(run: Path) -> None:
    path = run / SHORT_FOLDER / "transcript.json"
    data = json.loads(path.read_text())
    data["source"] = str(run / "moved-away.wav")
    path.write_text(json.dumps(data))


def _corrupt_transcript(run: Path) -> None:
    (run / TALK_FOLDER / "transcript.json").write_text('{"source": "talk.wav", "clips": [{"index": 0,')


def _corrected_not_text(run: Path) -> None:
    path = run / TALK_FOLDER / "transcript.json"
    data = json.loads(path.read_text())
    data["clips"][0]["corrected"] = ["not", "text"]
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("damage, message", [
    (_gone_audio, "moved-away.wav is gone; the clips cannot be rebuilt"),
    (_corrupt_transcript, "transcript.json: not valid JSON"),
    (_corrected_not_text, "transcript.json: clips[0].corrected: Input should be a valid string"),
    (None, "nothing to export"),
])
def test_bad_runs_are_one_line_errors_and_write_nothing(listened: Path, tmp_path: Path, damage, message: str) -> None:
    run = _copy(listened, tmp_path, CORRECTIONS if damage is not None else {})
    if damage is not None:
        damage(run)
    to = tmp_path / "set"
    proc = tilepilot("export", str(run), "--to", str(to))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
    assert not to.exists() and not list(tmp_path.glob(".set.*"))
