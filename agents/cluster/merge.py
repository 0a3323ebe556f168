"""Merge the per-document runs of a cluster review into the run's ``findings.json``, ``report.md`` and ``report.html``.

Each output is streamed: one document's ``findings.json`` is read, written out and dropped before
the next is read, so the driver's memory stays flat however many documents there are. Each file
goes to a temporary name in the run folder and is renamed into place when complete, so a reader
(or a kill) never sees half of one.

``findings.json`` is the single-process schema (:class:`tilepilot.agents.review.findings.FindingsFile`, same
``documents`` entries in input order, summed ``usage``) plus ``failed_documents``:
``[{"path", "reason"}]`` for inputs that could not be reviewed. ``report.md`` holds every
document's section; ``report.html`` is an index (counts per severity) linking each document's own
``report.html`` with its thumbnails: one page with a million documents' thumbnails would not open.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from tilepilot.agents.atomic import streamed_atomic
from tilepilot.agents.cluster.documents import FailedDocument, document_dir, failed_marker
from tilepilot.agents.review.findings import SCHEMA_ID, SEVERITIES, DocumentResult, FindingsFile, ModelInfo, UsageTotals
from tilepilot.agents.review.report_md import render_markdown


def _entries(run_dir: Path, keys: list[tuple[str, str]]) -> Iterator[tuple[str, FindingsFile | FailedDocument | None]]:
    """Per input in order: its one-document report, its failure, or None (not reviewed: a deadline)."""
    for key, path in keys:
        findings = document_dir(run_dir, key) / "findings.json"
        marker = failed_marker(run_dir, key)
        if findings.is_file():
            yield key, FindingsFile.model_validate_json(findings.read_text(encoding="utf-8"))
        elif marker.is_file():
            yield key, FailedDocument.model_validate_json(marker.read_text(encoding="utf-8"))
        else:
            yield key, None


def merge_run(run_dir: Path, keys: list[tuple[str, str]], mode: str, prefer: str) -> tuple[int, int, int]:
    """Write the three merged outputs; returns (documents reviewed, failed documents, findings)."""
    run_dir = Path(run_dir)
    usage = UsageTotals()
    model: ModelInfo | None = None
    reviewed = failed = findings = 0
    with streamed_atomic(run_dir / "findings.json") as out_json, streamed_atomic(run_dir / "report.md") as out_md, \
            streamed_atomic(run_dir / "report.html") as out_html:
        out_json.write('{"documents": [')
        out_md.write(f"# Review report\n\n- run: `{run_dir}`\n- mode: {mode} (on a Ray cluster: one run per document "
                     f"under `docs/`)\n")
        out_html.write(_html_head(run_dir, mode))
        failures: list[FailedDocument] = []  # failed inputs are few; listed after the reviewed ones
        for key, entry in _entries(run_dir, keys):
            if isinstance(entry, FindingsFile):
                doc = entry.documents[0]
                out_json.write(("," if reviewed else "") + doc.model_dump_json(by_alias=True))
                out_md.write(_markdown_section(entry))
                out_html.write(_html_row(key, doc))
                _add_usage(usage, entry.usage)
                model = model or entry.model
                reviewed += 1
                findings += len(doc.findings)
            elif isinstance(entry, FailedDocument):
                failures.append(entry)
                failed += 1
        out_json.write("], " + json.dumps({
            "schema": SCHEMA_ID, "run": str(run_dir), "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "model": model.model_dump(mode="json") if model else None, "mode": mode, "prefer": prefer,
            "budget_tokens": usage.budget_tokens, "usage": usage.model_dump(mode="json"),
            "failed_documents": [f.model_dump(mode="json") for f in failures]})[1:])
        if failures:
            out_md.write("\n## Documents that could not be reviewed\n\n" + "".join(f"- {f.path}: {f.reason}\n" for f in failures))
        out_html.write(_html_tail(model, failures, reviewed, findings, usage))
    return reviewed, failed, findings


def _add_usage(total: UsageTotals, part: UsageTotals) -> None:
    total.requests += part.requests
    total.prompt_tokens += part.prompt_tokens
    total.completion_tokens += part.completion_tokens
    total.max_prompt_tokens = max(total.max_prompt_tokens, part.max_prompt_tokens)
    total.budget_tokens = total.budget_tokens or part.budget_tokens


def _markdown_section(report: FindingsFile) -> str:
    """The document's section as the single-process report renders it (everything from its heading on)."""
    text = render_markdown(report)
    start = text.find("\n## ")
    return text[start:] if start >= 0 else text


def _html_head(run_dir: Path, mode: str) -> str:
    cells = "".join(f"<th>{s}</th>" for s in SEVERITIES)
    return ("<!doctype html><html><head><meta charset=utf-8><title>tilepilot review (cluster)</title><style>"
            "body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222} table{border-collapse:collapse;width:100%}"
            "th,td{border:1px solid #ddd;padding:4px 6px;text-align:left} th{background:#f4f4f4} .failed{color:#a00}"
            "</style></head><body><h1>Review report</h1>"
            f"<p>run {html.escape(str(run_dir))} · mode {html.escape(mode)} · one run per document; each link opens "
            "that document's report with its page thumbnails</p>"
            f"<table><tr><th>document</th><th>pages</th><th>failed pages</th><th>findings</th>{cells}</tr>")


def _html_row(key: str, doc: DocumentResult) -> str:
    counts = {s: 0 for s in SEVERITIES}
    for finding in doc.findings:
        counts[finding.severity] += 1
    link = f"docs/{key}/report.html"
    return (f"<tr><td><a href='{link}'>{html.escape(doc.source or doc.path)}</a></td><td>{doc.pages}</td><td>{len(doc.failed_pages)}</td>"
            f"<td>{len(doc.findings)}</td>" + "".join(f"<td>{counts[s]}</td>" for s in SEVERITIES) + "</tr>")


def _html_tail(model: ModelInfo | None, failures: list[FailedDocument], reviewed: int, findings: int, usage: UsageTotals) -> str:
    out = ["</table>", f"<p>{reviewed} documents reviewed, {findings} findings, {usage.requests} model requests</p>"]
    if model and model.note:
        out.append(f"<p><b>note:</b> {html.escape(model.note)}</p>")
    if failures:
        out.append("<h2>Documents that could not be reviewed</h2><ul>"
                   + "".join(f"<li class=failed>{html.escape(f.path)}: {html.escape(f.reason)}</li>" for f in failures) + "</ul>")
    return "".join(out) + "</body></html>"
