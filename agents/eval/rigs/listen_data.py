"""The listen suite's labelled recordings, and the reference answerer that knows them.

Three scripts, each spoken by espeak-ng (:mod:`tilepilot.agents.eval.rigs.speech`): a voice memo at a normal
pace, a status update at about 220 words per minute, and a passage dense with numbers. Each
sentence carries the key facts a summary must keep. The full variant speaks every script whole
(each longer than one 30 s model clip, so clip cutting, the per-clip output cap and the transcript
merge are all on the path) plus the numbers again at 220 wpm and a rapid 260 wpm mix; the small variant speaks short
two-sentence pieces of them (one clip each).

The answerer finds where a request's audio clip sits in the known recordings by matching its
samples (normalised cross-correlation to find the offset, then a sample-by-sample check), and
answers with the words said in that span. A summary request is recognised by the transcript it
carries, and answered with the recording's key facts.
"""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import soundfile as sf
from pydantic import BaseModel

from tilepilot.agents.eval.core import eval_cache_dir
from tilepilot.agents.eval.rigs.oracle import OracleReply
from tilepilot.agents.eval.rigs.speech import RATE, Recording, build_recording
from tilepilot.agents.listen.wer import normalize, word_error_rate

PROBE = 4096  # samples of the loudest stretch of a clip used to find its offset
MAX_SAMPLE_DIFF = 3  # 16-bit units: the WAV round trip may move a sample by one
WRONG_TRANSCRIPT = "[inaudible]"  # what rules/listen.md tells a model to write when it cannot hear
WRONG_SUMMARY = "The speaker gives a short update on several topics."


class Sentence(BaseModel):
    text: str
    facts: list[str] = []  # as written in the text; matched after WER normalisation


class Script(BaseModel):
    name: str
    wpm: int
    pause_s: float
    sentences: list[Sentence]


class Case(BaseModel):
    """One recording to run through the listen agent, with its labels."""

    recording: Recording
    facts: list[str]

    @property
    def name(self) -> str:
        return self.recording.name

    @property
    def summary(self) -> str:
        return "Key points: " + "; ".join(self.facts) + "."


def _s(text: str, *facts: str) -> Sentence:
    return Sentence(text=text, facts=list(facts))


MEMO = Script(name="memo", wpm=150, pause_s=0.8, sentences=[
    _s("Voice memo for Tuesday, the 14th of May.", "14th of May"),
    _s("First, the quarterly report. Anna will send the revised figures to finance before Friday.", "Anna", "Friday"),
    _s("The budget for the new office chairs was approved at 2,400 euros.", "2,400 euros"),
    _s("Second, the release. The team agreed to ship version 3.2 at the end of the month, if the tests pass.",
       "version 3.2"),
    _s("Marco raised a concern about the database migration. It needs a dry run on the staging server first.",
       "Marco", "staging server"),
    _s("Third, hiring. We have two candidates for the support role. Interviews are on Thursday at ten.",
       "Thursday"),
    _s("Finally, the team lunch moves from Wednesday to Friday, at half past twelve, at the usual place.",
       "half past twelve"),
])

FAST = Script(name="fast", wpm=220, pause_s=0.35, sentences=[
    _s("Here is the status update for the Orion project, recorded on Monday morning.", "Orion"),
    _s("The design review finished last week, and Priya signed off on the final layout.", "Priya"),
    _s("Backend work is about two thirds done, and the payment service is still waiting for new keys.",
       "payment service"),
    _s("Testing found seventeen open defects, four of them critical, all assigned to Daniel.", "seventeen", "Daniel"),
    _s("The customer demo moves to Wednesday afternoon, because the client asked for more time.", "Wednesday"),
    _s("Marketing wants screenshots by Tuesday, so please freeze the user interface tomorrow evening.", "Tuesday"),
    _s("The hosting bill rose to 3,150 dollars this month, and finance wants the increase explained.",
       "3,150 dollars"),
    _s("Lastly, Sofia joins the team next Monday as a senior engineer, so please prepare her laptop.", "Sofia"),
])

NUMBERS = Script(name="numbers", wpm=190, pause_s=0.4, sentences=[
    _s("Invoice 48213 was issued on March 3rd for 1,975 euros.", "48213", "1,975 euros"),
    _s("The order holds 36 chairs, 12 desks and 240 cables.", "36 chairs", "240 cables"),
    _s("Shipping costs 87.50 euros, and the discount is 15 percent.", "87.50 euros", "15 percent"),
    _s("Room 714 is booked from 9 to 11 on June 21st for 18 people.", "714", "June 21st"),
    _s("Flight 2291 leaves from gate 46 with 183 passengers and 7 crew.", "2291", "gate 46"),
    _s("The lease runs for 36 months at 2,750 euros a month, with 3 months free.", "2,750 euros"),
    _s("Order 66120 ships 9,400 units to 14 stores across 5 regions.", "66120", "9,400 units"),
    _s("Line 8 produced 1,268 parts yesterday, and 19 of them failed inspection.", "1,268 parts", "19"),
])


def _recording(script: Script, sentences: list[Sentence], name: str, wpm: int | None = None) -> Case:
    cache = eval_cache_dir() / "listen"
    recording = build_recording(name, [s.text for s in sentences], cache, wpm=wpm or script.wpm,
                                pause_s=script.pause_s)
    return Case(recording=recording, facts=[f for s in sentences for f in s.facts])


def cases(small: bool) -> list[Case]:
    """The recordings of the suite (generated once, then cached under the eval cache)."""
    scripts = (MEMO, FAST, NUMBERS)
    if small:
        return [_recording(s, s.sentences[i : i + 2], f"{s.name}-{i // 2 + 1}") for s in scripts for i in (0, 2)]
    # The numbers again, fast and in reverse order (so its transcript still tells it apart), and
    # rapid speech (260 wpm, words and numbers) whose 30 s clip says more than 200 tokens' worth.
    return [_recording(s, s.sentences, s.name) for s in scripts] + [
        _recording(NUMBERS, NUMBERS.sentences[::-1], "numbers-fast", wpm=220),
        _recording(FAST, FAST.sentences + NUMBERS.sentences[:4], "rapid", wpm=260)]


# -- the reference answerer ------------------------------------------------------------------


class _Indexed:
    """A recording's 16-bit samples and what cross-correlation needs of them, computed once."""

    def __init__(self, case: Case):
        self.case = case
        self.samples, rate = sf.read(case.recording.path, dtype="int16")
        assert rate == RATE, rate
        self.n = 1 << int(np.ceil(np.log2(len(self.samples) + PROBE)))
        signal = self.samples.astype(np.float64)
        self.spectrum = np.fft.rfft(signal, self.n)
        self.energy = np.concatenate([[0.0], np.cumsum(signal**2)])  # windowed energy by differences

    def offset_of(self, probe: np.ndarray) -> int:
        """Where ``probe`` fits best (normalised cross-correlation), as a start index into the samples."""
        corr = np.fft.irfft(self.spectrum * np.conj(np.fft.rfft(probe, self.n)), self.n)[: len(self.samples) - len(probe) + 1]
        window = self.energy[len(probe):] - self.energy[: -len(probe)]
        score = corr / np.sqrt(np.maximum(window, 1.0))
        return int(np.argmax(score))

    def matches(self, clip: np.ndarray, start: int) -> bool:
        """The clip equals the recording from ``start`` (past the end, the clip must be zero padding)."""
        if start < 0:
            return False
        inside = min(len(clip), len(self.samples) - start)
        if inside <= 0:
            return False
        diff = np.abs(clip[:inside].astype(np.int32) - self.samples[start : start + inside].astype(np.int32))
        return int(diff.max()) <= MAX_SAMPLE_DIFF and not np.any(clip[inside:])


class ListenAnswerer:
    """Answers transcription requests by locating the clip's samples, summary requests by their transcript."""

    def __init__(self, all_cases: list[Case]):
        self.indexed = [_Indexed(c) for c in all_cases]

    def locate(self, clip: np.ndarray) -> tuple[Case, int] | None:
        """(recording, start sample) of a 16-bit clip, or None when it is in no known recording."""
        if len(clip) < PROBE:
            return None
        steps = range(0, len(clip) - PROBE + 1, PROBE // 2)
        probe_at = max(steps, key=lambda i: float(np.square(clip[i : i + PROBE].astype(np.float64)).sum()))
        probe = clip[probe_at : probe_at + PROBE].astype(np.float64)
        if not np.any(probe):
            return None  # a silent clip: nothing to locate (and nothing said in it)
        for known in self.indexed:
            start = known.offset_of(probe) - probe_at
            if known.matches(clip, start):
                return known.case, start
        return None

    def __call__(self, body: dict) -> OracleReply | None:
        audio = [p["input_audio"]["data"] for p in _parts(body) if p.get("type") == "input_audio"]
        if len(audio) == 1:
            clip, rate = sf.read(io.BytesIO(base64.b64decode(audio[0])), dtype="int16")
            found = self.locate(clip) if rate == RATE and clip.ndim == 1 else None
            if found is None:
                return None
            case, start = found
            words = case.recording.words_between(start / RATE, (start + len(clip)) / RATE)
            return OracleReply(key=f"{case.name}@{start}", right=" ".join(words), wrong=WRONG_TRANSCRIPT)
        text = "\n".join(p.get("text", "") for p in _parts(body) if p.get("type") == "text")
        if audio or "Transcript:" not in text or "This is part" in text:
            return None  # part-notes of a hierarchical summary never happen with these short recordings
        case = self.identify_transcript(text.split("Transcript:", 1)[1])
        if case is None:
            return None
        return OracleReply(key=f"{case.name}/summary", right=case.summary, wrong=WRONG_SUMMARY)

    def identify_transcript(self, transcript: str) -> Case | None:
        """The recording whose reference is closest (lowest WER) to ``transcript``, if clearly closest."""
        if not normalize(transcript):
            return None
        ranked = sorted((word_error_rate(k.case.recording.reference, transcript), i) for i, k in enumerate(self.indexed))
        (best, index), runner_up = ranked[0], (ranked[1][0] if len(ranked) > 1 else 1.0)
        return self.indexed[index].case if best < min(1.0, runner_up) else None


def _parts(body: dict) -> list[dict]:
    return [part for msg in body.get("messages", []) if isinstance(msg.get("content"), list) for part in msg["content"]]


def fact_found(fact: str, summary: str) -> bool:
    """The fact's words appear, in order and whole, in the summary (both WER-normalised)."""
    return re.search(rf"(?:^| ){re.escape(normalize(fact))}(?: |$)", normalize(summary)) is not None
