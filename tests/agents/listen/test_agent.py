"""The listen agent against the real CPU vLLM server (tiny random-weight model: words are noise,
token counts, clip plans and the flow are real)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tilepilot.agents.listen.agent import ListenAgent
from tilepilot.agents.rules import build_policy
from tilepilot.agents.runs import CHECKPOINT_NAME, EVENTS_NAME, EventLog, read_events
from tilepilot.model_runtime.budget import audio_prompt_tokens
from tests.gen.audio import AudioFactory

pytestmark = pytest.mark.integration


def test_45_s_file_becomes_two_clips_covering_everything(listen_agent: ListenAgent, audio_gen: AudioFactory,
                                                         tmp_path: Path) -> None:
    talk = audio_gen.talk(seconds=45.0)
    with EventLog(tmp_path / EVENTS_NAME) as events:
        listen_agent.events = events
        result = listen_agent.run(talk.path, tmp_path)
    assert result.duration_s == pytest.approx(45.0, abs=1e-6)
    assert len(result.clips) == 2
    first, second = result.clips
    # Nothing dropped: the clips start at 0, overlap at the seam, and end at the input's end.
    assert first.start_s == 0.0 and second.end_s == pytest.approx(45.0, abs=1e-6)
    assert second.start_s < first.end_s <= 30.0
    assert first.end_s - second.start_s == pytest.approx(1.0)  # the overlap
    # The cut lies in a pause between sentences, not inside a word.
    assert any(a <= first.end_s <= b for a, b in talk.gaps), (first.end_s, talk.gaps)
    for clip in result.clips:
        assert clip.prompt_tokens == clip.estimated_prompt_tokens
        assert clip.completion_tokens > 0 and clip.text
    # The first clip is a whole number of 40 ms tokens, so its media cost is exact arithmetic.
    assert (first.end_s * 16_000) % 640 == 0
    assert first.prompt_tokens - second.prompt_tokens == (
        audio_prompt_tokens(round(first.end_s * 16_000)) - audio_prompt_tokens(-(-round((45.0 - second.start_s) * 16_000) // 640) * 640))
    assert result.text and result.summary is None and result.answer is None
    assert (tmp_path / CHECKPOINT_NAME).stat().st_size > 0
    logged = list(read_events(tmp_path / EVENTS_NAME, "clip"))
    assert sorted(e["index"] for e in logged) == [0, 1]


def test_summary_goes_hierarchical_when_the_transcript_exceeds_the_rules_budget(
        chat_client, audio_gen: AudioFactory, tmp_path: Path) -> None:
    rules = tmp_path / "tight.md"
    rules.write_text("---\napplies_to: [listen]\nlimits:\n  max_prompt_tokens: 600\n---\nBe brief.\n")
    policy = build_policy("listen", [str(rules)])
    assert policy.limit("max_prompt_tokens") == 600
    run = tmp_path / "run"
    run.mkdir()
    with EventLog(run / EVENTS_NAME) as events:
        agent = ListenAgent(chat_client, policy, workers=2, events=events)
        result = agent.run(audio_gen.talk(seconds=45.0).path, run, task="summarize")
    assert result.summary
    reduces = list(read_events(run / EVENTS_NAME, "reduce"))
    finals = list(read_events(run / EVENTS_NAME, "summarize"))
    # Tiny-model clip transcripts are ~150-250 tokens of noise each, plus ~330 tokens of instructions.
    assert reduces and reduces[0]["prompt_tokens"] > 600 and reduces[0]["parts"] >= 2
    assert len(finals) == 1 and finals[0]["prompt_tokens"] <= 600
    assert result.condense_requests == sum(r["parts"] for r in reduces) + 1
    json.dumps(result.model_dump(mode="json"))  # the result serialises as transcript.json does
