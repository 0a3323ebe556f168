"""The review agent's output schema (``findings.json``) and the schema the model must answer in.

``findings.json`` is one :class:`FindingsFile`::

    {"schema": "tilepilot.review/1", "run": DIR, "created": ISO time,
     "model": {"name", "served_name", "random_weights", "note"} | null,   # null with --no-model
     "mode": "map-reduce" | "rolling" | "no-model", "budget_tokens": N | null,
     "documents": [{"path", "page_count", "pages": N reviewed, "failed_pages": [page, ...],
                    "failures": [{"page", "reason"}], "plan": {"text": n, "image": n, "both": n},
                    "dropped_model_findings": n, "summary": str | null,
                    "findings": [Finding, ...]}],
     "usage": {"requests", "prompt_tokens", "completion_tokens", "max_prompt_tokens", "budget_tokens"}}

A :class:`Finding` is ``{id, rule, severity, page, quote, bbox, rationale, source, verified}``:

- ``id``: 16 hex chars, stable: a hash of rule, page and quote (plus the box for checks), so the
  same finding gets the same id in every run and duplicates collapse on it.
- ``rule``: the check id for ``source="check"``; for ``source="model"`` a rule id the model cited
  when it names a known check, else ``"model"``.
- ``page``: 1-based; null for a document-level model finding (a missing clause: no quote,
  unverified). ``bbox``: ``[x0, y0, x1, y1]`` in PDF points, origin top-left, when known.
- ``verified``: checks are always verified. A model finding is verified when its quote was found
  on its page's text layer (that search also gives its bbox). Model findings are validated before
  they are kept: a page outside the chunk the model was shown is dropped; a quote that is not on
  a page that HAS a text layer is dropped as hallucinated; on a page without a text layer (a
  scan) it cannot be checked, so it is kept with ``verified: false``; its bbox is the box the model drew in
  the page image (``box``, pixels), mapped to points, when it gave one. Dropped
  findings are counted in ``dropped_model_findings`` and logged in ``events.jsonl``.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Iterable, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_ID = "tilepilot.review/1"
Severity = Literal["info", "low", "medium", "high", "critical"]
SEVERITIES: tuple[str, ...] = ("critical", "high", "medium", "low", "info")  # most severe first
BBox = tuple[float, float, float, float]


class Finding(BaseModel):
    model_config = ConfigDict(frozen=True)
    id: str
    rule: str
    severity: Severity
    page: int | None = Field(ge=1)  # None: a document-level finding (a missing clause)
    quote: str
    bbox: BBox | None = None
    rationale: str
    source: Literal["check", "model"]
    verified: bool = True


class PageFailure(BaseModel):
    page: int
    reason: str


class ModelInfo(BaseModel):
    name: str
    served_name: str
    random_weights: bool
    note: str | None = None


class DocumentResult(BaseModel):
    path: str
    page_count: int
    pages: int  # pages reviewed (after --pages)
    failed_pages: list[int] = []
    failures: list[PageFailure] = []
    plan: dict[str, int] = {}
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
    schema_: str = Field(SCHEMA_ID, alias="schema")
    run: str
    created: str
    model: ModelInfo | None
    mode: Literal["map-reduce", "rolling", "no-model"]
    budget_tokens: int | None
    documents: list[DocumentResult]
    usage: UsageTotals

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
    page: int | None = Field(ge=1, le=100_000, description="page number as given in the page header; null: the whole document")
    quote: str = Field(description="exact words copied from that page")
    rationale: str
    box: list[float] | None = None  # [x0, y0, x1, y1] in the pixels of the page image the model was shown


class SummaryAnswer(LenientJson):
    summary: str = Field(max_length=300)


# -- ids and dedupe --------------------------------------------------------------------------


def normalize_quote(quote: str) -> str:
    return re.sub(r"\s+", " ", quote).strip().lower()


def model_finding_id(rule: str, page: int | None, quote: str) -> str:
    return hashlib.sha256(f"model\x1f{rule}\x1f{page}\x1f{normalize_quote(quote)}".encode()).hexdigest()[:16]


def dedupe(findings: Iterable[Finding]) -> list[Finding]:
    """Drop repeats (same id, a model finding that repeats a check on the same words, or a missing clause).

    Order: by page, then severity (most severe first), then id, so output is the same however
    chunks were scheduled.
    """
    by_id: dict[str, Finding] = {}
    for finding in findings:
        by_id.setdefault(finding.id, finding)
    check_quotes = {(f.page, normalize_quote(f.quote)) for f in by_id.values() if f.source == "check"}
    # A check without a box reports a missing clause: a model's document-level finding of that rule repeats it.
    missing = {f.rule for f in by_id.values() if f.source == "check" and f.bbox is None}
    kept = [f for f in by_id.values() if f.source == "check" or
            ((f.page, normalize_quote(f.quote)) not in check_quotes and not (f.page is None and f.rule in missing))]
    return sorted(kept, key=lambda f: (f.page or 0, SEVERITIES.index(f.severity), f.id))
