"""``tilepilot replay RUN``: one self-contained HTML page for a desktop run.

Screenshots are embedded (downscaled JPEG data URLs) and scale to fit their column, whatever the
screen size; the action's point or drag path and the box of the widget under it (from the
accessibility tree) are drawn as SVG overlays in the screenshot's own pixel space, so the page
shows exactly where the model pointed (a normalised model point is mapped through the step's
``ModelFrame``, a widget box in screen pixels through its ``Geometry``). Each step lists the
guard's verdict with the deciding rule and widget, whether the screen changed, the token
figures, the result and the timings; all text wraps. A timeline at the top shows every step's
duration coloured by its verdict and links to the step.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

from PIL import Image

from tilepilot.agents.desktop.state import StepRecord
from tilepilot.agents.desktop.trajectory import Trajectory, load_trajectory
from tilepilot.agents.runs import write_atomic
from tilepilot.tools.actions import Drag

EMBED_WIDTH = 960  # px of the embedded JPEG at most; the page scales it to its column (SVG viewBox)
COLOURS = {"allow": "#2e7d32", "deny": "#c62828", "confirm": "#ef6c00", "invalid": "#6a1b9a", "none": "#607d8b"}
WIDGET_COLOUR = "#1565c0"

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f4f5f7;color:#222}
header{padding:16px 24px;background:#263238;color:#fff}
header h1{margin:0 0 4px;font-size:20px} header .meta{opacity:.85}
.timeline{display:flex;gap:2px;padding:10px 24px;background:#fff;border-bottom:1px solid #ddd;align-items:flex-end}
.timeline a{display:block;min-width:14px;color:#fff;font-size:10px;text-align:center;text-decoration:none;border-radius:2px}
.timeline{flex-wrap:wrap}
.step{display:flex;flex-wrap:wrap;gap:16px;margin:16px 24px;padding:12px;background:#fff;border-radius:6px;box-shadow:0 1px 2px #0002}
.shot{position:relative;flex:1 1 480px;max-width:%(w)dpx;min-width:0;align-self:flex-start}
.shot img{display:block;width:100%%;height:auto;box-sizing:border-box;border:1px solid #ccc}
.shot svg{position:absolute;left:0;top:0;width:100%%;height:100%%}
.info{flex:1 1 320px;min-width:0;overflow-wrap:anywhere} .info h2{margin:0 0 6px;font-size:16px}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;color:#fff;font-weight:600;font-size:12px}
.badge.nochange{background:#455a64}
table{border-collapse:collapse;margin-top:6px;width:100%%;table-layout:fixed}
td{padding:2px 8px 2px 0;vertical-align:top;overflow-wrap:anywhere} td:first-child{color:#666;width:9em}
code{background:#eef;padding:0 3px;white-space:pre-wrap;overflow-wrap:anywhere}
header .meta{overflow-wrap:anywhere}
""" % {"w": EMBED_WIDTH}


def _verdict(step: StepRecord) -> str:
    if step.invalid:
        return "invalid"
    return step.guard.verdict if step.guard else "none"


def _embed(run_dir: Path, step: StepRecord) -> str:
    path = run_dir / step.screenshot
    if not path.is_file():
        return ""
    with Image.open(path) as im:
        im = im.convert("RGB")
        if im.width > EMBED_WIDTH:
            im = im.resize((EMBED_WIDTH, round(im.height * EMBED_WIDTH / im.width)), Image.Resampling.BILINEAR)
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=75)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _widget_box(step: StepRecord) -> str:
    box = step.guard.widget_box if step.guard else None
    if box is None:
        return ""
    g = step.geometry
    (x0, y0), (x1, y1) = g.to_image(box[0], box[1]), g.to_image(box[2], box[3])
    width = max(g.image_width, g.image_height) / 400
    title = html.escape(step.guard.widget or "widget") if step.guard else "widget"
    return (f'<rect x="{x0:.1f}" y="{y0:.1f}" width="{max(1.0, x1 - x0):.1f}" height="{max(1.0, y1 - y0):.1f}" fill="none" '
            f'stroke="{WIDGET_COLOUR}" stroke-width="{width:.1f}" stroke-dasharray="{4 * width:.1f}"><title>{title}</title></rect>')


def _overlay(step: StepRecord) -> str:
    g, action = step.geometry, step.action
    if action is None or not action.points():
        return ""
    colour = COLOURS[_verdict(step)]
    r = max(g.image_width, g.image_height) / 90
    # The model's point in the screenshot's pixels (a normalised model answers 0..1000).
    points = [step.frame.to_image(x, y) for x, y in action.points()]
    shapes = [_widget_box(step)]
    if isinstance(action, Drag):
        pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        shapes.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="{r / 3:.1f}" marker-end="url(#arrow-{step.step})"/>')
        x, y = points[0]
        shapes.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r / 2:.1f}" fill="{colour}"/>')
    else:
        for x, y in points:
            shapes.append(
                f'<circle cx="{x}" cy="{y}" r="{r:.1f}" fill="none" stroke="{colour}" stroke-width="{r / 4:.1f}"/>'
                f'<line x1="{x - 2 * r}" y1="{y}" x2="{x + 2 * r}" y2="{y}" stroke="{colour}" stroke-width="{r / 8:.1f}"/>'
                f'<line x1="{x}" y1="{y - 2 * r}" x2="{x}" y2="{y + 2 * r}" stroke="{colour}" stroke-width="{r / 8:.1f}"/>'
            )
    marker = (f'<defs><marker id="arrow-{step.step}" viewBox="0 0 10 10" refX="5" refY="5" markerWidth="4" markerHeight="4" orient="auto">'
              f'<path d="M0,0 L10,5 L0,10 z" fill="{colour}"/></marker></defs>')
    return (f'<svg viewBox="0 0 {g.image_width} {g.image_height}" preserveAspectRatio="none">'
            f"{marker}{''.join(shapes)}</svg>")


def _row(name: str, value: str) -> str:
    return f"<tr><td>{html.escape(name)}</td><td>{value}</td></tr>"


def _step_html(run_dir: Path, step: StepRecord) -> str:
    e = html.escape
    verdict = _verdict(step)
    action = json.dumps(step.action.model_dump(mode="json"), ensure_ascii=False) if step.action else "(none)"
    unit = "0..1000" if step.coordinates == "normalized" else "screenshot px"
    rows = [_row(f"action ({unit})", f"<code>{e(action)}</code>")]
    if step.model_xy:
        rows.append(_row("model xy → screen xy", e(f"{step.model_xy} → {step.screen_xy or '(not mapped)'}")))
    if step.thought:
        rows.append(_row("thought", e(step.thought)))
    if step.invalid:
        rows.append(_row("invalid", e(step.invalid)))
    if step.guard:
        rule = f"{step.guard.rule_file}:{step.guard.rule_line or ''} ({step.guard.rule_key})" if step.guard.rule_file else "default"
        approved = "" if step.guard.approved is None else f" — approved: {step.guard.approved}"
        rows.append(_row("guard", f"<b>{e(step.guard.verdict)}</b> {e(step.guard.reason)}{e(approved)}"))
        rows.append(_row("deciding rule", e(rule)))
        if step.guard.widget:
            rows.append(_row("widget", e(step.guard.widget)))
    rows.append(_row("executed", e(str(step.executed))))
    if step.screen_changed is not None:
        rows.append(_row("screen changed", e("yes" if step.screen_changed else "no (no visible change)")))
    rows.append(_row("result", e(step.outcome())))
    if step.window_title:
        rows.append(_row("window", e(step.window_title)))
    if step.usage:
        u = step.usage
        rows.append(_row("tokens", e(f"prompt {u.prompt_tokens} (counted {u.counted_prompt_tokens}, budget {u.input_budget}, "
                                     f"{u.images} screenshots), completion {u.completion_tokens}")))
    t = step.timings
    rows.append(_row("timings ms", e(f"capture {t.capture_ms:.0f}, decide {t.decide_ms:.0f} (model {t.model_ms:.0f}), "
                                     f"guard {t.guard_ms:.1f}, act {t.act_ms:.0f}, total {t.total_ms:.0f}")))
    g = step.geometry
    budget = f", budget {step.budget}" if step.budget else ""
    rows.append(_row("screenshot", e(f"{g.image_width}x{g.image_height} px of screen {g.width}x{g.height}+{g.left}+{g.top}{budget}")))
    src = _embed(run_dir, step)
    shot = f'<img src="{src}" alt="step {step.step}">' if src else "<p>(screenshot missing)</p>"
    nochange = ' <span class="badge nochange">no visible change</span>' if step.screen_changed is False else ""
    return (f'<section class="step" id="step-{step.step}"><div class="shot">{shot}{_overlay(step)}</div>'
            f'<div class="info"><h2>Step {step.step} <span class="badge" style="background:{COLOURS[verdict]}">{verdict}</span>'
            f'{nochange}</h2>'
            f"<table>{''.join(rows)}</table></div></section>")


def render_replay(run_dir: Path, trajectory: Trajectory) -> str:
    e = html.escape
    steps = sorted(trajectory.steps, key=lambda s: s.step)
    longest = max([s.timings.total_ms for s in steps] + [1.0])
    bars = "".join(
        f'<a href="#step-{s.step}" title="step {s.step}: {e(_verdict(s))}, {s.timings.total_ms:.0f} ms" '
        f'style="background:{COLOURS[_verdict(s)]};height:{12 + 48 * s.timings.total_ms / longest:.0f}px">{s.step}</a>'
        for s in steps
    )
    prompt = sum(s.usage.prompt_tokens for s in steps if s.usage)
    completion = sum(s.usage.completion_tokens for s in steps if s.usage)
    duration = (trajectory.finished_at or trajectory.started_at) - trajectory.started_at
    meta = (f"status <b>{e(str(trajectory.status))}</b> {e(trajectory.stop_reason)} · {len(steps)} steps · "
            f"{duration:.1f} s · model {e(trajectory.model)} · tokens: prompt {prompt}, completion {completion}"
            f"{' · dry run' if trajectory.options.dry_run else ''}")
    body = "".join(_step_html(run_dir, s) for s in steps)
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>tilepilot replay: {e(trajectory.task)}</title>'
            f"<style>{CSS}</style></head><body><header><h1>{e(trajectory.task)}</h1><div class=\"meta\">{meta}</div></header>"
            f'<nav class="timeline">{bars}</nav>{body}</body></html>')


def write_replay(run_dir: Path, out: Path | None = None) -> Path:
    run_dir = Path(run_dir)
    trajectory = load_trajectory(run_dir)
    path = Path(out) if out else run_dir / "replay.html"
    write_atomic(path, render_replay(run_dir, trajectory))
    return path
