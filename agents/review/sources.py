"""Findings on a converted input, tied back to the file the user gave: for Word, the paragraph each quote is in.

The review reads the converted PDF, so page, quote and box are the PDF's. A ``.docx`` reviewer also
wants the clause in their own file: :func:`paragraph_of` finds the paragraph of python-docx's
``Document.paragraphs`` (body paragraphs, then those in table cells, in document order) whose text
holds the quote, compared after :func:`tilepilot.agents.review.quotes.normalise` (the PDF's line
breaks, hyphenation and ligatures do not count), with a fuzzy fallback for model quotes.
"""

from __future__ import annotations

from pathlib import Path

from rapidfuzz import fuzz

from tilepilot.agents.review.findings import DocumentResult
from tilepilot.agents.review.quotes import FUZZY_THRESHOLD, normalise

WORD_SUFFIXES = (".docx",)  # python-docx reads only the OOXML format


def word_paragraphs(document) -> list:
    """Every paragraph of a python-docx ``Document``: the body's in order, then those inside table cells."""
    paragraphs = list(document.paragraphs)
    for table in document.tables:
        for row in table.rows:
            for cell in row.cells:
                for paragraph in cell.paragraphs:  # a merged cell shows up in several rows: once is enough
                    if all(paragraph._p is not seen._p for seen in paragraphs):
                        paragraphs.append(paragraph)
    return paragraphs


def paragraph_of(texts: list[str], quote: str) -> int | None:
    """Index of the paragraph (normalised texts) that holds ``quote``; a quote across paragraphs gives its first."""
    wanted = normalise(quote)
    if not wanted:
        return None
    for index, text in enumerate(texts):
        if wanted in text:
            return index
    joined, starts = "", []
    for text in texts:  # the quote may run from one paragraph into the next
        starts.append(len(joined))
        joined += text + " "
    at = joined.find(wanted)
    if at >= 0:
        return max(i for i, start in enumerate(starts) if start <= at)
    best = max(range(len(texts)), key=lambda i: fuzz.partial_ratio(wanted, texts[i]), default=None)
    if best is not None and len(wanted) >= 12 and fuzz.partial_ratio(wanted, texts[best]) >= FUZZY_THRESHOLD:
        return best
    return None


def with_source(result: DocumentResult, source: Path) -> DocumentResult:
    """The document's result naming the file given; for a .docx, each page finding's paragraph."""
    result = result.model_copy(update={"source": str(source)})
    if source.suffix.lower() not in WORD_SUFFIXES:
        return result
    from docx import Document

    texts = [normalise(p.text) for p in word_paragraphs(Document(str(source)))]
    findings = [f if f.page is None else f.model_copy(update={"paragraph": paragraph_of(texts, f.quote)})
                for f in result.findings]
    return result.model_copy(update={"findings": findings})
