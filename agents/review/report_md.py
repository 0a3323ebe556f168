"""``report.md``: a readable summary of ``findings.json``, most severe first within each document."""

from __future__ import annotations

from tilepilot.agents.review.findings import SEVERITIES, Finding, FindingsFile


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
        lines += ["", f"## {doc.source or doc.path}", "",
                  f"{doc.pages} of {doc.page_count} pages reviewed; {len(doc.findings)} findings; "
                  f"{len(doc.failed_pages)} failed pages."]
        if doc.plan:
            lines.append("Plan: " + ", ".join(f"{n} {m}" for m, n in doc.plan.items()) + " pages.")
        if doc.unverified_model_findings:
            lines.append(f"{doc.unverified_model_findings} model findings are unverified: their quote was not found on the "
                         f"page's text layer (or the page has none). They are listed last; check them against the page.")
        if doc.dropped_model_findings:
            lines.append(f"{doc.dropped_model_findings} model findings were dropped: they cite a page the model was not shown.")
        if doc.summary:
            label = " (tiny random-weight model)" if report.model and report.model.random_weights else ""
            lines += ["", f"**Summary{label}:** {_cell(doc.summary, 1200)}"]
        if doc.failures:
            lines += ["", "### Failed pages", ""] + [f"- page {f.page}: {_cell(f.reason, 300)}" for f in doc.failures]
        extra = sorted({name for f in doc.findings for name in f.fields})
        checked = [f for f in doc.findings if f.page is not None and f.verified != "unverified"]
        groups = [("Findings", checked),
                  ("Document-level findings (a missing clause, or a problem across pages)", [f for f in doc.findings if f.page is None]),
                  ("Unverified findings (quote not found on the page)",
                   [f for f in doc.findings if f.page is not None and f.verified == "unverified"])]
        for title, findings in groups:
            if findings:
                lines += ["", f"### {title}", ""] + _table(findings, extra)
    return "\n".join(lines) + "\n"


def _table(findings: list[Finding], extra: list[str]) -> list[str]:
    header = ["severity", "page", "rule", "source", "quote check", "quote", "rationale", *extra]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for f in sorted(findings, key=lambda f: (SEVERITIES.index(f.severity), f.page or 0)):
        where = str(f.page) if f.page else ("pages " + ", ".join(map(str, f.pages)) if f.pages else "document")
        cells = [f.severity, where, f.rule, f.source, f.verified, _cell(f.quote), _cell(f.rationale),
                 *(_cell(f.fields.get(name, "")) for name in extra)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines
