"""One document of a cluster review: the worker side, and the per-document files both sides read.

A cluster run folder holds one ordinary review run per document under ``docs/<key>/`` (its own
``run.json``, ``checkpoint.sqlite`` with the chunk ledger, ``events.jsonl`` and ``findings.json``),
written by whichever worker reviews it. That is what makes faults cheap:

- a document is finished when its ``findings.json`` exists (written last, atomically);
- a retried task (the worker was killed) resumes the document's own run, so the chunks it had
  finished are read from its ledger and never sent again;
- a document that cannot be reviewed (a corrupt PDF) leaves ``docs/<key>.failed.json`` with a
  one-line reason and no folder; a resumed run tries it again.

Nothing here imports Ray: the same function runs in a Ray task and in a plain test.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
from pathlib import Path
from typing import Literal, TypedDict

from pydantic import BaseModel
from rich.console import Console

from tilepilot.agents.errors import USER_ERRORS
from tilepilot.agents.runs import MANIFEST_NAME, DeadlineReached, EventLog, write_atomic

DOCS_DIR = "docs"
FAILED_SUFFIX = ".failed.json"
ATTEMPTS_NAME = "attempts.jsonl"  # one line per worker attempt (pid, host): a retry after a kill shows here


class DocumentTask(BaseModel):
    """What a worker needs to review one document (small: it travels in every task)."""

    key: str
    path: str
    run_dir: str
    options: dict  # tilepilot.agents.review.runner.ReviewOptions of the whole run, as JSON (paths replaced per document)
    base_urls: list[str] = []
    password: str | None = None
    max_runtime_s: float | None = None  # what is left of the run's time limit when the task starts


class DocumentOutcome(BaseModel):
    """What a task returns to the driver: a status line, never the findings (those stay on disk)."""

    key: str
    path: str
    status: Literal["done", "failed", "deadline"]
    reason: str = ""
    findings: int = 0
    pages: int = 0
    pid: int = 0


class _OutcomeFields(TypedDict):
    """The fields of a DocumentOutcome known before the review runs."""

    key: str
    path: str
    pid: int


class FailedDocument(BaseModel):
    path: str
    reason: str


def document_key(path: str) -> str:
    """A folder name for a document that stays the same when files are added to its folder."""
    return hashlib.sha256(path.encode("utf-8")).hexdigest()[:16]


def document_dir(run_dir: Path, key: str) -> Path:
    return Path(run_dir) / DOCS_DIR / key


def failed_marker(run_dir: Path, key: str) -> Path:
    return Path(run_dir) / DOCS_DIR / f"{key}{FAILED_SUFFIX}"


def is_finished(run_dir: Path, key: str) -> bool:
    return (document_dir(run_dir, key) / "findings.json").is_file()


def one_line(err: BaseException) -> str:
    return " ".join(str(err).split())[:300] or type(err).__name__


def review_document(task: DocumentTask) -> DocumentOutcome:
    """Review one document into its own run folder, resuming what an earlier attempt left."""
    from tilepilot.agents.review.runner import ReviewOptions, run_review

    run_dir = Path(task.run_dir)
    folder = document_dir(run_dir, task.key)
    outcome = _OutcomeFields(key=task.key, path=task.path, pid=os.getpid())
    if is_finished(run_dir, task.key):  # a retried task whose first attempt finished just before the kill
        return _done(folder, outcome)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with EventLog(folder.parent / f"{task.key}.{ATTEMPTS_NAME}") as attempts:
        attempts.emit("attempt", pid=os.getpid(), host=socket.gethostname())
    # run.json is the first file a run writes and nothing is sent before it: without it, an earlier
    # attempt died while creating the folder, and starting afresh repeats nothing.
    resume = folder if (folder / MANIFEST_NAME).is_file() else None
    if resume is None and folder.exists():
        shutil.rmtree(folder)
    options = ReviewOptions.model_validate({**task.options, "paths": [task.path]})

    def client_factory():
        from tilepilot.agents.backend import connect

        return connect(options.model, task.base_urls or None, quiet=True)

    try:
        run_review(options, out=None if resume else folder, resume=resume, password=task.password,
                   client_factory=client_factory, console=Console(stderr=True, quiet=True),
                   max_runtime_s=task.max_runtime_s, progress=None)
    except DeadlineReached as err:
        return DocumentOutcome(**outcome, status="deadline", reason=one_line(err))
    except USER_ERRORS as err:  # a corrupt or encrypted PDF, a page range it lacks, a model server gone
        reason = one_line(err)
        write_atomic(failed_marker(run_dir, task.key), FailedDocument(path=task.path, reason=reason).model_dump_json())
        return DocumentOutcome(**outcome, status="failed", reason=reason)
    failed_marker(run_dir, task.key).unlink(missing_ok=True)  # failed before, reviewed now
    return _done(folder, outcome)


def _done(folder: Path, outcome: _OutcomeFields) -> DocumentOutcome:
    from tilepilot.agents.review.findings import FindingsFile

    report = FindingsFile.model_validate_json((folder / "findings.json").read_text(encoding="utf-8"))
    doc = report.documents[0]
    return DocumentOutcome(**outcome, status="done", findings=len(doc.findings), pages=doc.pages)
