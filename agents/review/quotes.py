"""Check a model's quote against a page's text layer, tolerating what real models write.

A model copies a clause the way it reads it, not the way the PDF stores it: curly quotes for
straight ones, an en dash for a hyphen, "fi" for the ligature glyph, a word split at a line end
("termi- nation") joined again, runs of spaces, and "..." for words it skipped. So a quote is
looked for in three steps, each weaker than the one before:

1. ``exact``: the quote, whitespace collapsed and case folded, is a substring of the page's words.
2. ``approximate``: after :func:`normalise` on both sides (Unicode compatibility forms, quotes,
   dashes, soft hyphens, hyphenation across line breaks, whitespace), the quote is a substring,
   or its pieces around an ellipsis are found in order; else rapidfuzz's best partial alignment
   scores at least :data:`FUZZY_THRESHOLD`.
3. ``unverified``: none of that. The finding is kept and flagged, never dropped.

Every match maps back to the words it covers, so an approximate quote still gets its exact box.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Literal, Sequence

from rapidfuzz import fuzz

from tilepilot.tools.pdf import BBox, Word

FUZZY_THRESHOLD = 90.0  # rapidfuzz partial_ratio (0-100) of the normalised quote against the page
FUZZY_MIN_CHARS = 12  # shorter quotes match too much by chance to be matched fuzzily
SIMILAR_FINDINGS = 80.0  # token_set_ratio above which two document-level findings say the same

_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'", "`": "'", "\u00b4": "'",
                         "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"', "\u00ab": '"', "\u00bb": '"',
                         "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2015": "-", "\u2212": "-",
                         "\u00ad": None, "\u200b": None, "\ufeff": None, "\u00a0": " "})
_ELLIPSIS = re.compile(r"\s*(?:\.\s*\.\s*\.|\u2026)\s*")
_HYPHEN_BREAK = re.compile(r"(?<=\w)-\s+(?=[a-z])")  # "termi- nation": a word split at a line end

Verified = Literal["exact", "approximate", "unverified"]


@dataclass
class QuoteMatch:
    verified: Verified
    bbox: BBox | None = None
    score: float = 100.0


def normalise_char(ch: str) -> str:
    """One character in the form both sides are compared in (may be several characters, or none)."""
    return unicodedata.normalize("NFKC", ch.translate(_QUOTES)).lower()


def normalise(text: str) -> str:
    """Compatibility forms (ligatures), straight quotes, ASCII hyphens, hyphenation joined, whitespace collapsed, lower case."""
    joined = _HYPHEN_BREAK.sub("", "".join(normalise_char(ch) for ch in text))
    return " ".join(joined.split())


@dataclass
class PageIndex:
    """A page's words joined by single spaces, raw and normalised, with offsets back to the words."""

    words: Sequence[Word]
    raw: str = ""
    norm: str = ""
    raw_word: list[int] = field(default_factory=list)  # raw char -> word index (-1: a joining space)
    norm_word: list[int] = field(default_factory=list)  # normalised char -> word index

    @classmethod
    def of(cls, words: Sequence[Word]) -> "PageIndex":
        index = cls(words)
        raw_parts, norm_chars = [], []
        for i, word in enumerate(words):
            if i:
                raw_parts.append(" ")
                index.raw_word.append(-1)
                # A word that ends a line with a hyphen continues on the next: join it without the hyphen.
                continues = norm_chars and norm_chars[-1][0] == "-" and (word.block, word.line) != (words[i - 1].block, words[i - 1].line) \
                    and word.text[:1].islower()
                if continues:
                    norm_chars.pop()
                elif norm_chars and norm_chars[-1][0] != " ":
                    norm_chars.append((" ", -1))
            raw_parts.append(word.text)
            index.raw_word.extend([i] * len(word.text))
            for ch in word.text:
                for out in normalise_char(ch):
                    if out.isspace():
                        if norm_chars and norm_chars[-1][0] != " ":
                            norm_chars.append((" ", i))
                    else:
                        norm_chars.append((out, i))
        index.raw = "".join(raw_parts).lower()
        index.norm = "".join(c for c, _ in norm_chars)
        index.norm_word = [w for _, w in norm_chars]
        return index

    def box(self, owners: Sequence[int], start: int, end: int) -> BBox | None:
        covered = sorted({owners[k] for k in range(max(start, 0), min(end, len(owners))) if owners[k] >= 0})
        if not covered:
            return None
        boxes = [self.words[i].bbox for i in covered]
        return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def match_quote(page: PageIndex, quote: str) -> QuoteMatch:
    """How well ``quote`` is found on the page, and the box of the words it covers."""
    exact = " ".join(quote.split()).lower()
    if len(exact) >= 3 and (start := page.raw.find(exact)) >= 0:
        return QuoteMatch("exact", page.box(page.raw_word, start, start + len(exact)))
    pieces = [p for p in (normalise(piece) for piece in _ELLIPSIS.split(quote)) if p]
    if not pieces or sum(len(p) for p in pieces) < 3:
        return QuoteMatch("unverified", None, 0.0)
    span = _in_order(page.norm, pieces)
    if span is not None:
        return QuoteMatch("approximate", page.box(page.norm_word, *span))
    needle = " ".join(pieces)
    if len(needle) < FUZZY_MIN_CHARS or not page.norm:
        return QuoteMatch("unverified", None, 0.0)
    found = fuzz.partial_ratio_alignment(needle, page.norm, score_cutoff=FUZZY_THRESHOLD)
    if found is None:
        return QuoteMatch("unverified", None, fuzz.partial_ratio(needle, page.norm))
    return QuoteMatch("approximate", page.box(page.norm_word, found.dest_start, found.dest_end), found.score)


def _in_order(text: str, pieces: list[str]) -> tuple[int, int] | None:
    """Start of the first piece and end of the last, each found after the one before."""
    position, first = 0, None
    for piece in pieces:
        start = text.find(piece, position)
        if start < 0:
            return None
        first = start if first is None else first
        position = start + len(piece)
    return (first, position) if first is not None else None


def similar(a: str, b: str) -> bool:
    """Two findings' words say the same thing (order and repeats aside)."""
    na, nb = normalise(a), normalise(b)
    return na == nb or fuzz.token_set_ratio(na, nb) >= SIMILAR_FINDINGS
