"""Word error rate with the normalisation ASR comparisons need.

Two transcripts of the same speech differ in ways that are not recognition errors: case,
punctuation, "42" versus "forty-two", "3rd" versus "third". :func:`normalize` maps both sides to
one canonical form (lowercase words, numbers spelled out in words without "and") before jiwer
counts edits. Numbers up to 999,999,999 are spelled out; longer digit runs are read digit by digit.
Years ("1990" read as "nineteen ninety") are deliberately not special-cased.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import jiwer
from pydantic import BaseModel

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((1_000_000, "million"), (1_000, "thousand"))
_IRREGULAR_ORDINALS = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
                       "nine": "ninth", "twelve": "twelfth"}
_NUMBER_WORDS = frozenset(_ONES + _TENS[2:] + ["hundred", "thousand", "million"])
_MAX_SPELLED = 999_999_999


class WerResult(BaseModel):
    """Edit counts pooled over every reference/hypothesis pair (corpus-level WER)."""

    wer: float
    substitutions: int
    deletions: int
    insertions: int
    hits: int

    @property
    def reference_words(self) -> int:
        return self.substitutions + self.deletions + self.hits


def number_to_words(n: int) -> str:
    """0 <= n <= 999,999,999 in words, without "and": 342 -> "three hundred forty two"."""
    if not 0 <= n <= _MAX_SPELLED:
        raise ValueError(f"can only spell 0..{_MAX_SPELLED}, got {n}")
    if n == 0:
        return "zero"
    words: list[str] = []
    for scale, name in _SCALES:
        if n >= scale:
            words += [_below_thousand(n // scale), name]
            n %= scale
    if n:
        words.append(_below_thousand(n))
    return " ".join(words)


def _below_thousand(n: int) -> str:
    words: list[str] = []
    if n >= 100:
        words += [_ONES[n // 100], "hundred"]
        n %= 100
    if n >= 20:
        words.append(_TENS[n // 10])
        n %= 10
    if n or not words:
        words.append(_ONES[n])
    return " ".join(words)


def ordinal_to_words(n: int) -> str:
    """21 -> "twenty first", 40 -> "fortieth"."""
    *head, last = number_to_words(n).split()
    if last in _IRREGULAR_ORDINALS:
        last = _IRREGULAR_ORDINALS[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return " ".join([*head, last])


def _digits_to_words(digits: str) -> str:
    value = int(digits)
    if value > _MAX_SPELLED or (len(digits) > 1 and digits.startswith("0")):
        return " ".join(_ONES[int(d)] for d in digits)  # "007", phone numbers: read digit by digit
    return number_to_words(value)


_THOUSANDS_SEP = re.compile(r"(?<=\d),(?=\d{3}\b)")
_DECIMAL = re.compile(r"(\d+)\.(\d+)")
_ORDINAL = re.compile(r"\b(\d+)(?:st|nd|rd|th)\b")
_INTEGER = re.compile(r"\d+")
_NOT_WORD = re.compile(r"[^a-z0-9\s]+")


def normalize(text: str) -> str:
    """Lowercase, numbers in words, no punctuation, single spaces."""
    text = text.lower().replace("%", " percent ")
    text = _THOUSANDS_SEP.sub("", text)
    text = _DECIMAL.sub(lambda m: f"{_digits_to_words(m[1])} point {' '.join(_ONES[int(d)] for d in m[2])}", text)
    text = _ORDINAL.sub(lambda m: ordinal_to_words(int(m[1])) if int(m[1]) <= _MAX_SPELLED else m[0], text)
    text = _INTEGER.sub(lambda m: f" {_digits_to_words(m[0])} ", text)
    text = _NOT_WORD.sub(lambda m: "" if m[0] == "'" else " ", text)  # "don't" -> "dont", "a-b" -> "a b"
    tokens = text.split()
    # "one hundred and five" is the same number as "105" -> "one hundred five".
    kept = [
        tok for i, tok in enumerate(tokens)
        if not (tok == "and" and 0 < i < len(tokens) - 1 and tokens[i - 1] in ("hundred", "thousand", "million")
                and tokens[i + 1] in _NUMBER_WORDS)
    ]
    return " ".join(kept)


def wer_details(reference: str | Sequence[str], hypothesis: str | Sequence[str]) -> WerResult:
    """Normalised, corpus-level WER; lists are paired element by element."""
    refs = [reference] if isinstance(reference, str) else list(reference)
    hyps = [hypothesis] if isinstance(hypothesis, str) else list(hypothesis)
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses; pass one hypothesis per reference")
    refs, hyps = [normalize(r) for r in refs], [normalize(h) for h in hyps]
    if not any(refs):
        raise ValueError("every reference transcript is empty after normalisation; WER is undefined")
    # Empty strings are fine for jiwer 4: an empty hypothesis is all deletions, an empty reference all insertions.
    counts = jiwer.process_words(refs, hyps)
    return WerResult(wer=counts.wer, substitutions=counts.substitutions, deletions=counts.deletions,
                     insertions=counts.insertions, hits=counts.hits)


def word_error_rate(reference: str | Sequence[str], hypothesis: str | Sequence[str]) -> float:
    return wer_details(reference, hypothesis).wer
