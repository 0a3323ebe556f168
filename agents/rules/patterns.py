"""Regular expressions written in rule files, compiled and run so that a rule can never hang a run.

A pattern is a string in the syntax of the ``regex`` package (a superset of ``re``). It may be
written ``/body/flags`` (flags from ``imsx``, e.g. ``/password/i``); anything else is the body
itself. Matching is *search* semantics: the pattern may match anywhere in the text.

Rule files come from users and from AGENTS.md files that travel with documents, so a pattern is
untrusted input: it is length-limited, rejected at load time when its shape backtracks
catastrophically (a static check in :mod:`tilepilot.agents.rules.redos`, the same on every machine), and
every match runs with a timeout (the ``regex`` package's ``timeout=``).
"""

from __future__ import annotations

from functools import lru_cache

import regex

from tilepilot.agents.rules.redos import catastrophic_reason

MAX_PATTERN_LENGTH = 300
MATCH_TIMEOUT_S = 0.5
_FLAG_LETTERS = {"i": regex.IGNORECASE, "m": regex.MULTILINE, "s": regex.DOTALL, "x": regex.VERBOSE}


class PatternError(ValueError):
    """A pattern is invalid, too long or too slow. The message is one line."""


class PatternTimeout(Exception):
    """A match ran past :data:`MATCH_TIMEOUT_S` (raised at match time, not load time)."""


def split_slashes(source: str) -> tuple[str, int]:
    """``/body/flags`` -> (body, flags); any other string is a bare body with no flags."""
    if len(source) >= 2 and source.startswith("/"):
        end = source.rfind("/")
        letters = source[end + 1 :]
        if end > 0 and all(ch in _FLAG_LETTERS for ch in letters):
            flags = 0
            for ch in letters:
                flags |= _FLAG_LETTERS[ch]
            return source[1:end], flags
    return source, 0


@lru_cache(maxsize=2048)
def compile_pattern(source: str) -> regex.Pattern[str]:
    """Compile and vet one rule pattern; raises :class:`PatternError` with a one-line reason."""
    if not isinstance(source, str) or not source:
        raise PatternError("pattern must be a non-empty string")
    if len(source) > MAX_PATTERN_LENGTH:
        raise PatternError(f"pattern is {len(source)} characters long; the limit is {MAX_PATTERN_LENGTH}: shorten it")
    body, flags = split_slashes(source)
    try:
        compiled = regex.compile(body, flags)
    except regex.error as err:
        raise PatternError(f"invalid regular expression {source!r}: {err}") from None
    reason = catastrophic_reason(body, flags)
    if reason:
        raise PatternError(f"regular expression {source!r} backtracks catastrophically ({reason}): simplify it")
    return compiled


def search_all(source: str, text: str, timeout: float = MATCH_TIMEOUT_S) -> list[tuple[int, int]]:
    """(start, end) of every non-overlapping match of ``source`` in ``text``."""
    try:
        return [m.span() for m in compile_pattern(source).finditer(text, timeout=timeout) if m.end() > m.start()]
    except TimeoutError:
        raise PatternTimeout(source) from None


def matches(source: str, text: str, timeout: float = MATCH_TIMEOUT_S) -> bool:
    try:
        return compile_pattern(source).search(text, timeout=timeout) is not None
    except TimeoutError:
        raise PatternTimeout(source) from None
