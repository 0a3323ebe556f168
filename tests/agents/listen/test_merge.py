"""Overlap de-duplication on synthetic transcripts: what each clip would say, seams included."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tilepilot.agents.listen.merge import find_overlap, merge_transcripts, merge_two, window_for

TEXT = ("good morning everyone and welcome to the weekly planning meeting first we will review the tasks "
        "that were finished last week then we will look at the open issues and decide who takes each one").split()


def test_exact_overlap_is_said_once() -> None:
    a = " ".join(TEXT[:14])
    b = " ".join(TEXT[11:])
    assert merge_two(a, b) == " ".join(TEXT)


def test_case_punctuation_and_a_garbled_first_word_at_the_seam() -> None:
    # The later clip starts mid-word ("eekly" for "weekly") and capitalises; the overlap is "planning meeting first".
    earlier = "Good morning, everyone, and welcome to the weekly planning meeting. First"
    later = "eekly Planning meeting, first we will review the tasks."
    assert merge_two(earlier, later) == ("Good morning, everyone, and welcome to the weekly planning meeting. First "
                                         "we will review the tasks.")


def test_no_shared_words_concatenates() -> None:
    assert merge_two("the cat sat", "on a mat") == "the cat sat on a mat"


def test_a_lone_common_word_away_from_the_seam_is_not_an_overlap() -> None:
    # "the" appears on both sides but not at the seam: both clips' words are kept.
    assert find_overlap("open the report now".split(), "read it all then the end".split(), 24) is None
    assert merge_two("open the report now", "read it all then the end") == "open the report now read it all then the end"


def test_a_single_word_right_at_the_seam_is_an_overlap() -> None:
    assert merge_two("we meet at noon", "noon sharp in room four") == "we meet at noon sharp in room four"


def test_longest_run_wins_over_a_nearer_shorter_one() -> None:
    earlier = "alpha beta gamma delta epsilon zeta".split()
    later = "gamma delta epsilon zeta eta".split()
    match = find_overlap(earlier, later, 24)
    assert match is not None and match.length == 4 and match.earlier_end == 6 and match.later_end == 4


def test_window_limits_how_far_from_the_seam_we_look() -> None:
    earlier = ("repeat this phrase " + "x " * 30).split()
    later = "repeat this phrase and more".split()
    assert find_overlap(earlier, later, window=8) is None
    assert find_overlap(earlier, later, window=40) is not None


def test_merge_many_and_empty_clips() -> None:
    clips = [" ".join(TEXT[0:12]), "", " ".join(TEXT[10:25]), " ".join(TEXT[22:])]
    assert merge_transcripts(clips) == " ".join(TEXT)
    assert merge_transcripts([]) == ""
    assert merge_transcripts(["  spaced   out  "]) == "spaced out"


@settings(max_examples=150, deadline=None)
@given(
    n_words=st.integers(min_value=1, max_value=300),
    cuts=st.lists(st.tuples(st.integers(min_value=5, max_value=60), st.integers(min_value=1, max_value=6)),
                  min_size=1, max_size=12),
)
def test_windows_of_distinct_words_merge_back_to_the_text(n_words: int, cuts: list[tuple[int, int]]) -> None:
    # Distinct words make chance matches impossible, so the merge must recover the text exactly.
    words = [f"w{i}" for i in range(n_words)]
    clips, start = [], 0
    for length, overlap in cuts:
        end = min(start + length, n_words)
        clips.append(" ".join(words[start:end]))
        if end == n_words:
            break
        start = max(end - overlap, 0)
    else:
        clips.append(" ".join(words[start:]))
    assert merge_transcripts(clips) == " ".join(words)


@pytest.mark.parametrize("overlap", [2, 3, 5])
def test_real_sentence_windows(overlap: int) -> None:
    clips = [" ".join(TEXT[i : i + 12]) for i in range(0, len(TEXT), 12 - overlap)]
    assert merge_transcripts(clips) == " ".join(TEXT)


def test_a_chance_repeat_further_back_does_not_outrank_the_seam():
    # From the eval's 220 wpm recording: 1 s of overlap shares only "explained." at the seam,
    # while "so please" recurs 20 words back. A 24-word window cut those 20 words out.
    earlier = ("so please keep the receipts for every trip and send them to finance before the end of the month "
               "as the team lead explained.")
    later = "explained. After that, so please book the rooms early and share the plan."
    merged = merge_transcripts([earlier, later])
    assert merged == earlier + " After that, so please book the rooms early and share the plan."
    assert window_for(1.0) == 8 and window_for(2.0) == 14
