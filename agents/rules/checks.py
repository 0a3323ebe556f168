"""Deterministic document checks from rule files: forbidden text, required text and PII, no model.

The input is :class:`CheckPage`, a page's words with boxes, independent of PyMuPDF: the review
agent converts the PDF text layer into it. Patterns run over the page text (words joined by single
spaces, so a phrase matches across line breaks), and each match maps back to the union box of the
words it touches. Pages are consumed one at a time, so a caller can stream a long document.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Iterable, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field

from tilepilot.agents.errors import RuleProblemsError
from tilepilot.agents.rules.merge import Provenance, Sourced
from tilepilot.agents.rules.patterns import PatternTimeout, search_all
from tilepilot.agents.rules.pii import find_pii
from tilepilot.agents.rules.schema import Check, Severity, parse_page_scope

BBox = tuple[float, float, float, float]


class CheckWord(BaseModel):
    model_config = ConfigDict(frozen=True)
    text: str
    bbox: BBox


class CheckPage(BaseModel):
    model_config = ConfigDict(frozen=True)
    page: int = Field(ge=1)  # 1-based
    words: list[CheckWord]


class CheckFinding(BaseModel):
    model_config = ConfigDict(frozen=True)
    id: str
    rule: str  # the check id
    severity: Severity
    page: int
    quote: str
    bbox: BBox | None  # None for document-level findings (a required clause is missing)
    rationale: str
    source: Literal["check"] = "check"
    detector: str | None = None  # which PII detector fired, for type pii
    rule_file: str | None = None
    detail: str | None = None  # how the check decided, for a missing clause: the pattern it looked for and where


def finding_id(rule: str, page: int, quote: str, bbox: BBox | None) -> str:
    """Stable across runs: the same check hitting the same words gives the same id."""
    box = "-" if bbox is None else ",".join(f"{v:.1f}" for v in bbox)
    return hashlib.sha256(f"{rule}\x1f{page}\x1f{quote}\x1f{box}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class PageText:
    """A page's words joined by single spaces, with each word's start offset."""

    page: CheckPage
    text: str
    starts: list[int] = field(default_factory=list)

    @classmethod
    def of(cls, page: CheckPage) -> "PageText":
        starts, offset = [], 0
        for word in page.words:
            starts.append(offset)
            offset += len(word.text) + 1
        return cls(page, " ".join(w.text for w in page.words), starts)

    def bbox(self, start: int, end: int) -> BBox | None:
        boxes = [
            w.bbox
            for w, s in zip(self.page.words, self.starts)
            if s < end and start < s + len(w.text)
        ]
        if not boxes:
            return None
        return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def in_scope(check: Check, page: int) -> bool:
    return any(start <= page and (end is None or page <= end) for start, end in parse_page_scope(check.pages))


def run_checks(pages: Iterable[CheckPage], checks: Sequence[Sourced[Check] | Check]) -> list[CheckFinding]:
    """Run every check over ``pages`` (any order, any subset); findings sorted by page then position."""
    sourced = [c if isinstance(c, Sourced) else Sourced(value=c, source=Provenance(file="<inline>", key=f"checks[{i}]")) for i, c in enumerate(checks)]
    findings: list[tuple[int, int, CheckFinding]] = []
    required_met: set[str] = set()
    for page in pages:
        text = PageText.of(page)
        for item in sourced:
            check = item.value
            if not in_scope(check, page.page) or check.id in required_met:
                continue
            for start, end, detector in _matches(item, text):
                if check.type == "required":
                    required_met.add(check.id)
                    break
                findings.append((page.page, start, _finding(item, page.page, text.text[start:end], text.bbox(start, end), detector)))
    for item in sourced:
        check = item.value
        if check.type == "required" and check.id not in required_met:
            first = parse_page_scope(check.pages)[0][0]
            # Worded for people; the check that decided it stays in ``detail``.
            missing = _finding(item, first, f"No {check.clause_name()} found", None, None)
            detail = f"no text matching {check.pattern} in pages {check.pages}"
            findings.append((first, -1, missing.model_copy(update={"detail": detail})))
    return [f for _, _, f in sorted(findings, key=lambda t: (t[0], t[1]))]


def _matches(item: Sourced[Check], text: PageText) -> list[tuple[int, int, str | None]]:
    check = item.value
    if check.type == "pii":
        return [(m.start, m.end, m.detector) for m in find_pii(text.text, check.detectors)]
    try:
        return [(s, e, None) for s, e in search_all(check.pattern or "", text.text)]
    except PatternTimeout:
        src = item.source
        line = src.line or 0
        raise RuleProblemsError(
            [(src.file, line, f"check {check.id!r}: pattern {check.pattern!r} timed out on page {text.page.page}: simplify it")]
        ) from None


def _finding(item: Sourced[Check], page: int, quote: str, bbox: BBox | None, detector: str | None) -> CheckFinding:
    check = item.value
    return CheckFinding(
        id=finding_id(check.id, page, quote, bbox),
        rule=check.id,
        severity=check.severity,
        page=page,
        quote=quote,
        bbox=bbox,
        rationale=check.description,
        detector=detector,
        rule_file=item.source.file,
    )
