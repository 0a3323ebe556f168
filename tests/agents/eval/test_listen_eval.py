"""``tilepilot eval listen``: espeak-ng recordings through the real listen agent; the reference answerer
transcribes and summarises perfectly, oracle:0.5 about half, faster-whisper tiny.en is the baseline."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from tilepilot.agents.eval.core import EvalContext, SystemSpec, run_suite
from tilepilot.agents.eval.rigs.listen_data import WRONG_SUMMARY, WRONG_TRANSCRIPT, ListenAnswerer, cases, fact_found
from tilepilot.agents.eval.listen_suite import listen_to
from tilepilot.agents.eval.rigs.speech import RATE, build_recording
from tilepilot.agents.listen.agent import SUMMARY_INSTRUCTION
from tilepilot.agents.listen.wer import wer_details
from tilepilot.model_runtime.payloads import AudioPart, Message, TextPart, encode_messages
from tilepilot.model_runtime.profiles import GEMMA_4_12B
from tests.agents.eval.eval_cli import oracle_run_fixture


oracle_run = oracle_run_fixture("listen")


def test_oracle_transcribes_and_summarises_every_recording_perfectly(oracle_run):
    _, results = oracle_run
    metrics = results["oracle"]["metrics"]
    assert (metrics["wer"], metrics["word_accuracy"], metrics["key_fact_recall"]) == (0.0, 1.0, 1.0), metrics
    assert metrics["oracle_unidentified"] == 0
    breakdown = results["oracle"]["breakdown"]
    recordings = {k: v for k, v in breakdown.items() if k.startswith("recording=")}
    assert len(recordings) == len(cases(small=True)) and {v["wpm"] for v in recordings.values()} >= {150, 190, 220}
    for name, row in recordings.items():
        assert row["wer"] == 0.0 and row["key_fact_recall"] == 1.0, name
        assert row["clips"] == 1.0, name
    baseline = breakdown["baseline=faster-whisper-tiny.en"]
    assert 0.0 < baseline["wer"] < 0.4 and baseline["word_accuracy"] == pytest.approx(1 - baseline["wer"], abs=1e-3)
    # Each recording's baseline_wer is its own transcript's: weighted by its reference words they add up
    # to the corpus figure.
    words = {f"recording={c.name}": wer_details(c.recording.reference, c.recording.reference).reference_words
             for c in cases(small=True)}
    pooled = sum(recordings[k]["baseline_wer"] * n for k, n in words.items()) / sum(words.values())
    assert pooled == pytest.approx(baseline["wer"], abs=1e-3), (pooled, baseline)


def test_half_oracle_scores_about_half(oracle_run):
    _, results = oracle_run
    metrics = results["oracle:0.5"]["metrics"]
    assert 0.3 <= metrics["word_accuracy"] <= 0.7, metrics
    assert 0.3 <= metrics["key_fact_recall"] <= 0.7, metrics
    assert metrics["wer"] == pytest.approx(1 - metrics["word_accuracy"], abs=1e-3)
    assert results["oracle:0.5"]["misses"] > 0 and results["oracle"]["misses"] == 0


@pytest.fixture(scope="module")
def small_cases():
    return cases(small=True)


def _clip_request(samples: np.ndarray) -> dict:
    message = Message(role="user", parts=[AudioPart(samples=samples), TextPart(text="Transcribe this audio clip.")])
    return {"messages": encode_messages([message], GEMMA_4_12B, 280).messages}


def test_answerer_finds_a_clip_anywhere_in_the_recordings(small_cases):
    answerer = ListenAnswerer(small_cases)
    case = small_cases[3]
    samples, rate = sf.read(case.recording.path, dtype="float32")
    assert rate == RATE
    start, end = 12_345, 12_345 + 5 * RATE  # not on a 640-sample granule: nothing assumed about the cutter
    reply = answerer(_clip_request(samples[start:end]))
    assert reply is not None and reply.key == f"{case.name}@{start}"
    assert reply.right == " ".join(case.recording.words_between(start / RATE, end / RATE)) and reply.wrong == WRONG_TRANSCRIPT
    assert 5 <= len(reply.right.split()) < len(case.recording.words)
    # The last clip of a file is zero-padded past its end; that is still the same recording.
    tail = np.concatenate([samples[-3 * RATE :], np.zeros(1000, dtype=np.float32)])
    reply = answerer(_clip_request(tail))
    assert reply is not None and reply.key == f"{case.name}@{len(samples) - 3 * RATE}"
    noise = np.random.default_rng(0).normal(0, 0.1, 4 * RATE).astype(np.float32)
    assert answerer(_clip_request(noise)) is None
    louder = np.clip(samples[start:end] * 1.5, -1, 1)  # not these samples any more
    assert answerer(_clip_request(louder)) is None


def test_answerer_knows_a_summary_request_by_its_transcript(small_cases):
    answerer = ListenAnswerer(small_cases)
    case = small_cases[4]
    body = {"messages": [{"role": "user", "content": [
        {"type": "text", "text": f"{SUMMARY_INSTRUCTION}\n\nTranscript:\n{case.recording.reference}"}]}]}
    reply = answerer(body)
    assert reply is not None and reply.key == f"{case.name}/summary" and reply.wrong == WRONG_SUMMARY
    assert all(fact_found(f, reply.right) for f in case.facts) and not any(fact_found(f, WRONG_SUMMARY) for f in case.facts)
    body["messages"][0]["content"][0]["text"] = f"{SUMMARY_INSTRUCTION}\n\nTranscript:\n{WRONG_TRANSCRIPT}"
    assert answerer(body) is None


def test_facts_match_after_number_normalisation():
    assert fact_found("2,400 euros", "The chairs cost two thousand four hundred euros in total.")
    assert fact_found("June 21st", "booked on june twenty first")
    assert fact_found("87.50 euros", "shipping is 87.5 euros") is False  # "point five" is not "point five zero"
    assert not fact_found("714", "room 7140")


def test_recordings_are_deterministic_and_timed(tmp_path, small_cases):
    case = small_cases[0]
    again = build_recording("again", case.recording.sentences, tmp_path, wpm=case.recording.wpm, pause_s=0.8)
    assert again.path.read_bytes() == case.recording.path.read_bytes()
    assert [w.model_dump() for w in again.words] == [w.model_dump() for w in case.recording.words]
    assert " ".join(w.text for w in again.words) == case.recording.reference
    starts = [w.start_s for w in again.words]
    assert starts == sorted(starts) and again.words[-1].end_s < again.duration_s


# Both recordings once found a ceiling: a 24-word seam window that let a chance repeat delete
# words (agents/listen/merge.py) and a 6 tokens/s answer cap (agents/listen/agent.py).
@pytest.mark.parametrize("name", ["fast", "rapid"])
def test_oracle_transcribes_fast_speech_across_a_clip_seam(tmp_path, name):
    [case] = [c for c in cases(small=False) if c.name == name]
    ctx = EvalContext(SystemSpec(label="oracle", model="oracle"), tmp_path, small=True)
    try:
        result = listen_to(ctx.connect(ListenAnswerer([case])), case, tmp_path)
    finally:
        ctx.close()
    assert len(result.clips) == 2
    assert wer_details(case.recording.reference, result.text).wer == 0.0, result.text


@pytest.mark.integration
def test_tiny_model_listen_scores_are_the_floor(vllm_server, tmp_path):
    system = SystemSpec(label="tiny", model="tiny", base_urls=[vllm_server.base_url])
    [result] = run_suite("listen", [system], tmp_path, small=True)
    print("\n[eval listen tiny small]", json.dumps(result.metrics))
    assert result.metrics["word_accuracy"] < 0.2 and result.metrics["key_fact_recall"] < 0.2, result.metrics
    # Noise: most words wrong (often more errors than words, as insertions count), and the headline is
    # that corpus figure clipped to 1.
    assert result.metrics["wer_raw"] > 0.8 and result.metrics["wer"] == min(1.0, result.metrics["wer_raw"]), result.metrics
