"""The eval's outputs: the terminal table (metrics x systems), ``--json``, and ``report.html``.

``report.html`` shows every miss with its page or screenshot and, drawn over it as SVG, the
expected box (green) and the predicted box (red; a point is a small cross).
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Sequence

from PIL import Image
from rich.table import Table

from tilepilot.agents.eval.core import Miss, SuiteResult

HEADLINE = ("precision", "recall", "f1", "success_rate", "hit_rate", "cer")
MAX_MISSES_SHOWN = 2000  # per system (images are files, not inlined); the rest are counted


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if abs(value) < 1000 else f"{value:,.0f}"


def _metric_order(results: Sequence[SuiteResult]) -> list[str]:
    names: list[str] = []
    for result in results:
        names += [k for k in result.metrics if k not in names]
    return sorted(names, key=lambda k: (HEADLINE.index(k) if k in HEADLINE else len(HEADLINE), names.index(k)))


def metrics_table(results: Sequence[SuiteResult]) -> Table:
    """Headline metrics (and extras) as rows, systems as columns."""
    table = Table(title=f"tilepilot eval {results[0].suite}" if results else "tilepilot eval")
    table.add_column("metric")
    for result in results:
        table.add_column(result.system, justify="right")
    for name in _metric_order(results):
        table.add_row(name, *(_fmt(r.metrics.get(name)) for r in results))
    table.add_row("seconds", *(_fmt(r.seconds) for r in results))
    table.add_row("misses", *(str(len(r.misses)) for r in results))
    return table


BREAKDOWN_KEYS = ("precision", "recall", "f1", "hit_rate", "success_rate", "cer", "wer", "key_fact_recall", "baseline_wer")


def breakdown_table(results: Sequence[SuiteResult], keys: Sequence[str] = BREAKDOWN_KEYS) -> Table | None:
    """One row per breakdown group and metric (e.g. ``rule=pii f1``), systems as columns."""
    groups: list[str] = []
    for result in results:
        groups += [g for g in result.breakdown if g not in groups]
    if not groups:
        return None
    table = Table(title="breakdown")
    table.add_column("group")
    table.add_column("metric")
    for result in results:
        table.add_column(result.system, justify="right")
    for group in groups:
        names = [k for r in results for k in r.breakdown.get(group, {})]
        for name in dict.fromkeys(n for n in names if n in keys or not keys):
            table.add_row(group, name, *(_fmt(r.breakdown.get(group, {}).get(name)) for r in results))
    return table


def machine_output(results: Sequence[SuiteResult]) -> str:
    """What ``--json`` prints: the same numbers as the table, one object per system."""
    return json.dumps({
        "suite": results[0].suite if results else None,
        "systems": [r.system for r in results],
        "results": [{"system": r.system, "metrics": r.metrics, "breakdown": r.breakdown, "seconds": r.seconds,
                     "misses": len(r.misses)} for r in results],
    })


def _box_svg(box: tuple[float, float, float, float], color: str, width: int) -> str:
    x0, y0, x1, y1 = box
    stroke = max(2, width // 300)
    if x1 - x0 < 1 and y1 - y0 < 1:  # a point: a cross
        r = stroke * 6
        return (f'<path d="M{x0 - r},{y0} L{x0 + r},{y0} M{x0},{y0 - r} L{x0},{y0 + r}" stroke="{color}" '
                f'stroke-width="{stroke}"/>')
    return (f'<rect x="{x0}" y="{y0}" width="{x1 - x0}" height="{y1 - y0}" fill="none" stroke="{color}" '
            f'stroke-width="{stroke}"/>')


def _miss_html(miss: Miss, out_dir: Path) -> str:
    parts = [f"<div class='miss'><p><b>{html.escape(miss.case)}</b>: {html.escape(miss.detail)}</p>"]
    if miss.image and (out_dir / miss.image).is_file():
        with Image.open(out_dir / miss.image) as image:
            width, height = image.size
        boxes = "".join(_box_svg(b, c, width) for b, c in ((miss.expected_box, "#1a7f37"), (miss.predicted_box, "#cf222e")) if b)
        parts.append(f"<svg viewBox='0 0 {width} {height}' width='{min(width, 600)}'>"
                     f"<image href='{html.escape(miss.image)}' width='{width}' height='{height}'/>{boxes}</svg>")
    parts.append("</div>")
    return "".join(parts)


def render_html(results: Sequence[SuiteResult], out_dir: Path) -> str:
    """report.html for the eval folder ``out_dir`` (image paths are relative to it)."""
    suite = html.escape(results[0].suite) if results else ""
    head = "".join(f"<th>{html.escape(r.system)}</th>" for r in results)
    rows = "".join(f"<tr><td>{html.escape(n)}</td>" + "".join(f"<td>{_fmt(r.metrics.get(n))}</td>" for r in results) + "</tr>"
                   for n in _metric_order(results))
    body = [f"<h1>tilepilot eval {suite}</h1>", "<p>Expected boxes are green, predicted boxes red.</p>",
            f"<table><tr><th>metric</th>{head}</tr>{rows}</table>"]
    for result in results:
        groups = "".join(f"<tr><td>{html.escape(g)}</td>" + "".join(f"<td>{html.escape(k)}={_fmt(v)}</td>" for k, v in m.items())
                         + "</tr>" for g, m in result.breakdown.items())
        body.append(f"<h2>{html.escape(result.system)}: {len(result.misses)} misses</h2>")
        if groups:
            body.append(f"<details><summary>breakdown</summary><table>{groups}</table></details>")
        body += [_miss_html(m, out_dir) for m in result.misses[:MAX_MISSES_SHOWN]]
        if len(result.misses) > MAX_MISSES_SHOWN:
            body.append(f"<p>... and {len(result.misses) - MAX_MISSES_SHOWN} more misses (see results.json)</p>")
    style = ("body{font-family:sans-serif;margin:2em} table{border-collapse:collapse} td,th{border:1px solid #ccc;"
             "padding:2px 6px;text-align:right} .miss{margin:1em 0;border-top:1px solid #eee}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>tilepilot eval {suite}</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>")
