"""Join per-clip transcripts whose audio overlaps, without saying the overlap twice.

Consecutive clips share ``overlap`` seconds of audio, so the end of one transcript and the start of
the next usually repeat a few words. The two sides need not agree exactly: the next clip starts
mid-word, so its first word may be garbled, and case and punctuation differ. We therefore look for
the longest run of words (compared after normalisation) shared by the tail of the earlier text and
the head of the later one, keep the earlier text up to the end of that run and continue the later
text after it. The same approach as chunked-ASR pipelines that merge on the longest common
sequence (e.g. transformers' ``_find_longest_common_sequence``), but on words, since the model
gives no timestamps.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from pydantic import BaseModel

_NOT_WORD = re.compile(r"[^\w']+")
# Faster than any speech in practice (360 words a minute): bounds the words an overlap can hold.
MAX_WORDS_PER_S = 6.0


def window_for(overlap_s: float) -> int:
    """Words worth comparing at a seam: what ``overlap_s`` of fast speech holds, plus a word cut
    on either side. A wider window lets a chance repeat further back outrank the true seam (a
    24-word window deleted 38 words of a 220 wpm recording in the eval's listen suite)."""
    return math.ceil(overlap_s * MAX_WORDS_PER_S) + 2


class OverlapMatch(BaseModel):
    """Where the shared run sits: ``earlier[earlier_end - length:earlier_end] ~ later[later_end - length:later_end]``."""

    earlier_end: int
    later_end: int
    length: int


def _key(word: str) -> str:
    return _NOT_WORD.sub("", word.lower()).replace("'", "")


def find_overlap(earlier: Sequence[str], later: Sequence[str], window: int) -> OverlapMatch | None:
    """The longest shared word run between the last ``window`` words of ``earlier`` and the first
    ``window`` of ``later``. Ties go to the run nearest the seam. A single shared word only counts
    when it sits right at the seam (last word of one, first of the other): elsewhere a lone "the" is
    as likely chance as overlap."""
    tail_start = max(len(earlier) - window, 0)
    tail = [_key(w) for w in earlier[tail_start:]]
    head = [_key(w) for w in later[:window]]
    best: OverlapMatch | None = None
    best_rank: tuple[int, int] = (0, 0)
    # run[i][j]: length of the common run ending at tail[i-1], head[j-1] (classic DP, window^2 small).
    run = [[0] * (len(head) + 1) for _ in range(len(tail) + 1)]
    for i in range(1, len(tail) + 1):
        for j in range(1, len(head) + 1):
            if tail[i - 1] and tail[i - 1] == head[j - 1]:
                run[i][j] = run[i - 1][j - 1] + 1
                length = run[i][j]
                distance = (len(tail) - i) + (j - length)  # words skipped on either side of the seam
                rank = (length, -distance)
                if best is None or rank > best_rank:
                    best, best_rank = OverlapMatch(earlier_end=tail_start + i, later_end=j, length=length), rank
    if best is None:
        return None
    if best.length == 1 and best_rank[1] != 0:
        return None
    return best


DEFAULT_WINDOW = window_for(1.0)


def merge_two(earlier: str, later: str, window: int = DEFAULT_WINDOW) -> str:
    """``earlier`` then ``later``, with the words they share at the seam said once."""
    a, b = earlier.split(), later.split()
    match = find_overlap(a, b, window)
    if match is None:
        return " ".join(a + b)
    return " ".join(a[: match.earlier_end] + b[match.later_end :])


def merge_transcripts(texts: Sequence[str], window: int = DEFAULT_WINDOW) -> str:
    """Fold :func:`merge_two` over clip transcripts in order. ``window`` bounds how many words at
    each seam may be compared (:func:`window_for` the clips' overlap; the default suits 1 s)."""
    merged = ""
    for text in texts:
        merged = merge_two(merged, text, window) if merged else " ".join(text.split())
    return merged
