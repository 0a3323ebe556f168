"""Deterministic spoken recordings with known words and times: espeak-ng speech, sox resampling.

The listen suite needs speech whose words are known exactly (the WER reference) and roughly *when*
each word is said (so the reference answerer can say which words a clip of the recording holds).
Each sentence is synthesised on its own, trimmed to its loud span and placed after a fixed pause,
so sentence times are exact; word times inside a sentence are spread by letter count, which is
all the answerer needs (it only has to agree with itself at clip seams).

``tests/gen/audio.py`` uses the same espeak-ng/sox calls; neither goes through ``tilepilot.tools.audio``, so
the generator does not share bugs with the decoder it feeds.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
from pydantic import BaseModel

from tilepilot.agents.errors import UsageError
from tilepilot.agents.runs import write_atomic

VOICE = "en"
RATE = 16_000
SPEECH_LEVEL = 1e-3  # |sample| above this counts as speech when trimming a sentence
RECIPE_VERSION = 2  # part of every cache key: bump when the synthesis recipe changes


class MissingSpeechToolsError(UsageError):
    """espeak-ng or sox is not installed."""


def require_tools() -> None:
    missing = [tool for tool in ("espeak-ng", "sox") if shutil.which(tool) is None]
    if missing:
        raise MissingSpeechToolsError(f"generating speech needs {', '.join(missing)} on PATH "
                                      "(apt-get install espeak-ng sox)")


def _run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


def espeak_wav(text: str, out: Path, *, voice: str = VOICE, wpm: int = 130) -> Path:
    """espeak-ng's own output: 22.05 kHz mono 16-bit WAV."""
    _run(["espeak-ng", "-v", voice, "-s", str(wpm), "-w", str(out), text])
    return out


def sox_convert(src: Path, out: Path, *, rate: int, channels: int, dither: bool = True) -> Path:
    """Resample/remix ``src`` into ``out``; the container follows ``out``'s suffix.

    sox dithers (randomly) when it requantises to 16 bits; ``dither=False`` makes the output
    byte-identical from run to run.
    """
    _run(["sox", *([] if dither else ["-D"]), str(src), "-r", str(rate), "-c", str(channels), str(out)])
    return out


def loud_span(mono: np.ndarray, offset: int = 0) -> tuple[int, int]:
    """First and last sample above :data:`SPEECH_LEVEL`, shifted by ``offset``."""
    loud = np.flatnonzero(np.abs(mono) > SPEECH_LEVEL)
    if loud.size == 0:
        return offset, offset
    return offset + int(loud[0]), offset + int(loud[-1]) + 1


class SpokenWord(BaseModel):
    text: str  # as written in the script, punctuation included
    start_s: float
    end_s: float

    @property
    def mid_s(self) -> float:
        return (self.start_s + self.end_s) / 2


class Recording(BaseModel):
    """A generated 16 kHz mono PCM-16 WAV, its script and where each word is said."""

    name: str
    path: Path
    wpm: int
    sentences: list[str]
    words: list[SpokenWord]
    num_samples: int

    @property
    def duration_s(self) -> float:
        return self.num_samples / RATE

    @property
    def reference(self) -> str:
        return " ".join(self.sentences)

    def words_between(self, start_s: float, end_s: float) -> list[str]:
        """The words whose middle lies in ``[start_s, end_s)``: what a clip of that span holds."""
        return [w.text for w in self.words if start_s <= w.mid_s < end_s]


def _sentence_samples(text: str, wpm: int, work: Path) -> np.ndarray:
    raw = espeak_wav(text, work / "s.wav", wpm=wpm)
    converted = sox_convert(raw, work / "s16.wav", rate=RATE, channels=1, dither=False)
    samples, rate = sf.read(converted, dtype="float32")
    if rate != RATE:
        raise RuntimeError(f"sox wrote {rate} Hz, expected {RATE}")
    a, b = loud_span(samples)
    return samples[a:b]


def _spread_words(text: str, start: int, end: int) -> list[SpokenWord]:
    """Word times inside one sentence's loud span, proportional to letters (+1 for the gap)."""
    tokens = text.split()
    weights = np.array([len(t) + 1 for t in tokens], dtype=np.float64)
    edges = start + np.concatenate([[0.0], np.cumsum(weights)]) / weights.sum() * (end - start)
    return [SpokenWord(text=t, start_s=round(float(edges[i]) / RATE, 4), end_s=round(float(edges[i + 1]) / RATE, 4))
            for i, t in enumerate(tokens)]


def build_recording(name: str, sentences: list[str], cache: Path, *, wpm: int, pause_s: float,
                    lead_s: float = 0.3) -> Recording:
    """Speak ``sentences`` at ``wpm`` with ``pause_s`` of digital silence between them (cached)."""
    key = hashlib.sha1(json.dumps([RECIPE_VERSION, VOICE, wpm, pause_s, lead_s, sentences]).encode()).hexdigest()[:12]
    cache.mkdir(parents=True, exist_ok=True)
    wav, meta = cache / f"{name}-{key}.wav", cache / f"{name}-{key}.json"
    if wav.is_file() and meta.is_file():
        return Recording.model_validate_json(meta.read_text())
    require_tools()
    pieces: list[np.ndarray] = []
    words: list[SpokenWord] = []
    cursor = round(lead_s * RATE)
    pause = np.zeros(round(pause_s * RATE), dtype=np.float32)
    with tempfile.TemporaryDirectory(prefix="tilepilot-speech-") as tmp:
        pieces.append(np.zeros(cursor, dtype=np.float32))
        for text in sentences:
            voice = _sentence_samples(text, wpm, Path(tmp))
            words += _spread_words(text, cursor, cursor + len(voice))
            pieces += [voice, pause]
            cursor += len(voice) + len(pause)
    signal = np.concatenate(pieces)
    recording = Recording(name=name, path=wav, wpm=wpm, sentences=sentences, words=words, num_samples=len(signal))
    buf = io.BytesIO()
    sf.write(buf, signal, RATE, subtype="PCM_16", format="WAV")
    # The WAV first, its words second: a cache entry counts only once both exist.
    write_atomic(wav, buf.getvalue())
    write_atomic(meta, recording.model_dump_json(indent=1))
    return recording
