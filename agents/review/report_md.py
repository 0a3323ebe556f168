"""``report.md``: a readable summary of ``findings.json``, most severe first within each document."""

from __future__ import annotations

from agents.review.findings import SEVERITIES, FindingsFile


def _cell(text: str, limit: int = 160) -> str:
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render_markdown(report: FindingsFile) -> str:
    lines = [f"# Review report", "", f"- run: `{report.run}`", f"- mode: {report.mode}"]
    if report.model is not None:
        lines.append(f"- model: {report.model.name} (served as `{report.model.served_name}`)")
        if report.model.note:
            lines.append(f"- **note:** {report.model.note}")
    usage = report.usage
    if usage.requests:
        lines.append(f"- requests: {usage.requests}, prompt tokens: {usage.prompt_tokens}, largest request: "
                     f"{usage.max_prompt_tokens} of a {usage.budget_tokens}-token budget")
    for doc in report.documents:
        lines += ["", f"## {doc.path}", "",
                  f"{doc.pages} of {doc.page_count} pages reviewed; {len(doc.findings)} findings; "
                  f"{len(doc.failed_pages)} failed pages."]
        if doc.plan:
            lines.append("Plan: " + ", ".join(f"{n} {m}" for m, n in doc.plan.items()) + " pages.")
        if doc.dropped_model_findings:
            lines.append(f"{doc.dropped_model_findings} model findings were dropped: their quote is not on the cited page.")
        if doc.summary:
            label = " (tiny random-weight model)" if report.model and report.model.random_weights else ""
            lines += ["", f"**Summary{label}:** {_cell(doc.summary, 1200)}"]
        if doc.failures:
            lines += ["", "### Failed pages", ""] + [f"- page {f.page}: {_cell(f.reason, 300)}" for f in doc.failures]
        if doc.findings:
            lines += ["", "### Findings", "", "| severity | page | rule | source | quote | rationale |", "|---|---|---|---|---|---|"]
            for f in sorted(doc.findings, key=lambda f: (SEVERITIES.index(f.severity), f.page or 0)):
                source = f.source if f.verified else f"{f.source} (unverified)"
                lines.append(f"| {f.severity} | {f.page or 'document'} | {f.rule} | {source} | {_cell(f.quote)} | {_cell(f.rationale)} |")
    return "\n".join(lines) + "\n"
