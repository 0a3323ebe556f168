"""WER and its normalisation on known pairs (counts checked by hand)."""

from __future__ import annotations

import pytest

from tilepilot.agents.listen.wer import normalize, number_to_words, ordinal_to_words, wer_details, word_error_rate


@pytest.mark.parametrize(
    ("n", "words"),
    [
        (0, "zero"), (7, "seven"), (13, "thirteen"), (20, "twenty"), (42, "forty two"), (100, "one hundred"),
        (105, "one hundred five"), (999, "nine hundred ninety nine"), (1_000, "one thousand"),
        (12_019, "twelve thousand nineteen"), (999_999, "nine hundred ninety nine thousand nine hundred ninety nine"),
        (2_000_001, "two million one"),
    ],
)
def test_number_to_words(n: int, words: str) -> None:
    assert number_to_words(n) == words


@pytest.mark.parametrize(
    ("n", "words"),
    [(1, "first"), (2, "second"), (3, "third"), (5, "fifth"), (8, "eighth"), (9, "ninth"), (12, "twelfth"),
     (20, "twentieth"), (21, "twenty first"), (40, "fortieth"), (100, "one hundredth"), (4, "fourth")],
)
def test_ordinal_to_words(n: int, words: str) -> None:
    assert ordinal_to_words(n) == words


def test_number_to_words_rejects_out_of_range() -> None:
    with pytest.raises(ValueError):
        number_to_words(-1)
    with pytest.raises(ValueError):
        number_to_words(1_000_000_000)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("She bought 42 apples.", "she bought forty-two apples"),
        ("Take the 3rd exit", "take the third exit"),
        ("the 21st century", "The twenty first century!"),
        ("It costs 1,250 dollars", "it costs one thousand two hundred and fifty dollars"),
        ("pi is 3.14", "pi is three point one four"),
        ("Don't STOP, now.", "dont stop now"),
        ("50% off", "fifty percent off"),
        ("call 007", "call zero zero seven"),
    ],
)
def test_normalisation_makes_equivalent_transcripts_equal(a: str, b: str) -> None:
    assert normalize(a) == normalize(b)
    assert word_error_rate(a, b) == 0.0


def test_and_is_only_dropped_inside_numbers() -> None:
    assert normalize("rock and roll and two hundred and six") == "rock and roll and two hundred six"


def test_wer_counts_substitutions_deletions_insertions() -> None:
    # ref: the cat sat on the mat (6 words); hyp: well the bat sat on mat -> 1 ins, 1 sub, 1 del.
    result = wer_details("The cat sat on the mat.", "well the bat sat on mat")
    assert (result.substitutions, result.deletions, result.insertions, result.hits) == (1, 1, 1, 4)
    assert result.reference_words == 6
    assert result.wer == pytest.approx(3 / 6)


def test_number_mismatch_still_counts_as_error() -> None:
    assert word_error_rate("she bought 24 apples", "she bought 25 apples") == pytest.approx(1 / 5)


def test_corpus_wer_pools_counts_over_pairs() -> None:
    refs = ["one two three four", "five six"]
    hyps = ["one two three four", ""]  # second transcript missing entirely: 2 deletions of 6 words
    assert word_error_rate(refs, hyps) == pytest.approx(2 / 6)
    assert word_error_rate(["a b"], ["a b c d"]) == pytest.approx(1.0)


def test_mismatched_lengths_and_empty_references_are_rejected() -> None:
    with pytest.raises(ValueError, match="one hypothesis per reference"):
        word_error_rate(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="empty"):
        word_error_rate("?!", "anything")
