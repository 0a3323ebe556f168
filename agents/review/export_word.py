"""The reviewer's own Word file back, with a comment on each finding and the playbook's wording as a tracked change.

For each finding of a reviewed ``.docx`` (its correction applied; rejected findings left out): a
Word comment anchored on the quoted words in the paragraph the finding names (the runs are split
at the quote's ends, so the comment covers exactly those words), giving rule, severity, flag,
rationale and the quote check. Where the rule's playbook states a ``standard`` wording and the
finding is not green, the quoted words are a tracked deletion followed by a tracked insertion of
that wording (``w:del`` + ``w:ins``, author "tilepilot"), inside the comment's range, so the
reviewer accepts or rejects it in Word. Findings that cannot be anchored (document-level, an
unverified quote, a quote not in its paragraph) go into one summary comment on the document's first
words: none is silently dropped.
"""

from __future__ import annotations

import copy
import io
import re
from datetime import datetime, timezone
from pathlib import Path

from tilepilot.agents.errors import UsageError
from tilepilot.agents.review.findings import DocumentResult, Finding, xml_text
from tilepilot.agents.review.sources import word_paragraphs

AUTHOR, INITIALS = "tilepilot", "TP"


def comment_text(finding: Finding) -> str:
    flag = f", flag {finding.flag}" if finding.flag else ""
    decided = f", {finding.decision} by the reviewer" if finding.decision else ""
    return xml_text(f"[{finding.id}] {finding.rule} ({finding.severity}{flag}{decided}): {finding.rationale} "
                    f"Quote check: {finding.verified}.")


def word_findings(doc: DocumentResult) -> list[Finding]:
    """What goes into the Word file: every finding but the rejected ones, corrections applied."""
    return [f.corrected() for f in doc.findings if f.decision != "rejected"]


def write_commented_docx(doc: DocumentResult, standards: dict[str, str]) -> bytes:
    """``doc``'s source .docx with the findings as comments (and tracked changes); returns the file's bytes."""
    from docx import Document

    if not doc.source or not doc.source.lower().endswith(".docx"):
        raise UsageError(f"{doc.source or doc.path}: Word output needs a reviewed .docx; this document is not one")
    source = Path(doc.source)
    if not source.is_file():
        raise UsageError(f"{source}: the reviewed .docx is gone; it is needed to write the commented copy")
    document = Document(str(source))
    paragraphs = word_paragraphs(document)  # the same list the findings' paragraph indexes point into
    unanchored: list[tuple[Finding, str]] = []
    revision = [900]  # w:id of tracked changes: distinct from the comments' ids
    for finding in word_findings(doc):
        why = _why_unanchorable(finding, len(paragraphs))
        runs = None if why or finding.paragraph is None else _isolate(paragraphs[finding.paragraph], finding.quote)
        if runs is None:
            unanchored.append((finding, why or "quote not found in its paragraph"))
            continue
        document.add_comment(runs, text=comment_text(finding), author=AUTHOR, initials=INITIALS)
        standard = standards.get(finding.rule)
        if standard and finding.flag != "green":
            revision[0] += 2
            _track_replacement(runs, standard, revision[0])
    if unanchored:
        _summary_comment(document, paragraphs, unanchored)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def _why_unanchorable(finding: Finding, paragraph_count: int) -> str | None:
    if finding.page is None:
        return "document-level"
    if finding.verified == "unverified":
        return "quote unverified"
    if finding.paragraph is None or not 0 <= finding.paragraph < paragraph_count:
        return "no paragraph holds the quote"
    return None


def _isolate(paragraph, quote: str) -> list | None:
    """The paragraph's runs split so that some of them hold exactly ``quote`` (whitespace-tolerant); None if absent."""
    text = "".join(run.text for run in paragraph.runs)
    words = quote.split()
    if not words:
        return None
    match = re.search(r"\s+".join(re.escape(w) for w in words), text, flags=re.IGNORECASE)
    if match is None:
        return None
    start, end = match.span()
    _split_at(paragraph, end)
    _split_at(paragraph, start)
    inside, offset = [], 0
    for run in paragraph.runs:
        if start <= offset and offset + len(run.text) <= end and run.text:
            inside.append(run)
        offset += len(run.text)
    return inside or None


def _split_at(paragraph, at: int) -> None:
    """Split the run that straddles character ``at`` into two runs with the same formatting."""
    from docx.text.run import Run

    offset = 0
    for run in paragraph.runs:
        length = len(run.text)
        if offset < at < offset + length:
            text = run.text
            twin = copy.deepcopy(run._r)
            run._r.addnext(twin)
            run.text = text[: at - offset]
            Run(twin, run._parent).text = text[at - offset:]
            return
        offset += length


def _track_replacement(runs: list, new_text: str, revision_id: int) -> None:
    """Wrap ``runs`` in a tracked deletion and put a tracked insertion of ``new_text`` after it."""
    from docx.oxml.ns import qn
    from docx.oxml.parser import OxmlElement

    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    deletion = OxmlElement("w:del", {qn("w:id"): str(revision_id), qn("w:author"): AUTHOR, qn("w:date"): stamp})
    runs[0]._r.addprevious(deletion)
    for run in runs:
        for text in run._r.findall(qn("w:t")):  # deleted text is w:delText in a deletion
            text.tag = qn("w:delText")
        deletion.append(run._r)
    insertion = OxmlElement("w:ins", {qn("w:id"): str(revision_id + 1), qn("w:author"): AUTHOR, qn("w:date"): stamp})
    new_run = copy.deepcopy(runs[0]._r)
    for child in list(new_run):
        if child.tag != qn("w:rPr"):
            new_run.remove(child)
    text = OxmlElement("w:t", {"{http://www.w3.org/XML/1998/namespace}space": "preserve"})
    text.text = xml_text(new_text)
    new_run.append(text)
    insertion.append(new_run)
    deletion.addnext(insertion)


def _summary_comment(document, paragraphs: list, unanchored: list[tuple[Finding, str]]) -> None:
    first = next((p for p in paragraphs if p.runs and p.text.strip()), None)
    if first is None:
        first = paragraphs[0] if paragraphs else document.add_paragraph()
        first.add_run(" ")
    comment = document.add_comment(first.runs, text=f"tilepilot: {len(unanchored)} finding(s) with no place in the text "
                                   "to anchor them:", author=AUTHOR, initials=INITIALS)
    for finding, why in unanchored:
        comment.add_paragraph(f"{comment_text(finding)} Quote: \u201c{xml_text(finding.quote)}\u201d ({why}).")
