"""The ``listen`` suite: word error rate of transcripts and recall of key facts in summaries.

Every recording of :mod:`tilepilot.agents.eval.rigs.listen_data` goes through the listen agent exactly as
``tilepilot listen --task summarize`` runs it (clips cut at silences, sent in parallel, merged at
the overlaps, then one summary request), and is scored from its script: corpus WER of the merged
transcript (``wer``, lower is better, clipped to [0, 1]; ``word_accuracy`` = 1 - WER) and the share
of the script's key facts found in the summary (``key_fact_recall``). faster-whisper tiny.en,
the ASR baseline, transcribes the same recordings; its WER sits in the breakdown.

Fast speech (220 wpm) and number-dense speech longer than one 30 s clip are in the full variant,
so a cap on a clip's answer, a bad cut or a bad merge shows up as the reference answerer's WER.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path

from tilepilot.agents.eval.core import EvalContext, Miss, SuiteResult, eval_cache_dir
from tilepilot.agents.eval.rigs.listen_data import Case, ListenAnswerer, cases, fact_found
from tilepilot.agents.listen.agent import ListenAgent, ListenResult
from tilepilot.agents.listen.wer import normalize, wer_details
from tilepilot.agents.rules import build_policy
from tilepilot.model_runtime.client import ChatClient
from tilepilot.tools.audio import load

NAME = "listen"
BASELINE = "faster-whisper-tiny.en"


def listen_to(client: ChatClient, case: Case, run_dir: Path) -> ListenResult:
    """The agent's public path, as the CLI drives it: policy from the rules, then one summarize run."""
    policy = build_policy("listen", [], target=str(case.recording.path))
    return ListenAgent(client, policy).run(case.recording.path, run_dir, task="summarize")


def baseline_transcript(case: Case) -> str | None:
    """faster-whisper tiny.en's transcript (cached per recording); None when the baseline is not installed."""
    from tilepilot.agents.listen import baseline

    digest = hashlib.sha1(case.recording.path.read_bytes()).hexdigest()[:16]
    cached = eval_cache_dir() / "listen" / f"{BASELINE}-{digest}.txt"
    if cached.is_file():
        return cached.read_text()
    try:
        samples, _ = load(case.recording.path)
        text = baseline.transcribe(samples)
    except baseline.AsrBaselineUnavailableError:
        return None
    from tilepilot.agents.runs import write_atomic

    write_atomic(cached, text)
    return text


def first_difference(reference: str, hypothesis: str) -> str:
    """Where two transcripts first part, after normalisation: enough context to see the miss."""
    ref, hyp = normalize(reference).split(), normalize(hypothesis).split()
    i = next((k for k, (a, b) in enumerate(zip(ref, hyp)) if a != b), min(len(ref), len(hyp)))
    return f"word {i + 1}: expected {' '.join(ref[i : i + 6])!r}, got {' '.join(hyp[i : i + 6])!r}"


def _score(value: float) -> float:
    return round(min(1.0, max(0.0, value)), 4)


def run(ctx: EvalContext) -> SuiteResult:
    started = time.monotonic()
    labelled = cases(ctx.small)
    client = ctx.connect(ListenAnswerer(labelled))
    results: list[ListenResult] = []
    try:
        for case in labelled:
            run_dir = ctx.out_dir / "runs" / case.name
            shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run, never a resumed checkpoint
            run_dir.mkdir(parents=True)
            results.append(listen_to(client, case, run_dir))
    finally:
        client.close()
    references = [c.recording.reference for c in labelled]
    hypotheses = [r.text for r in results]
    total = wer_details(references, hypotheses)
    breakdown: dict[str, dict[str, float]] = {}
    misses: list[Miss] = []
    found_all = facts_all = 0
    baselines: list[str | None] = [baseline_transcript(c) for c in labelled]
    for case, result, whisper in zip(labelled, results, baselines):
        wer = wer_details(case.recording.reference, result.text).wer
        found = [f for f in case.facts if fact_found(f, result.summary or "")]
        found_all, facts_all = found_all + len(found), facts_all + len(case.facts)
        row = {"wer": _score(wer), "word_accuracy": _score(1 - wer),
               "key_fact_recall": _score(len(found) / len(case.facts)) if case.facts else 1.0,
               "clips": float(len(result.clips)), "seconds_of_audio": round(case.recording.duration_s, 2),
               "wpm": float(case.recording.wpm),
               "completion_tokens_max": float(max((c.completion_tokens for c in result.clips), default=0))}
        if whisper is not None:
            row["baseline_wer"] = round(wer_details(case.recording.reference, whisper).wer, 4)
        breakdown[f"recording={case.name}"] = row
        if wer > 0:
            misses.append(Miss(case=f"{case.name}/transcript",
                               detail=f"wer {wer:.3f}; {first_difference(case.recording.reference, result.text)}; "
                                      f"clips' completion tokens {[c.completion_tokens for c in result.clips]}"))
        missing = [f for f in case.facts if f not in found]
        if missing:
            misses.append(Miss(case=f"{case.name}/summary",
                               detail=f"{len(missing)} of {len(case.facts)} key facts missing: {', '.join(missing)[:160]}"))
    # WER counts insertions, so it can pass 1.0 (a model that rambles): the headline is clipped to
    # [0, 1] like every eval metric, wer_raw keeps the unclipped corpus figure.
    metrics = {"wer": _score(total.wer), "wer_raw": round(total.wer, 4), "word_accuracy": _score(1 - total.wer),
               "key_fact_recall": _score(found_all / facts_all) if facts_all else 1.0}
    if all(b is not None for b in baselines):
        base = wer_details(references, [b or "" for b in baselines])
        breakdown[f"baseline={BASELINE}"] = {"wer": round(base.wer, 4), "word_accuracy": _score(1 - base.wer)}
    return SuiteResult(suite=NAME, system=ctx.system.label, metrics=metrics, breakdown=breakdown, misses=misses,
                       seconds=round(time.monotonic() - started, 2))

