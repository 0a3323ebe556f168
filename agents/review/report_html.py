"""``report.html``: one self-contained page: findings table, page thumbnails with highlighted boxes, filters.

Thumbnails are rendered one page at a time (only pages that have findings, at most
:data:`MAX_THUMBNAILS` per document) and inlined as JPEG data URLs, so the file opens offline
anywhere. Boxes are positioned in percent of the page, from the findings' PDF-point bboxes.
"""

from __future__ import annotations

import base64
import html
import io
import json

from tilepilot.agents.review.findings import SEVERITIES, DocumentResult, Finding, FindingsFile
from tilepilot.tools.errors import PdfError
from tilepilot.tools.pdf import open_pdf

MAX_THUMBNAILS = 200
THUMB_WIDTH = 320

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222}
h1{margin:0 0 8px} .meta{color:#555} .note{background:#fff3cd;border:1px solid #e0c36a;padding:6px 10px;margin:8px 0}
.filters{position:sticky;top:0;background:#fff;padding:8px 0;border-bottom:1px solid #ddd;z-index:5}
.filters label{margin-right:10px}
table{border-collapse:collapse;width:100%;margin:8px 0 16px} th,td{border:1px solid #ddd;padding:4px 6px;vertical-align:top;text-align:left}
th{background:#f4f4f4} .sev{font-weight:600;border-radius:3px;padding:0 5px;color:#fff}
.critical{background:#8b0000}.high{background:#d9480f}.medium{background:#e8a317}.low{background:#2b7bb9}.info{background:#777}
.pages{display:flex;flex-wrap:wrap;gap:14px} .page{position:relative;border:1px solid #bbb;width:""" + str(THUMB_WIDTH) + """px}
.page img{display:block;width:100%} .page .cap{font-size:12px;padding:2px 4px;background:#f4f4f4}
.box{position:absolute;border:2px solid;opacity:.85} .box.critical,.box.high{border-color:#d00;background:rgba(255,0,0,.15)}
.box.medium{border-color:#e8a317;background:rgba(255,200,0,.2)} .box.low,.box.info{border-color:#2b7bb9;background:rgba(0,100,255,.15)}
.failed{color:#a00} .v-unverified{color:#a00;font-weight:600} .v-approximate{color:#8a6d00}
"""

_JS = """
function applyFilters(){
  const sev=new Set([...document.querySelectorAll('input[name=sev]:checked')].map(e=>e.value));
  const rule=document.getElementById('rule').value;
  const unverified=document.getElementById('unverified').checked;
  document.querySelectorAll('[data-sev]').forEach(el=>{
    const ok=sev.has(el.dataset.sev)&&(rule===''||el.dataset.rule===rule)&&(unverified||el.dataset.verified!=='unverified');
    el.style.display=ok?'':'none';
  });
}
document.querySelectorAll('.filters input,.filters select').forEach(e=>e.addEventListener('change',applyFilters));
"""


def _thumb(doc, page: int, width_pt: float, height_pt: float) -> str:
    height_px = max(1, round(THUMB_WIDTH * height_pt / width_pt))
    image = doc.render(page, THUMB_WIDTH, height_px)
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=70)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _document_section(doc_result: DocumentResult, password: str | None) -> str:
    esc = html.escape
    out = [f"<h2>{esc(doc_result.source or doc_result.path)}</h2>",
           f"<p class=meta>{doc_result.pages} of {doc_result.page_count} pages reviewed, {len(doc_result.findings)} findings, "
           f"{len(doc_result.failed_pages)} failed pages</p>"]
    if doc_result.summary:
        out.append(f"<p><b>Summary:</b> {esc(doc_result.summary)}</p>")
    for failure in doc_result.failures:
        out.append(f"<p class=failed>page {failure.page} failed: {esc(failure.reason)}</p>")
    extra = sorted({name for f in doc_result.findings for name in f.fields})
    page_level = [f for f in doc_result.findings if f.page is not None]
    document_level = [f for f in doc_result.findings if f.page is None]
    if page_level:
        out.append(_findings_table(page_level, extra, id(doc_result)))
    if document_level:
        out += ["<h3>Document-level findings</h3><p class=meta>a missing clause, or a problem across pages: no single "
                "page to quote</p>", _findings_table(document_level, extra, id(doc_result))]
    by_page: dict[int, list] = {}
    for f in doc_result.findings:
        if f.page is not None:  # document-level findings have no page to show
            by_page.setdefault(f.page, []).append(f)
    out.append("<div class=pages>")
    try:
        with open_pdf(doc_result.path, password) as doc:
            for page in sorted(by_page)[:MAX_THUMBNAILS]:
                width_pt, height_pt = doc.page_size(page)
                boxes = []
                for f in by_page[page]:
                    if f.bbox is None:
                        continue
                    x0, y0, x1, y1 = f.bbox
                    style = (f"left:{100 * x0 / width_pt:.2f}%;top:{100 * y0 / height_pt:.2f}%;"
                             f"width:{100 * (x1 - x0) / width_pt:.2f}%;height:{100 * (y1 - y0) / height_pt:.2f}%")
                    boxes.append(f"<div class='box {f.severity}' data-sev='{f.severity}' data-rule='{esc(f.rule, quote=True)}' "
                                 f"data-verified='{f.verified}' "
                                 f"style='{style}' title='{esc(f.rule, quote=True)}: {esc(f.quote[:80], quote=True)}'></div>")
                out.append(f"<div class=page id='{id(doc_result)}-p{page}'><img alt='page {page}' src='{_thumb(doc, page, width_pt, height_pt)}'>"
                           + "".join(boxes) + f"<div class=cap>page {page}: {len(by_page[page])} findings</div></div>")
    except PdfError as err:
        out.append(f"<p class=failed>thumbnails unavailable: {esc(str(err))}</p>")
    out.append("</div>")
    return "\n".join(out)


def _findings_table(findings: list[Finding], extra: list[str], anchor: int) -> str:
    esc = html.escape
    rows = []
    for f in sorted(findings, key=lambda f: (SEVERITIES.index(f.severity), f.page or 0)):
        where = (f"<a href='#{anchor}-p{f.page}'>{f.page}</a>" if f.page else
                 ("pages " + ", ".join(map(str, f.pages)) if f.pages else "document"))
        rows.append(f"<tr data-sev='{f.severity}' data-rule='{esc(f.rule, quote=True)}' data-verified='{f.verified}'>"
                    f"<td><span class='sev {f.severity}'>{f.severity}</span></td><td>{where}</td><td>{esc(f.rule)}</td>"
                    f"<td>{f.source}</td><td class='v-{f.verified}'>{f.verified}</td><td>{esc(f.quote)}</td><td>{esc(f.rationale)}</td>"
                    + "".join(f"<td>{esc(f.fields.get(name, ''))}</td>" for name in extra) + "</tr>")
    head = "".join(f"<th>{h}</th>" for h in ["severity", "page", "rule", "source", "quote check", "quote", "rationale", *extra])
    return f"<table><tr>{head}</tr>" + "".join(rows) + "</table>"


def render_html(report: FindingsFile, password: str | None = None) -> str:
    esc = html.escape
    rules = sorted({f.rule for d in report.documents for f in d.findings})
    sev_boxes = "".join(f"<label><input type=checkbox name=sev value={s} checked> {s}</label>" for s in SEVERITIES)
    rule_options = "<option value=''>all rules</option>" + "".join(f"<option>{esc(r)}</option>" for r in rules)
    head = [f"<h1>Review report</h1><p class=meta>run {esc(report.run)} · mode {report.mode} · "
            f"{report.usage.requests} requests, largest {report.usage.max_prompt_tokens} of {report.usage.budget_tokens} tokens</p>"]
    if report.model and report.model.note:
        head.append(f"<div class=note>{esc(report.model.note)}</div>")
    body = "\n".join(_document_section(d, password) for d in report.documents)
    data = json.dumps({"run": report.run})  # keeps the file self-describing for scripts
    return (f"<!doctype html><html><head><meta charset=utf-8><title>tilepilot review</title><style>{_CSS}</style></head><body>"
            + "".join(head) + f"<div class=filters>Severity: {sev_boxes} Rule: <select id=rule>{rule_options}</select> "
            "<label><input type=checkbox id=unverified checked> unverified findings</label></div>"
            + body + f"<script type=application/json id=meta>{data}</script><script>{_JS}</script></body></html>")
