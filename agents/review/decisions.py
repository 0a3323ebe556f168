"""A reviewer's verdicts on a finished review run: read ``findings.json`` strictly, mark findings in it.

The edit format (``decision`` and ``correction`` on a finding) is described in
:mod:`tilepilot.agents.review.findings`. ``tilepilot review --accept RUN --id ID ...`` and ``--reject`` write
it here; ``tilepilot export`` reads it through :func:`load_findings`.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Literal

from tilepilot.agents.errors import RunError
from tilepilot.agents.review.findings import DocumentResult, FindingsFile
from tilepilot.agents.runs import read_model_file, write_atomic

FINDINGS_NAME = "findings.json"


def load_findings(run: Path) -> FindingsFile:
    """The run's ``findings.json``; a missing, non-JSON or invalid file is a one-line :class:`RunError`."""
    return read_model_file(Path(run) / FINDINGS_NAME, FindingsFile)


@contextmanager
def findings_lock(run: Path) -> Iterator[None]:
    """Hold the run's findings lock: every read-modify-write of findings.json (the CLI's --accept, each
    triage page request, a resumed run's final write) runs under it, so no writer loses another's decision."""
    # The lock is on the run folder itself: findings.json is replaced by rename (so it cannot carry the
    # lock), and a lock file would be one more file in a folder that holds the run's outputs only.
    fd = os.open(Path(run), os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the last descriptor releases the lock


def carry_decisions(run: Path, documents: list[DocumentResult]) -> list[DocumentResult]:
    """``documents`` with the reviewer's decisions from the run's existing findings.json (a resumed run), by finding id."""
    try:
        previous = load_findings(run)
    except RunError:
        return documents  # no earlier findings (a first run), or a file that is not valid: nothing to keep
    verdicts = {f.id: f for doc in previous.documents for f in doc.findings if f.decision is not None}
    return [doc.model_copy(update={"findings": [
        f.model_copy(update={"decision": verdicts[f.id].decision, "correction": verdicts[f.id].correction})
        if f.id in verdicts else f for f in doc.findings]}) for doc in documents]


def mark_findings(run: Path, ids: list[str], decision: Literal["accepted", "rejected"]) -> int:
    """Set ``decision`` on the findings with these ids (any correction is dropped); returns how many.

    Every id must name a finding of the run, or nothing is written.
    """
    with findings_lock(run):
        return _mark(run, ids, decision)


def _mark(run: Path, ids: list[str], decision: Literal["accepted", "rejected"]) -> int:
    report = load_findings(run)
    known = {f.id for doc in report.documents for f in doc.findings}
    unknown = [i for i in dict.fromkeys(ids) if i not in known]
    if unknown:
        raise RunError(f"{Path(run) / FINDINGS_NAME}: no finding with id {', '.join(unknown)}; "
                       "each finding's \"id\" is in findings.json")
    wanted, marked = set(ids), 0
    documents = []
    for doc in report.documents:
        findings = []
        for finding in doc.findings:
            if finding.id in wanted:
                finding = finding.model_copy(update={"decision": decision, "correction": None})
                marked += 1
            findings.append(finding)
        documents.append(doc.model_copy(update={"findings": findings}))
    report = report.model_copy(update={"documents": documents})
    write_atomic(Path(run) / FINDINGS_NAME, report.model_dump_json(indent=2, by_alias=True))
    return marked
