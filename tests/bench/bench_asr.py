"""ASR benchmark: WER and real-time factor of each system on a fixed espeak-ng clip set.

    python -m tests.bench.bench_asr [--repeats 3] [--system my.module:attr ...]
                                    [--model tiny|gemma-4-12b] [--base-url URL ...] [--no-model]

A *system* is any ``Callable[[np.ndarray], str]`` taking 16 kHz mono float32 samples (of any
length: the 45 s talk is longer than one model clip, so a system that needs <= 30 s clips must
split with ``tilepilot.tools.audio.split_clips`` itself) and returning a transcript. The faster-whisper
baseline is always included; add more with ``--system module:attr`` (attr is a system or a
``dict[str, system]``) or from Python with ``main(extra_systems={...})``.

The tilepilot model path (``tilepilot.agents.listen``: clips of <= 30 s cut at silences, sent to the vLLM
server in parallel, transcripts merged at the overlaps) is included unless ``--no-model``; it uses
``--base-url`` / ``TILEPILOT_BASE_URL``, or starts the managed local server for ``--model``. With
the tiny random-weight model its words are noise, so its WER is 1.0 or more by construction (about 2.5
here: it says ~3x more noise words than were spoken, each one an insertion) and its RTF measures the plumbing
(encode, HTTP, prefill of ~780 audio tokens, a capped noise answer), not a real model's speed. On
a GPU server with the real 12B the same table is the real comparison.

RTF = median processing time / audio duration over ``--repeats`` runs, after one warm-up call
(which also pays for model loading, reported separately). WER is corpus-level and normalised.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict

from tilepilot.agents.listen.wer import wer_details
from tests.gen.audio import SENTENCES, AudioFactory
from tilepilot.tools.audio import SAMPLE_RATE, load

System = Callable[[np.ndarray], str]


class BenchClip(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    name: str
    reference: str
    samples: np.ndarray

    @property
    def duration_s(self) -> float:
        return len(self.samples) / SAMPLE_RATE


class SystemScore(BaseModel):
    system: str
    wer: float
    rtf: float
    warmup_s: float
    clip_wer: list[float]
    transcripts: list[str]


def fixed_clips(factory: AudioFactory) -> list[BenchClip]:
    """The 5 short sentences plus the 45 s talk (speech separated by pauses)."""
    clips = [
        BenchClip(name=f"sentence-{i + 1}", reference=text, samples=factory.speech_samples(text))
        for i, text in enumerate(SENTENCES)
    ]
    talk = factory.talk(seconds=45.0)
    clips.append(BenchClip(name="talk-45s", reference=" ".join(talk.texts), samples=load(talk.path)[0]))
    return clips


def default_systems() -> dict[str, System]:
    from tilepilot.agents.listen import baseline

    return {"faster-whisper tiny.en int8": baseline.transcribe}


def model_systems(model: str = "tiny", base_url: list[str] | None = None, workers: int = 4) -> dict[str, System]:
    """The listen agent's transcription path as a bench system (the server must be reachable)."""
    import soundfile as sf

    from tilepilot.agents.backend import connect
    from tilepilot.agents.listen.agent import ListenAgent
    from tilepilot.agents.rules import build_policy

    client = connect(model, base_url, quiet=True)
    agent = ListenAgent(client, build_policy("listen"), workers=workers)

    def transcribe(samples: np.ndarray) -> str:
        # The agent's one pipeline, as `tilepilot listen` runs it: the checkpointed graph over a file.
        with tempfile.TemporaryDirectory() as tmp:
            wav = Path(tmp) / "clip.wav"
            sf.write(wav, samples, SAMPLE_RATE, subtype="FLOAT")
            return agent.run(wav, Path(tmp) / "run").text

    noise = ", random weights" if client.profile.is_random_weights else ""
    return {f"tilepilot {client.model} (vLLM{noise})": transcribe}


def score_system(name: str, system: System, clips: list[BenchClip], repeats: int) -> SystemScore:
    started = time.perf_counter()
    system(clips[0].samples)
    warmup_s = time.perf_counter() - started

    transcripts: list[str] = []
    seconds: list[float] = []
    for clip in clips:
        runs = []
        for _ in range(repeats):
            started = time.perf_counter()
            text = system(clip.samples)
            runs.append(time.perf_counter() - started)
        transcripts.append(text)
        seconds.append(statistics.median(runs))
    audio_s = sum(clip.duration_s for clip in clips)
    return SystemScore(
        system=name,
        wer=wer_details([c.reference for c in clips], transcripts).wer,
        rtf=sum(seconds) / audio_s,
        warmup_s=warmup_s,
        clip_wer=[wer_details(c.reference, t).wer for c, t in zip(clips, transcripts)],
        transcripts=transcripts,
    )


def format_table(clips: list[BenchClip], scores: list[SystemScore]) -> str:
    """Clips as rows, systems as columns (WER per clip), then corpus WER, RTF and warm-up."""
    first = max(len("corpus WER"), *(len(c.name) + 8 for c in clips))
    widths = [max(len(s.system), 8) for s in scores]

    def row(label: str, cells: list[str]) -> str:
        return "  ".join([label.ljust(first), *(cell.rjust(w) for cell, w in zip(cells, widths))])

    lines = [row("clip (s)", [s.system for s in scores]), row("-" * first, ["-" * w for w in widths])]
    for i, clip in enumerate(clips):
        lines.append(row(f"{clip.name} ({clip.duration_s:4.1f})", [f"{s.clip_wer[i]:.3f}" for s in scores]))
    lines.append(row("-" * first, ["-" * w for w in widths]))
    lines.append(row("corpus WER", [f"{s.wer:.3f}" for s in scores]))
    lines.append(row("RTF (median)", [f"{s.rtf:.3f}" for s in scores]))
    lines.append(row("warm-up s", [f"{s.warmup_s:.2f}" for s in scores]))
    return "\n".join(lines)


def _import_systems(spec: str) -> dict[str, System]:
    module_name, _, attr = spec.partition(":")
    found = getattr(importlib.import_module(module_name), attr)
    return dict(found) if isinstance(found, dict) else {spec: found}


def main(argv: list[str] | None = None, extra_systems: dict[str, System] | None = None) -> list[SystemScore]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per clip (median is reported)")
    parser.add_argument("--system", action="append", default=[], help="extra system(s) as module:attr")
    parser.add_argument("--no-baseline", action="store_true", help="skip faster-whisper")
    parser.add_argument("--show-transcripts", action="store_true")
    parser.add_argument("--no-model", action="store_true", help="skip the tilepilot model path")
    parser.add_argument("--model", default="tiny", help="profile or checkpoint for the model path")
    parser.add_argument("--base-url", action="append", default=None, help="vLLM server(s); env TILEPILOT_BASE_URL")
    args = parser.parse_args(argv)

    systems = {} if args.no_baseline else default_systems()
    if not args.no_model:
        systems.update(model_systems(args.model, args.base_url))
    for spec in args.system:
        systems.update(_import_systems(spec))
    systems.update(extra_systems or {})

    with tempfile.TemporaryDirectory(prefix="bench-asr-") as tmp:
        clips = fixed_clips(AudioFactory(Path(tmp)))
    scores = [score_system(name, system, clips, args.repeats) for name, system in systems.items()]
    print(format_table(clips, scores))
    if args.show_transcripts:
        for score in scores:
            for clip, text in zip(clips, score.transcripts):
                print(f"[{score.system}] {clip.name}: {text}")
    return scores


if __name__ == "__main__":
    main()
