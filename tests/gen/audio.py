"""Deterministic test audio: espeak-ng speech, numpy tones/noise/silence, a 45 s talk, broken files.

Everything is generated from fixed inputs (voice, speaking rate, seeds), so the same call always
produces the same file. :class:`AudioFactory` caches files in one directory per test session, so a
fixture can ask for the same file many times and pay for it once.

Speech comes from the espeak-ng CLI (22.05 kHz mono WAV) and is converted by sox to the requested
rate, channel count and container (wav, flac, ogg, mp3, chosen by suffix). None of it goes through
``tilepilot.tools.audio``: the generator must not share bugs with the code it tests.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

# The espeak-ng/sox calls are shared with the eval suite's speech generator (package code cannot import tests).
from tilepilot.agents.eval.rigs.speech import espeak_wav, require_tools, sox_convert  # noqa: F401  (re-exported)
from tilepilot.agents.eval.rigs.speech import loud_span as _loud_span

VOICE = "en"
WORDS_PER_MINUTE = 130

# Fixed ASR clip set: plain words, a number and an ordinal to exercise WER normalisation.
SENTENCES: tuple[str, ...] = (
    "The quick brown fox jumps over the lazy dog.",
    "Please open the quarterly report and read the summary.",
    "The meeting starts at ten and ends at noon.",
    "She bought twenty four apples at the market.",
    "Click the third button on the left side of the screen.",
)

# Longer passages for the 45 s talk (about 4 to 6 s each at 130 words per minute).
_TALK = (
    "Good morning everyone, and welcome to the weekly planning meeting.",
    "First we will review the tasks that were finished last week.",
    "Then we will look at the open issues and decide who takes each one.",
    "The release is planned for the end of the month if the tests pass.",
    "Please send your notes to the team before Friday afternoon.",
    "Thank you all for coming, and see you next week.",
    "The quick brown fox jumps over the lazy dog.",
    "Please open the quarterly report and read the summary.",
)


@dataclass(frozen=True)
class Talk:
    """A generated recording and where its speech is, in seconds of the file."""

    path: Path
    rate: int
    speech_spans: tuple[tuple[float, float], ...]
    texts: tuple[str, ...]  # what is said in each span, in order

    @property
    def gaps(self) -> tuple[tuple[float, float], ...]:
        """Silences between consecutive speech spans."""
        return tuple((a[1], b[0]) for a, b in zip(self.speech_spans, self.speech_spans[1:]))


def tone_samples(seconds: float, rate: int, channels: int = 1, freq: float = 440.0, amplitude: float = 0.5) -> np.ndarray:
    """(frames, channels) float32 sine; channel k is shifted by k*90 degrees so a downmix is not trivial."""
    t = np.arange(round(seconds * rate)) / rate
    columns = [amplitude * np.sin(2 * np.pi * freq * t + k * np.pi / 2) for k in range(channels)]
    return np.stack(columns, axis=1).astype(np.float32)


def noise_samples(seconds: float, rate: int, channels: int = 1, amplitude: float = 0.1, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (amplitude * rng.standard_normal((round(seconds * rate), channels))).astype(np.float32)


def loud_span(mono: np.ndarray, rate: int, offset: int = 0) -> tuple[int, int]:
    """First and last sample above the speech level, shifted by ``offset``."""
    return _loud_span(mono, offset)


class AudioFactory:
    """Makes and caches test audio under ``root``; file names encode the parameters."""

    def __init__(self, root: Path):
        require_tools()
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, stem: str, suffix: str) -> Path:
        return self.root / f"{stem}.{suffix.lstrip('.')}"

    def _espeak(self, text: str) -> Path:
        key = hashlib.sha1(f"{VOICE}|{WORDS_PER_MINUTE}|{text}".encode()).hexdigest()[:12]
        out = self._path(f"espeak-{key}", "wav")
        return out if out.exists() else espeak_wav(text, out)

    # -- speech --------------------------------------------------------------------------------

    def speech(self, text: str, *, fmt: str = "wav", rate: int = 16_000, channels: int = 1) -> Path:
        """``text`` spoken by espeak-ng, converted to ``rate`` Hz, ``channels`` channels, container ``fmt``."""
        src = self._espeak(text)
        out = self._path(f"{src.stem}-{rate}-{channels}ch", fmt)
        return out if out.exists() else sox_convert(src, out, rate=rate, channels=channels)

    def speech_samples(self, text: str) -> np.ndarray:
        """``text`` as 16 kHz mono float32 (via sox, not tilepilot.tools.audio)."""
        data, rate = sf.read(self.speech(text), dtype="float32")
        assert rate == 16_000, rate
        return data

    def talk(self, *, seconds: float = 45.0, pause_s: float = 1.2, rate: int = 16_000) -> Talk:
        """A ``seconds``-long mono WAV of sentences separated by ``pause_s`` of digital silence."""
        out = self._path(f"talk-{seconds:g}s-{pause_s:g}p-{rate}", "wav")
        total = round(seconds * rate)
        pause = round(pause_s * rate)
        signal = np.zeros(total, dtype=np.float32)
        spans: list[tuple[float, float]] = []
        texts: list[str] = []
        cursor = round(0.5 * rate)
        for text in _TALK:
            src = self.speech(text, rate=rate)
            voice, _ = sf.read(src, dtype="float32")
            a, b = loud_span(voice, rate)
            voice = voice[a:b]
            if cursor + len(voice) > total:
                break
            signal[cursor : cursor + len(voice)] = voice
            spans.append((cursor / rate, (cursor + len(voice)) / rate))
            texts.append(text)
            cursor += len(voice) + pause
        if not out.exists():
            sf.write(out, signal, rate, subtype="PCM_16")
        return Talk(out, rate, tuple(spans), tuple(texts))

    # -- synthetic -----------------------------------------------------------------------------

    def tone(self, *, seconds: float, rate: int, channels: int = 1, fmt: str = "wav", freq: float = 440.0) -> Path:
        out = self._path(f"tone-{seconds:g}s-{rate}-{channels}ch-{freq:g}", fmt)
        if not out.exists():
            sf.write(out, tone_samples(seconds, rate, channels, freq), rate)
        return out

    def noise(self, *, seconds: float, rate: int, channels: int = 1, fmt: str = "wav", seed: int = 0) -> Path:
        out = self._path(f"noise-{seconds:g}s-{rate}-{channels}ch-{seed}", fmt)
        if not out.exists():
            sf.write(out, noise_samples(seconds, rate, channels, seed=seed), rate)
        return out

    def silence(self, *, seconds: float, rate: int = 16_000, channels: int = 1, fmt: str = "wav") -> Path:
        out = self._path(f"silence-{seconds:g}s-{rate}-{channels}ch", fmt)
        if not out.exists():
            sf.write(out, np.zeros((round(seconds * rate), channels), dtype=np.float32), rate)
        return out

    def long_noise_tone(self, *, minutes: float = 10.0, rate: int = 44_100, channels: int = 2) -> Path:
        """A long 16-bit WAV (tone + noise), written in one-minute chunks so generation stays lean."""
        out = self._path(f"long-{minutes:g}min-{rate}-{channels}ch", "wav")
        if out.exists():
            return out
        with sf.SoundFile(out, "w", samplerate=rate, channels=channels, subtype="PCM_16") as handle:
            whole, rest = divmod(minutes * 60.0, 60.0)
            for minute in range(int(whole)):
                handle.write(self._minute_chunk(60.0, rate, channels, minute))
            if rest:
                handle.write(self._minute_chunk(rest, rate, channels, int(whole)))
        return out

    @staticmethod
    def _minute_chunk(seconds: float, rate: int, channels: int, seed: int) -> np.ndarray:
        return tone_samples(seconds, rate, channels, freq=220.0 + 20 * seed, amplitude=0.3) + noise_samples(
            seconds, rate, channels, amplitude=0.05, seed=seed
        )

    # -- broken files --------------------------------------------------------------------------

    def corrupt(self, suffix: str = "wav") -> Path:
        """Seeded random bytes with an audio suffix: no decoder can read it."""
        out = self._path("corrupt", suffix)
        if not out.exists():
            out.write_bytes(np.random.default_rng(7).bytes(4096))
        return out

    def zero_bytes(self, suffix: str = "wav") -> Path:
        out = self._path("zero-bytes", suffix)
        out.touch()
        return out

    def header_only(self) -> Path:
        """A valid WAV header with no frames."""
        out = self._path("header-only", "wav")
        if not out.exists():
            sf.write(out, np.zeros((0, 1), dtype=np.float32), 16_000, subtype="PCM_16")
        return out

    def not_audio(self) -> Path:
        out = self._path("notes", "txt")
        out.write_text("meeting notes, not audio\n")
        return out

    def m4a_tone(self, *, seconds: float = 2.0, rate: int = 44_100) -> Path:
        """AAC in MP4, which libsndfile cannot read: exercises the PyAV path. Encoded with PyAV."""
        import av

        out = self._path(f"tone-{seconds:g}s-{rate}", "m4a")
        if out.exists():
            return out
        samples = tone_samples(seconds, rate, 1)[:, 0]
        with av.open(str(out), "w") as container:
            stream = container.add_stream("aac", rate=rate, layout="mono")
            frame_size = 1024
            for i in range(0, len(samples), frame_size):
                frame = av.AudioFrame.from_ndarray(samples[None, i : i + frame_size], format="fltp", layout="mono")
                frame.sample_rate = rate
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode(None):
                container.mux(packet)
        return out
