"""The document map: headings and defined terms with their pages, built from the text layer, deterministically.

Chunks are reviewed apart; the map is what each one knows of the rest. A term defined on page 2
("Confidential Information" means ... personal data) changes what a clause on page 30 means, and
a reader of page 30 only learns it from the map. It is built in the plan pass (no model, no
pixels), one page at a time, and is small and bounded: at most :data:`MAX_TERMS` terms (first
definition wins) and :data:`MAX_HEADINGS` headings, and rendered within a character limit that
the caller derives from the request budget; the rendered map is then counted exactly with every
chunk's prompt.

Headings: a line of at most 10 words that starts with a section number ("7.", "2.1", "Article 4",
"Annex B", "Schedule 2") followed by a capitalised word, or is set at least 15 % larger than the
page's body text, or is all capitals. Defined terms: a quoted capitalised phrase followed by
"means", "includes", "shall mean", "refers to" or "has the meaning", or a parenthesised
definition such as (the "Supplier") or (the Supplier).
"""

from __future__ import annotations

import re
import statistics
from collections import defaultdict

from pydantic import BaseModel

from tilepilot.tools.pdf import PageText

MAX_TERMS = 80
MAX_HEADINGS = 120
MAX_HEADING_CHARS = 70
_Q = "\"'\u201c\u201d\u2018\u2019"
_NUMBERED = re.compile(r"^(?:\d+(?:\.\d+)*\.?|[A-Z]\.|(?:Article|Section|Clause|Annex|Schedule|Appendix|Exhibit|Part)\s+[\dA-Z]+[.:]?)\s+[A-Z]")
_DEFINED = re.compile(rf"[{_Q}]([A-Z][\w&\-]*(?: [\w&\-]+){{0,5}})[{_Q}]\s+(?:means|includes|shall mean|refers to|has the meaning)\b")
_TERM = r"([A-Z][\w&\-]*(?: [A-Z][\w&\-]*){0,4})"
_PARENTHESISED = re.compile(rf"\((?:the|each a|each an|a|an|together the|hereinafter)\s+[{_Q}]?{_TERM}[{_Q}]?\)")
_QUOTED_PARENTHESISED = re.compile(rf"\([{_Q}]{_TERM}[{_Q}]\)")


class MapEntry(BaseModel):
    text: str
    page: int


class DocumentMap(BaseModel):
    headings: list[MapEntry] = []
    terms: list[MapEntry] = []

    def render(self, max_chars: int) -> str:
        """Terms first (they change what clauses mean), then headings, cut to ``max_chars``; "" when empty."""
        lines: list[str] = []
        if self.terms:
            lines.append("Defined terms: " + "; ".join(f'"{t.text}" [{t.page}]' for t in self.terms))
        if self.headings:
            lines.append("Headings: " + "; ".join(f"{h.text} [{h.page}]" for h in self.headings))
        text = "\n".join(lines)
        if len(text) <= max_chars:
            return text
        cut = text[: max(0, max_chars - 16)].rsplit("; ", 1)[0]
        return cut + "; (map cut short)" if cut else ""


class MapBuilder:
    """Feed pages in order with :meth:`add`; :attr:`map` holds the result."""

    def __init__(self) -> None:
        self.map = DocumentMap()
        self._terms: set[str] = set()

    def add(self, text: PageText) -> None:
        lines = _lines(text)
        if not lines:
            return
        body = statistics.median(height for _, height in lines)
        for line, height in lines:
            if len(self.map.headings) < MAX_HEADINGS and _is_heading(line, height, body):
                self.map.headings.append(MapEntry(text=line[:MAX_HEADING_CHARS], page=text.page))
        joined = " ".join(line for line, _ in lines)
        for pattern in (_DEFINED, _PARENTHESISED, _QUOTED_PARENTHESISED):
            for match in pattern.finditer(joined):
                term = match.group(1).strip()
                if len(self.map.terms) < MAX_TERMS and term.lower() not in self._terms and len(term) > 2:
                    self._terms.add(term.lower())
                    self.map.terms.append(MapEntry(text=term, page=text.page))


def _lines(text: PageText) -> list[tuple[str, float]]:
    """The page's lines in reading order (block, line), each with its median word height."""
    grouped: dict[tuple[int, int], list] = defaultdict(list)
    for word in text.words:
        grouped[(word.block, word.line)].append(word)
    out = []
    for key in sorted(grouped):
        words = sorted(grouped[key], key=lambda w: w.bbox[0])
        out.append((" ".join(w.text for w in words), statistics.median(w.bbox[3] - w.bbox[1] for w in words)))
    return out


def _is_heading(line: str, height: float, body: float) -> bool:
    words = line.split()
    if not 1 <= len(words) <= 10 or line.endswith((",", ";")) or not any(ch.isalpha() for ch in line):
        return False
    if _NUMBERED.match(line) and not line.rstrip().endswith("."):
        return True
    letters = [ch for ch in line if ch.isalpha()]
    return height >= 1.15 * body or (len(letters) >= 4 and all(ch.isupper() for ch in letters))
