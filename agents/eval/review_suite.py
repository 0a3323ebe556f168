"""``tilepilot eval review``: the review agent on labelled contracts (generated, or ``--dataset DIR``).

The documents go through :func:`tilepilot.agents.review.runner.run_review`, the function behind
``tilepilot review``: planner, budgets, requests, validation, quote check, dedupe. Findings are
scored as a user receives them, deterministic checks and model findings together. A finding
matches a label when document, rule and page agree (a label with page null matches that rule on
any page); each label and each finding is used at most once, so a duplicate is a false positive.

Metrics (overall, and per rule / per page kind in the breakdown): precision, recall, f1;
``quotes_verified`` (matched page findings whose quote was found on the text layer, exactly or approximately);
``boxes_iou50`` (matched labels with a box whose finding box has IoU >= 0.5 with it);
``model_recall`` (labels the checks miss that model findings find). Overall only:
``prompt_tokens_per_page`` and ``pages_per_second`` (end to end, checks and plan included).
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

from tilepilot.agents.eval.core import EvalContext, Miss, SuiteResult, eval_cache_dir, iou, prf, share
from tilepilot.agents.eval.dataset import Dataset, Label, load_dataset
from tilepilot.agents.eval.rigs.review_data import suite_dir
from tilepilot.agents.review.findings import Finding
from tilepilot.tools.convert import to_pdf
from tilepilot.tools.pdf import open_pdf

NAME = "review"
ACCEPTS_DATASET = True
REQUEST_BUDGET = 4096  # prompt tokens per request: several chunks per document, so chunk boundaries are measured
MISS_PAGES = 400  # distinct pages rendered for report.html per system (more than the full suite has)
MISS_DPI = 60


def run(ctx: EvalContext) -> SuiteResult:
    from tilepilot.agents.review.runner import ReviewOptions, run_review
    from tilepilot.agents.rules import build_policy

    data = load_dataset(ctx.dataset) if ctx.dataset else load_dataset(suite_dir(eval_cache_dir(), ctx.small))
    answerer = None
    if ctx.system.oracle_p is not None:
        from tilepilot.agents.eval.rigs.review_oracle import ReviewAnswerer

        policy = build_policy("review", [str(data.rules)], target=str(data.root / next(iter(data.documents))))
        answerer = ReviewAnswerer(data, [c.value.id for c in policy.checks])
    options = ReviewOptions(paths=[str(data.root / name) for name in data.documents], rules=[str(data.rules)],
                            budget_tokens=REQUEST_BUDGET, concurrency=2, model=ctx.system.model)
    started = time.monotonic()
    report = run_review(options, out=ctx.out_dir / "run", client_factory=lambda: ctx.connect(answerer), progress=None)
    seconds = time.monotonic() - started
    findings = {Path(d.source or d.path).name: list(d.findings) for d in report.documents}
    pages = sum(d.pages for d in report.documents)
    result = score(data, findings)
    result.metrics["prompt_tokens_per_page"] = report.usage.prompt_tokens / max(pages, 1)
    result.metrics["pages_per_second"] = pages / max(seconds, 1e-9)
    result.metrics["failed_pages"] = float(sum(len(d.failed_pages) for d in report.documents))
    result.misses = _with_images(ctx, data, result.misses)
    return result


# -- matching and scoring ---------------------------------------------------------------------


class _Pair:
    """A label and the finding matched to it, or an unmatched finding: never neither."""

    def __init__(self, label: Label | None, finding: Finding | None):
        self.label, self.finding = label, finding
        side = label or finding
        if side is None:  # a bug in match(), not the user's mistake: a traceback, not a one-line error
            raise TypeError("a pair needs a label or a finding")
        self.rule, self.page = side.rule, side.page


def match(labels: list[Label], findings: list[Finding]) -> list[_Pair]:
    """One-to-one: page labels first (same rule and page, best box first), then page-null labels."""
    free = list(findings)
    pairs: list[_Pair] = []
    for label in sorted(labels, key=lambda lb: lb.page is None):
        same = [f for f in free if f.rule == label.rule and (label.page is None or f.page == label.page)]
        if label.page is None:
            same.sort(key=lambda f: f.page is not None)  # a document-level finding first
        elif label.bbox:
            box = label.bbox
            same.sort(key=lambda f: -iou(box, f.bbox) if f.bbox else 0.0)
        chosen = same[0] if same else None
        if chosen is not None:
            free.remove(chosen)
        pairs.append(_Pair(label, chosen))
    return pairs + [_Pair(None, f) for f in free]


def _metrics(pairs: list[_Pair]) -> dict[str, float]:
    tp = sum(1 for p in pairs if p.label and p.finding)
    fp = sum(1 for p in pairs if p.finding and not p.label)
    fn = sum(1 for p in pairs if p.label and not p.finding)
    matched = [p.finding for p in pairs if p.label and p.finding]
    unchecked = [p for p in pairs if p.label and not (p.finding and p.finding.source == "check")]
    return {
        **prf(tp, fp, fn),
        "quotes_verified": share(f.verified != "unverified" for f in matched if f.page is not None),
        "boxes_iou50": share(bool(p.finding and p.finding.bbox and iou(p.label.bbox, p.finding.bbox) >= 0.5)
                             for p in pairs if p.label and p.label.bbox),
        "model_recall": share(bool(p.finding) for p in unchecked),
        "labels": float(tp + fn),
        "findings": float(tp + fp),
    }


def score(data: Dataset, findings: dict[str, list[Finding]]) -> SuiteResult:
    pairs: list[tuple[str, _Pair]] = []
    for document in data.documents:
        labels = [lb for lb in data.labels if lb.document == document]
        pairs += [(document, p) for p in match(labels, findings.get(document, []))]
    groups: dict[str, list[_Pair]] = defaultdict(list)
    for document, pair in pairs:
        rule, page = pair.rule, pair.page
        kind = (pair.label.kind if pair.label and pair.label.kind else data.kind(document, page))
        groups[f"rule={rule}"].append(pair)
        groups[f"kind={kind}"].append(pair)
    misses = [_miss(document, p) for document, p in pairs if not (p.label and p.finding)]
    return SuiteResult(suite=NAME, system="", metrics=_metrics([p for _, p in pairs]),
                       breakdown={g: _metrics(ps) for g, ps in sorted(groups.items())}, misses=misses)


def _miss(document: str, pair: _Pair) -> Miss:
    if pair.label:
        lb = pair.label
        where = f"p{lb.page}" if lb.page else "document"
        return Miss(case=f"{document} {where} {lb.rule}", detail=f"missed: expected {lb.rule} on {where}: {lb.quote or '(missing clause)'}",
                    expected_box=lb.bbox)
    f = pair.finding
    assert f is not None
    where = f"p{f.page}" if f.page else "document"
    return Miss(case=f"{document} {where} {f.rule}", detail=f"false positive ({f.source}): {f.rule} on {where}: {f.quote[:120]}",
                predicted_box=f.bbox)


def _with_images(ctx: EvalContext, data: Dataset, misses: list[Miss]) -> list[Miss]:
    """Render each page with a miss once, with the misses' boxes scaled from points to its pixels."""
    folder = ctx.out_dir / "misses"
    folder.mkdir(exist_ok=True)
    scale = MISS_DPI / 72
    rendered: dict[tuple[str, int], str] = {}
    out = []
    for miss in misses:
        document, where = miss.case.split(" ")[:2]
        page = int(where[1:]) if where != "document" else 0
        if not page or (len(rendered) >= MISS_PAGES and (document, page) not in rendered):
            out.append(miss)
            continue
        if (document, page) not in rendered:
            with open_pdf(to_pdf(data.root / document)) as doc:
                width_pt, height_pt = doc.page_size(page)
                image = doc.render(page, max(1, round(width_pt * scale)), max(1, round(height_pt * scale)))
            path = folder / f"{Path(document).stem}-p{page:04d}.png"
            image.save(path)
            rendered[(document, page)] = ctx.relative(path)
        scaled = {k: tuple(v * scale for v in box) if (box := getattr(miss, k)) else None for k in ("expected_box", "predicted_box")}
        out.append(miss.model_copy(update={"image": rendered[(document, page)], **scaled}))
    return out
