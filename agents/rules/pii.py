"""Built-in PII detectors for ``type: pii`` checks, tuned for precision over recall.

A false positive in a review report costs the reader's trust, so each detector validates what
its pattern finds: IBANs by the ISO 13616 mod-97 checksum, card numbers by the Luhn checksum, a
known issuer prefix and a valid length, SSNs by the ranges the SSA never issues, and phone
numbers by shape and digit count (a date, a price, a year or a section number never qualifies).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import regex

_EMAIL = regex.compile(r"(?<![\w.%+-])[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,24}(?![\w-])")
_IBAN = regex.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?![A-Za-z0-9])")
_CARD = regex.compile(r"(?<![\d.,-])\d(?:[ -]?\d){12,18}(?![\d-]|[.,]\d)")
_SSN = regex.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])")
_PHONE = regex.compile(
    r"""(?<![\w.,/+-])
    (?: \+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]\d{2,5}){1,4}   # +49 30 1234 5678, +1 (555) 123-4567
      | \([2-9]\d{2}\)[ ]?[2-9]\d{2}[ .-]\d{4}                             # (555) 123-4567
      | [2-9]\d{2}([.-])[2-9]\d{2}\1\d{4}                                 # 415-555-2671 (NANP: no 0/1 lead)
    )(?![\w/-]|[.,]\d)""",
    regex.VERBOSE,
)
# A number right after a phone keyword is a phone number even in national formats ("Tel. 030 1234567").
_LABELLED_PHONE = regex.compile(r"(?i:\b(?:tel|phone|telephone|mobile|cell|fax)\b\.?:?\s*)(\+?\(?\d[\d ()./-]{5,18}\d)(?![\w/-]|[.,]\d)")
# Issuer prefixes and lengths: Visa, Mastercard, Amex, Discover, Diners, JCB.
_CARD_NETWORKS = (
    (regex.compile(r"4"), (13, 16, 19)),
    (regex.compile(r"5[1-5]|2(?:22[1-9]|2[3-9]\d|[3-6]\d\d|7[01]\d|720)"), (16,)),
    (regex.compile(r"3[47]"), (15,)),
    (regex.compile(r"6(?:011|5|4[4-9])"), (16, 17, 18, 19)),
    (regex.compile(r"3(?:0[0-5]|[68])"), (14, 15, 16, 17, 18, 19)),
    (regex.compile(r"35(?:2[89]|[3-8]\d)"), (16, 17, 18, 19)),
)


@dataclass(frozen=True)
class PiiMatch:
    detector: str
    start: int
    end: int


def luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def iban_valid(compact: str) -> bool:
    """ISO 13616: move the first four characters to the end, letters to numbers, mod 97 == 1."""
    if not 15 <= len(compact) <= 34 or not compact[:2].isalpha() or not compact[2:4].isdigit():
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def _find_iban(text: str) -> Iterable[tuple[int, int]]:
    for match in _IBAN.finditer(text):
        # The pattern may swallow a trailing word ("... 00 FOR"): try shorter prefixes at spaces.
        cuts = [match.end()] + [match.start() + i for i in range(len(match.group()) - 1, 0, -1) if match.group()[i] == " "]
        for end in cuts:
            if iban_valid(text[match.start() : end].replace(" ", "")):
                yield match.start(), end
                break


def _find_cards(text: str) -> Iterable[tuple[int, int]]:
    for match in _CARD.finditer(text):
        groups = regex.split(r"[ -]", match.group())
        if len(groups) > 1 and (len(groups[0]) != 4 or any(len(g) < 3 for g in groups[:-1])):
            continue  # separated card numbers are written in groups of 4 (Amex 4-6-5)
        digits = _digits(match.group())
        if luhn_valid(digits) and any(p.match(digits) and len(digits) in lengths for p, lengths in _CARD_NETWORKS):
            yield match.span()


def _find_phones(text: str) -> Iterable[tuple[int, int]]:
    for match in _PHONE.finditer(text):
        if 10 <= len(_digits(match.group())) <= 15:
            yield match.span()
    for match in _LABELLED_PHONE.finditer(text):
        if 7 <= len(_digits(match.group(1))) <= 15:
            yield match.span(1)


def _pattern_finder(pattern: regex.Pattern[str]) -> Callable[[str], Iterable[tuple[int, int]]]:
    return lambda text: (m.span() for m in pattern.finditer(text))


# Priority order: an IBAN's digits are never reported again as a card or phone number.
DETECTORS: dict[str, Callable[[str], Iterable[tuple[int, int]]]] = {
    "iban": _find_iban,
    "email": _pattern_finder(_EMAIL),
    "credit_card": _find_cards,
    "ssn": _pattern_finder(_SSN),
    "phone": _find_phones,
}


def find_pii(text: str, detectors: Iterable[str] | None = None) -> list[PiiMatch]:
    """Every PII match in ``text`` for the selected detectors (all by default), sorted, never overlapping."""
    wanted = set(DETECTORS) if detectors is None else set(detectors)
    found: list[PiiMatch] = []
    # All detectors run even when a subset is wanted, so an IBAN's digits are not reported as a
    # card number just because the iban detector was not selected.
    for name, finder in DETECTORS.items():
        for start, end in finder(text):
            if not any(start < other.end and other.start < end for other in found):
                found.append(PiiMatch(name, start, end))
    return sorted((m for m in found if m.detector in wanted), key=lambda m: m.start)
