"""Find regular expressions that backtrack catastrophically, by looking at the pattern alone.

Whether a rule file loads must not depend on how fast the machine is, so this is a static check
with no timing in it. It flags the two shapes behind exponential backtracking in a backtracking
engine, both inside a repeat that may run more than once:

* an inner repeat or optional part at the end of the repeated body whose characters can also
  start the body, so a run of such characters splits between iterations in exponentially many
  ways: ``(a+)+``, ``(\\w+\\s?)+``, ``(x*)*``, ``(aa?)+``, ``(a|aa)+``;
* alternatives that can start with the same character: ``(a|ab)*``, ``(\\w|\\d)+``.

Possessive repeats and atomic groups never backtrack into themselves and are not flagged.
Characters are compared on a sample alphabet (ASCII plus a few non-ASCII letters, digits and
spaces), which is enough to see that two classes overlap. Polynomial blow-ups such as
``.*.*.*x`` are left to the match-time timeout in :mod:`tilepilot.agents.rules.patterns`.
"""

from __future__ import annotations

import re
import unicodedata
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # typeshed describes the parser's modules under their names before Python 3.11
    import sre_constants as C  # noqa: N812 - the parser's opcode names
    import sre_parse
else:
    from re import _constants as C  # noqa: N812 - the parser's opcode names
    from re import _parser as sre_parse

_ALPHABET = frozenset(chr(c) for c in range(128)) | frozenset("éßЖ中٣\u00a0\u2003")
_NOT_A_REPEAT_LIMIT = 1


def _category(name: object, ch: str) -> bool:
    word = ch.isalnum() or ch == "_"
    digit = unicodedata.category(ch) == "Nd"
    space = ch.isspace()
    table: dict[object, bool] = {
        C.CATEGORY_DIGIT: digit, C.CATEGORY_NOT_DIGIT: not digit,
        C.CATEGORY_WORD: word, C.CATEGORY_NOT_WORD: not word,
        C.CATEGORY_SPACE: space, C.CATEGORY_NOT_SPACE: not space,
    }
    return table.get(name, True)  # unknown categories: assume they match (conservative)


def _class_matches(items: list, ch: str, ignore_case: bool) -> bool:
    negate = False
    hit = False
    candidates = {ch, ch.lower(), ch.upper()} if ignore_case else {ch}
    for op, arg in items:
        if op is C.NEGATE:
            negate = True
        elif op is C.LITERAL:
            hit |= chr(arg) in candidates
        elif op is C.RANGE:
            hit |= any(arg[0] <= ord(c) <= arg[1] for c in candidates)
        elif op is C.CATEGORY:
            hit |= _category(arg, ch)
        else:
            hit = True
    return hit != negate


def _chars(op, arg, flags: int) -> frozenset[str]:
    """The sample characters one single-character item matches."""
    ignore_case = bool(flags & re.IGNORECASE)
    if op is C.LITERAL or op is C.NOT_LITERAL:
        same = {c for c in _ALPHABET if (c.lower() == chr(arg).lower() if ignore_case else c == chr(arg))} | {chr(arg)}
        return frozenset(same) if op is C.LITERAL else _ALPHABET - same
    if op is C.ANY:
        return _ALPHABET if flags & re.DOTALL else _ALPHABET - {"\n"}
    if op is C.IN:
        return frozenset(c for c in _ALPHABET if _class_matches(arg, c, ignore_case))
    return _ALPHABET


_REPEATS = (C.MAX_REPEAT, C.MIN_REPEAT)


def _first(seq, flags: int) -> tuple[frozenset[str], bool]:
    """Characters that can start a match of ``seq``, and whether it can match the empty string."""
    found: frozenset[str] = frozenset()
    for op, arg in seq:
        chars, nullable = _first_item(op, arg, flags)
        found |= chars
        if not nullable:
            return found, False
    return found, True


def _first_item(op, arg, flags: int) -> tuple[frozenset[str], bool]:
    if op in (C.LITERAL, C.NOT_LITERAL, C.ANY, C.IN):
        return _chars(op, arg, flags), False
    if op in (C.AT, C.ASSERT, C.ASSERT_NOT):
        return frozenset(), True
    if op is C.SUBPATTERN:
        return _first(arg[-1], flags | arg[1])
    if op is C.ATOMIC_GROUP:
        return _first(arg, flags)
    if op is C.BRANCH:
        parts = [_first(branch, flags) for branch in arg[1]]
        return frozenset().union(*(p[0] for p in parts)), any(p[1] for p in parts)
    if op in _REPEATS or op is C.POSSESSIVE_REPEAT:
        chars, nullable = _first(arg[2], flags)
        return chars, nullable or arg[0] == 0
    return _ALPHABET, True  # group references and the like: assume the worst


def _tail_variable_parts(seq, flags: int):
    """Parts that can end a match of ``seq`` and match strings of more than one length: repeats
    that may run more than once, and optional parts (``x?``, ``(?:|x)``) -- the places where a
    repeat of the whole can move the boundary between two iterations."""
    for op, arg in reversed(list(seq)):
        if op in _REPEATS and (arg[1] > _NOT_A_REPEAT_LIMIT or arg[0] == 0):
            yield arg[2], flags
        if op in _REPEATS:
            yield from _tail_variable_parts(arg[2], flags)
        elif op is C.SUBPATTERN:
            yield from _tail_variable_parts(arg[-1], flags | arg[1])
        elif op is C.BRANCH:
            if any(not branch for branch in arg[1]):
                yield [(op, arg)], flags
            for branch in arg[1]:
                yield from _tail_variable_parts(branch, flags)
        if not _first_item(op, arg, flags)[1]:
            return


def _alternatives(seq, flags: int) -> list[tuple[list, int]]:
    """The alternatives of a body that is one alternation (possibly inside a group)."""
    items = list(seq)
    while len(items) == 1 and items[0][0] is C.SUBPATTERN:
        flags |= items[0][1][1]
        items = list(items[0][1][-1])
    if len(items) == 1 and items[0][0] is C.BRANCH:
        return [(branch, flags) for branch in items[0][1][1]]
    return []


def _repeat_problem(body, flags: int) -> str | None:
    starts, _ = _first(body, flags)
    for inner, inner_flags in _tail_variable_parts(body, flags):
        if _first(inner, inner_flags)[0] & starts:
            return "a repeat nested in a repeat over the same characters"
    alternatives = _alternatives(body, flags)
    seen: frozenset[str] = frozenset()
    for branch, branch_flags in alternatives:
        chars = _first(branch, branch_flags)[0]
        if chars & seen:
            return "repeated alternatives that can start with the same character"
        seen |= chars
    return None


def _walk(seq, flags: int) -> str | None:
    for op, arg in seq:
        problem = None
        if op in _REPEATS:
            if arg[1] > _NOT_A_REPEAT_LIMIT:
                problem = _repeat_problem(arg[2], flags)
            problem = problem or _walk(arg[2], flags)
        elif op is C.POSSESSIVE_REPEAT:
            problem = _walk(arg[2], flags)
        elif op is C.SUBPATTERN:
            problem = _walk(arg[-1], flags | arg[1])
        elif op in (C.ATOMIC_GROUP,):
            problem = _walk(arg, flags)
        elif op in (C.ASSERT, C.ASSERT_NOT):
            problem = _walk(arg[1], flags)
        elif op is C.BRANCH:
            problem = next((p for b in arg[1] if (p := _walk(b, flags))), None)
        if problem:
            return problem
    return None


# A quantified group whose inside holds a quantifier: the textual shape of a nested repeat, used
# only for syntax that Python's parser does not know (``\p{L}`` and other ``regex`` extensions).
_NESTED_TEXT = re.compile(r"\((?:[^()\\]|\\.)*(?:[+*]|\{\d*,\d*\})(?:[^()\\]|\\.)*\)(?:[+*]|\{\d*,\d*\})(?![+])")


def catastrophic_reason(body: str, flags: int = 0) -> str | None:
    """Why ``body`` can backtrack catastrophically, or None if no such shape is found."""
    py_flags = flags & (re.IGNORECASE | re.MULTILINE | re.DOTALL | re.VERBOSE)
    try:
        parsed = sre_parse.parse(body, py_flags)
    except (re.error, OverflowError, RecursionError):
        return "a quantified group that holds a quantifier" if _NESTED_TEXT.search(body) else None
    return _walk(parsed, py_flags | parsed.state.flags)
