"""The review agent's output schema (``findings.json``) and the schema the model must answer in.

``findings.json`` is one :class:`FindingsFile`::

    {"schema": "tilepilot.review/2", "run": DIR, "created": ISO time,
     "model": {"name", "served_name", "random_weights", "note"} | null,   # null with --no-model
     "mode": "map-reduce" | "rolling" | "no-model", "prefer": "fidelity" | "tokens", "budget_tokens": N | null,
     "documents": [{"path", "page_count", "pages": N reviewed, "failed_pages": [page, ...],
                    "failures": [{"page", "reason"}], "plan": {"text": n, "image": n, "both": n},
                    "sent": [{"page", "modality", "image_budget", "reason"}],   # per page: what went, and why
                    "document_map": {"headings": [{"text", "page"}], "terms": [{"text", "page"}]},
                    "unverified_model_findings": n, "dropped_model_findings": n, "summary": str | null,
                    "findings": [Finding, ...]}],
     "usage": {"requests", "prompt_tokens", "completion_tokens", "max_prompt_tokens", "budget_tokens"}}

A :class:`Finding` is ``{id, rule, severity, page, pages, quote, bbox, rationale, fields, source, verified}``:

- ``id``: 16 hex chars, stable: a hash of rule, page and quote (plus the box for checks), so the
  same finding gets the same id in every run.
- ``rule``: the check id for ``source="check"``; for ``source="model"`` a rule id the model cited
  when it names a known check, else ``"model"``.
- ``page``: 1-based; null for a document-level finding (a missing clause, or a problem that
  spans pages: then ``pages`` lists them). ``bbox``: ``[x0, y0, x1, y1]`` in PDF points, origin
  top-left, when known.
- ``fields``: the rules' ``output.fields`` beyond the built-in ones (``suggestion``, ...).
- ``verified``: ``exact`` (checks; a model quote found as is on its page's text layer),
  ``approximate`` (found after normalising Unicode, hyphenation, whitespace and ellipses, or by a
  fuzzy match above :data:`tilepilot.agents.review.quotes.FUZZY_THRESHOLD`), or ``unverified`` (not found,
  a page without a text layer, or a document-level finding). Unverified findings are kept and
  flagged, never dropped; the reports can hide them. The only model findings dropped are ones
  that cite a page outside the chunk they were shown (counted in ``dropped_model_findings`` and
  logged in ``events.jsonl``; the answer schema makes them impossible for a constrained server).

A reviewer's verdict goes into the finding itself, for ``tilepilot export`` to learn from (the
agent writes neither key; ``tilepilot review --accept RUN --id ID`` / ``--reject`` set them, or
edit the file by hand)::

    {"id": ..., ..., "decision": "accepted"}
    {"id": ..., ..., "decision": "rejected"}
    {"id": ..., ..., "decision": "corrected",
     "correction": {"quote": ..., "rationale": ..., "severity": ..., "rule": ..., "fields": {"suggestion": ...}}}

A correction names only the keys it changes, among exactly those (:class:`FindingCorrection`; any
other key is an error), and only with ``"decision": "corrected"``. Export trains on accepted model
findings as they are and corrected ones with the correction applied; rejected and undecided ones
are left out.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Iterable, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer, model_validator

from tilepilot.agents.review.docmap import DocumentMap
from tilepilot.agents.review.quotes import normalise, similar
from tilepilot.agents.rules.schema import Positions

SCHEMA_ID = "tilepilot.review/2"
Severity = Literal["info", "low", "medium", "high", "critical"]
SEVERITIES: tuple[str, ...] = ("critical", "high", "medium", "low", "info")  # most severe first
BBox = tuple[float, float, float, float]
Verified = Literal["exact", "approximate", "unverified"]
BUILTIN_FIELDS = ("rule", "severity", "page", "quote", "bbox", "rationale")  # always in a finding
Decision = Literal["accepted", "rejected", "corrected"]


class FindingCorrection(BaseModel):
    """What a reviewer changed in a finding; absent keys keep the finding's own value."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    rule: str | None = None
    severity: Severity | None = None
    quote: str | None = None
    rationale: str | None = None
    fields: dict[str, str] | None = None  # replaces the named output fields (suggestion, ...), keeps the rest

    @model_serializer(mode="wrap")
    def _only_changes(self, handler: SerializerFunctionWrapHandler) -> dict:
        return {key: value for key, value in handler(self).items() if value is not None}


class Finding(BaseModel):
    model_config = ConfigDict(frozen=True)
    id: str
    rule: str
    severity: Severity
    page: int | None = Field(ge=1)  # None: a document-level finding (a missing clause, or one across ``pages``)
    pages: list[int] = []  # the pages a document-level finding concerns (empty: the whole document)
    quote: str
    bbox: BBox | None = None
    rationale: str
    fields: dict[str, str] = {}  # output.fields beyond the built-in ones, e.g. {"suggestion": ...}
    source: Literal["check", "model"]
    verified: Verified = "exact"
    decision: Decision | None = None  # a reviewer's verdict (see the module docstring); None: undecided
    correction: FindingCorrection | None = None  # only with decision "corrected"
    paragraph: int | None = None  # Word input: index of the quoted paragraph in python-docx's Document.paragraphs

    @model_validator(mode="after")
    def _correction_goes_with_its_decision(self) -> "Finding":
        if (self.decision == "corrected") != (self.correction is not None):
            raise ValueError('"decision": "corrected" and a "correction" object go together (one needs the other)')
        return self

    @model_serializer(mode="wrap")
    def _without_undecided(self, handler: SerializerFunctionWrapHandler) -> dict:
        # An undecided finding serialises as before decisions existed: the agent's files do not change.
        data = handler(self)
        for key in ("decision", "correction", "paragraph"):
            if data.get(key) is None:
                data.pop(key, None)
        return data

    @property
    def flag(self) -> str | None:
        """A playbook review's red/amber/green for the clause (the ``flag`` output field), else None."""
        value = self.fields.get("flag")
        return value if value in ("red", "amber", "green") else None

    def corrected(self) -> "Finding":
        """The finding as the reviewer wants it: the correction applied (itself when there is none)."""
        if self.correction is None:
            return self
        change = self.correction.model_dump()
        if "fields" in change:
            change["fields"] = {**self.fields, **change["fields"]}
        return self.model_copy(update=change)


class PageFailure(BaseModel):
    page: int
    reason: str


class PageSent(BaseModel):
    """What one page went to the model as, and why (the planner's reason, and any change the budget forced)."""

    page: int
    modality: Literal["text", "image", "both"] | None  # None: the page failed before it was sent
    image_budget: int | None = None
    reason: str


class ModelInfo(BaseModel):
    name: str
    served_name: str
    random_weights: bool
    note: str | None = None


class FailedInput(BaseModel):
    """An input that could not be reviewed, and why (one line)."""

    path: str
    reason: str


class DocumentResult(BaseModel):
    path: str  # the PDF reviewed (for a converted input: its cached conversion, whose pages the findings cite)
    source: str | None = None  # the file the user gave, when it was converted (Word, text, image)
    page_count: int
    pages: int  # pages reviewed (after --pages)
    failed_pages: list[int] = []
    failures: list[PageFailure] = []
    plan: dict[str, int] = {}
    sent: list[PageSent] = []
    document_map: DocumentMap = DocumentMap()  # headings and defined terms with their pages (from the text layer)
    unverified_model_findings: int = 0
    dropped_model_findings: int = 0
    summary: str | None = None
    findings: list[Finding] = []


class UsageTotals(BaseModel):
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    max_prompt_tokens: int = 0
    budget_tokens: int | None = None


class FindingsFile(BaseModel):
    schema_: str = Field(default=SCHEMA_ID, alias="schema")
    run: str
    created: str
    model: ModelInfo | None
    mode: Literal["map-reduce", "rolling", "no-model"]
    prefer: Literal["fidelity", "tokens"] = "fidelity"
    budget_tokens: int | None
    documents: list[DocumentResult]
    usage: UsageTotals
    failed_documents: list[FailedInput] = []  # inputs of a several-input run that could not be reviewed
    playbook: dict[str, Positions] = {}  # rule id -> the playbook positions the run was given (Word export's wording)

    model_config = ConfigDict(populate_by_name=True)


# -- what the model answers: kept small and capped so a random-weight model terminates ----------


class LenientJson(BaseModel):
    """Accepts raw control characters inside JSON strings.

    xgrammar lets a model emit them (a random-weight one does), strict JSON parsers reject them,
    and vLLM refuses string ``pattern`` constraints that could forbid them. ``ChatClient.chat``
    parses with ``schema.model_validate_json``, so this override is where the tolerance goes.
    """

    @classmethod
    def model_validate_json(cls, json_data, **kwargs):  # type: ignore[override]
        data = json.loads(json_data, strict=False)
        return cls.model_validate(data, strict=kwargs.get("strict"), context=kwargs.get("context"))


class ModelFinding(BaseModel):
    rule: str = Field(max_length=60, description="id of the rule this finding concerns, or 'model'")
    severity: Severity
    # Length bounds live in the per-request answer schema (from the model profile), not here.
    page: int | list[int] | None = Field(description="page number as given in the page header; a list: the pages a problem "
                                                    "spans; null: the whole document")
    quote: str = Field(description="exact words copied from that page")
    rationale: str
    box: list[float] | None = None  # [x0, y0, x1, y1] in the pixels of the page image the model was shown


class SummaryAnswer(LenientJson):
    summary: str = Field(max_length=300)


# Characters XML 1.0 cannot hold (C0 controls but tab and newlines, lone surrogates, U+FFFE/U+FFFF). A model's
# rationale may carry them (its JSON is parsed leniently); Word and xlsx files would refuse the whole export.
_NOT_IN_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_text(text: str) -> str:
    """``text`` with every character an XML file cannot hold shown as U+FFFD, so the reader sees something was there."""
    return _NOT_IN_XML.sub("\ufffd", text)


# -- ids and dedupe --------------------------------------------------------------------------


def normalize_quote(quote: str) -> str:
    return re.sub(r"\s+", " ", quote).strip().lower()


def model_finding_id(rule: str, page: int | None, quote: str) -> str:
    return hashlib.sha256(f"model\x1f{rule}\x1f{page}\x1f{normalize_quote(quote)}".encode()).hexdigest()[:16]


_PRIORITY = {"exact": 0, "approximate": 1, "unverified": 2}


def _rank(f: Finding) -> tuple:
    """Which of two findings about the same words is kept: a check, then the better-verified, then the fuller."""
    return (f.source != "check", _PRIORITY[f.verified], -len(f.rationale) - sum(len(v) for v in f.fields.values()), f.id)


def _overlap(a: BBox, b: BBox) -> float:
    """Intersection over the smaller box: 1.0 when one quote's words lie inside the other's."""
    w, h = min(a[2], b[2]) - max(a[0], b[0]), min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return w * h / smaller if smaller > 0 else 0.0


def same_words(a: Finding, b: Finding) -> bool:
    """Two page findings quote overlapping words: their boxes overlap by half the smaller, or, without
    boxes, one normalised quote holds the other."""
    if a.page is None or a.page != b.page:
        return False
    if a.bbox and b.bbox:
        return _overlap(a.bbox, b.bbox) >= 0.5
    qa, qb = normalise(a.quote), normalise(b.quote)
    return bool(qa and qb) and (qa in qb or qb in qa)


def dedupe(findings: Iterable[Finding]) -> list[Finding]:
    """One finding per clause: repeats collapse by overlapping quote spans on the same page and rule.

    Also dropped as repeats: a model finding on exactly the words of a check (of any rule: the
    check already names them), and a model's document-level finding of a rule whose check reports
    the clause missing. Document-level findings of one rule that say the same (in any chunk) merge,
    with their pages joined. The kept finding takes the fields (a suggestion) it lacks from its
    repeats. Order: by page, then severity (most severe first), then id, so output is the same
    however chunks were scheduled.
    """
    by_id: dict[str, Finding] = {}
    for finding in findings:
        by_id.setdefault(finding.id, finding)
    missing = {f.rule for f in by_id.values() if f.source == "check" and f.bbox is None}
    kept: list[Finding] = []
    by_page: dict[int | None, list[int]] = {}  # page -> indexes into kept
    for f in sorted(by_id.values(), key=_rank):
        if f.page is None and f.source == "model" and f.rule in missing:
            continue
        twin = next((i for i in by_page.get(f.page, []) if _repeats(kept[i], f)), None)
        if twin is None:
            by_page.setdefault(f.page, []).append(len(kept))
            kept.append(f)
            continue
        first = kept[twin]
        kept[twin] = first.model_copy(update={"fields": {**f.fields, **first.fields},
                                              "pages": sorted(set(first.pages) | set(f.pages))})
    return sorted(kept, key=lambda f: (f.page or 0, SEVERITIES.index(f.severity), f.id))


def _repeats(kept: Finding, new: Finding) -> bool:
    if kept.page is None:
        return new.page is None and kept.rule == new.rule and similar(f"{kept.quote} {kept.rationale}", f"{new.quote} {new.rationale}")
    if kept.source == "check" and new.source == "model" and normalise(kept.quote) == normalise(new.quote):
        return True
    return kept.rule == new.rule and same_words(kept, new)
