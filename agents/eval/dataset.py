"""A labelled review dataset: ``--dataset DIR`` (users' own documents) and the generated suite alike.

DIR holds the PDFs, a ``rules.md`` and ``labels.jsonl``, one expected finding per line::

    {"document": "a.pdf", "rule": "<check or rule id>", "page": 7, "quote": "..."}

``"page": null`` (and ``"quote": null``) is a document-level finding, such as a missing clause: it
matches a finding of that rule on any page. Two optional keys: ``bbox`` ([x0, y0, x1, y1] in PDF
points, origin top-left, the page as displayed) for the box metric, and ``kind`` (a page kind
for the breakdown). An optional ``kinds.json`` (``{"a.pdf": ["title", "scan", ...]}``) names
the kind of every page, so false positives on unlabelled pages are broken down too.

Every problem is reported at once, one line each: ``labels.jsonl:LINE: message`` for a bad line,
``DIR/x.pdf: ...`` for a PDF that cannot be opened, and a label naming a document DIR lacks.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tilepilot.agents.errors import TilepilotError
from tilepilot.tools.convert import OFFICE_SUFFIXES, to_pdf
from tilepilot.tools.errors import ToolError
from tilepilot.tools.pdf import open_pdf

LABELS, RULES, KINDS = "labels.jsonl", "rules.md", "kinds.json"


class DatasetError(TilepilotError):
    """A dataset folder is unusable; ``str()`` is one line per problem."""


class Label(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    document: str = Field(min_length=1)
    rule: str = Field(min_length=1)
    page: int | None = Field(ge=1)
    quote: str | None = None
    bbox: tuple[float, float, float, float] | None = None
    kind: str | None = None


class Dataset(BaseModel):
    root: Path
    rules: Path
    documents: dict[str, int]  # file name -> page count
    labels: list[Label]
    kinds: dict[str, list[str]] = {}

    def kind(self, document: str, page: int | None) -> str:
        if page is None:
            return "document"
        pages = self.kinds.get(document, [])
        return pages[page - 1] if 0 < page <= len(pages) else "page"


DOCUMENT_SUFFIXES = (".pdf", *OFFICE_SUFFIXES)  # what a dataset reviews: PDFs and Word/ODF/RTF documents

def _problem(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"{where}: {first['msg']}" if where else first["msg"]


def load_dataset(root: Path) -> Dataset:
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"--dataset {root}: no such folder; it must hold the PDFs, {RULES} and {LABELS}")
    problems: list[str] = []
    for needed in (RULES, LABELS):
        if not (root / needed).is_file():
            problems.append(f"{root / needed}: missing; a dataset holds the PDFs, {RULES} and {LABELS}")
    documents: dict[str, int] = {}
    for pdf in sorted(p for p in root.iterdir() if p.suffix.lower() in DOCUMENT_SUFFIXES):
        try:
            with open_pdf(to_pdf(pdf), name=str(pdf)) as doc:  # a Word document: its converted (cached) PDF
                documents[pdf.name] = doc.page_count
        except ToolError as err:
            problems.append(str(err))
    if not documents:
        problems.append(f"{root}: holds no documents (*.pdf, *.docx, *.doc, *.odt, *.rtf)")
    labels: list[Label] = []
    if (root / LABELS).is_file():
        labels = _read_labels(root / LABELS, documents, problems)
    kinds: dict[str, list[str]] = {}
    if (root / KINDS).is_file():
        try:
            kinds = {str(k): [str(x) for x in v] for k, v in json.loads((root / KINDS).read_text()).items()}
        except (ValueError, AttributeError, TypeError) as err:
            problems.append(f"{root / KINDS}: not a JSON object of page-kind lists ({err})")
    if problems:
        raise DatasetError("\n".join(problems))
    return Dataset(root=root, rules=root / RULES, documents=documents, labels=labels, kinds=kinds)


def _read_labels(path: Path, documents: dict[str, int], problems: list[str]) -> list[Label]:
    labels = []
    unknown: set[str] = set()
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            label = Label.model_validate(json.loads(line))
        except json.JSONDecodeError as err:
            problems.append(f"{path}:{number}: not JSON ({err.msg} at column {err.colno})")
            continue
        except ValidationError as err:
            problems.append(f"{path}:{number}: {_problem(err)}")
            continue
        if label.document not in documents:
            if label.document not in unknown:  # one line per unknown document, not per label
                problems.append(f"{path}:{number}: unknown document {label.document!r}: no such PDF in {path.parent}")
            unknown.add(label.document)
            continue
        if label.page is not None and label.page > documents[label.document]:
            problems.append(f"{path}:{number}: page {label.page} is beyond {label.document}'s {documents[label.document]} pages")
            continue
        labels.append(label)
    return labels
