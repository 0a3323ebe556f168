"""``tilepilot eval grounding``: does a click land on the widget it was asked for, per image budget and screen size?

Real Tk widgets (:mod:`tilepilot.agents.eval.rigs.apps.grounding_app`), and GTK 3 ones where PyGObject is present
(:mod:`tilepilot.agents.eval.rigs.apps.gtk_app`), fill the screen of an Xvfb at three sizes; the toolkit reports where
each widget is (Tk's ``winfo_root*`` and list rows' ``bbox``, GTK's window origin plus
``translate_coordinates`` and allocation). For every target
and image budget the real desktop agent runs one step of ``click <the target>``: capture, budget
resize, request, schema validation, image -> screen mapping, guard and a real pyautogui click.
A *hit* is an executed click whose screen point lies inside the widget's box and which the app
itself saw land on that widget.

Metrics: ``hit_rate`` overall, per budget, per screen size, per toolkit, and budget x screen (``breakdown``).
One Xvfb per screen size, driven by one worker process (pyautogui binds to one display per process).
"""

from __future__ import annotations

import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path

from pydantic import BaseModel

from tilepilot.agents.eval.rigs.apps.client import AppProcess, Target, gtk_python
from tilepilot.agents.eval.core import EvalContext, Miss, SuiteResult, share
from tilepilot.agents.eval.rigs.oracle import OracleReply
from tilepilot.agents.eval.rigs.screen_oracle import (
    SAME_SCREEN, DesktopRequest, RegistryAnswerer, ScreenRegistry, distance, fingerprint, reply, to_image_frame,
)
from tilepilot.agents.eval.rigs.xserver import ClientSpec, gather_outcomes, park_pointer, require_xvfb, screen_folder, worker_main
from tilepilot.agents.runs import EvalVerdict, write_verdict
from tilepilot.tools.actions import Click

NAME = "grounding"
APPS = {"tk": "tilepilot.agents.eval.rigs.apps.grounding_app", "gtk": "tilepilot.agents.eval.rigs.apps.gtk_app"}
BUDGETS = (70, 140, 280, 560, 1120)
# (screen size, (toolkit, scene) ...): about 150 targets in all; GTK scenes run where PyGObject is present.
FULL = (((1024, 768), (("tk", 0), ("tk", 1))), ((1280, 800), (("tk", 2), ("gtk", 4))), ((1920, 1080), (("tk", 3),)))
SMALL = (((1024, 768), (("tk", 0), ("gtk", 5))), ((1920, 1080), (("tk", 3),)))
SMALL_BUDGETS = (70, 1120)
SMALL_TARGETS_PER_SCREEN = 6


class ScreenLabels(BaseModel):
    """One captured screen: its fingerprint and the toolkit's box of every target (by instruction)."""

    key: str
    width: int
    height: int
    fingerprint: list[int]
    targets: dict[str, Target]  # instruction ("click the Save button") -> box; Target.text = target name


class GroundingJob(BaseModel):
    display: str
    width: int
    height: int
    scenes: list[tuple[str, int]]  # (toolkit, scene number)
    gtk_python: str | None = None
    max_targets: int | None
    budgets: list[int]
    out_dir: str
    labels_dir: str
    client: ClientSpec
    keep_runs: bool = False


class Outcome(BaseModel):
    case: str  # toolkit+scene/target, e.g. "gtk4/button:save"
    toolkit: str
    screen: str  # "1280x800"
    budget: int
    hit: bool
    detail: str
    image: str | None = None  # screenshot the model saw, relative to the job's out_dir
    image_size: tuple[int, int] | None = None
    box: tuple[float, float, float, float]  # the target in screen pixels
    model_point: tuple[int, int] | None = None


class WorkerResult(BaseModel):
    outcomes: list[Outcome]


def instruction(target: Target) -> str:
    return f"click {target.text}"


# -- the reference answerer (runs in the suite's process, inside the oracle server) -------------


class GroundingAnswerer(RegistryAnswerer):
    """Recognises the screen by its fingerprint and the target by the task line; clicks its centre."""

    def __init__(self, labels_dir: Path) -> None:
        super().__init__(labels_dir, ScreenLabels)

    def find(self, request: DesktopRequest) -> ScreenLabels | None:
        candidates = [(distance(e.fingerprint, request.fingerprint), e) for e in self.registry.entries.values()
                      if isinstance(e, ScreenLabels) and request.task in e.targets]
        best = min(candidates, key=lambda c: c[0], default=None)
        return best[1] if best is not None and best[0] <= SAME_SCREEN else None

    def answer(self, request: DesktopRequest, labels: BaseModel) -> OracleReply:
        assert isinstance(labels, ScreenLabels)
        screen, image = (labels.width, labels.height), (request.image_width, request.image_height)
        target = labels.targets[request.task]
        others = sorted((t for t in labels.targets.values() if t is not target), key=lambda t: t.text)
        decoy = min(others, key=lambda t: abs(t.center[0] - target.center[0]) + abs(t.center[1] - target.center[1]))

        def click_at(center: tuple[float, float]) -> Click:
            x, y = request.point_in_model_frame(*to_image_frame(*center, screen, image))
            return Click(x=x, y=y)

        right, wrong = click_at(target.center), click_at(decoy.center)
        key = f"{labels.key}/{target.text}@{request.budget}"
        return OracleReply(key=key, right=reply(right, f"the target is at {right.x},{right.y}"),
                           wrong=reply(wrong, f"the target is at {wrong.x},{wrong.y}"))


# -- the suite (parent process) ---------------------------------------------------------------


def run(ctx: EvalContext) -> SuiteResult:
    plan, budgets = (SMALL, SMALL_BUDGETS) if ctx.small else (FULL, BUDGETS)
    require_xvfb("xdotool")  # before a model server is started for nothing
    labels_dir = ctx.out_dir / "labels"
    spec = ClientSpec.of_context(ctx, GroundingAnswerer(labels_dir))
    gtk = gtk_python()
    scenes = {size: [(toolkit, n) for toolkit, n in planned if toolkit == "tk" or gtk is not None] for size, planned in plan}

    def job(display: str, width: int, height: int) -> GroundingJob:
        return GroundingJob(display=display, width=width, height=height, scenes=scenes[(width, height)], gtk_python=gtk,
                            max_targets=SMALL_TARGETS_PER_SCREEN if ctx.small else None, budgets=list(budgets),
                            out_dir=str(screen_folder(ctx.out_dir, width, height)), labels_dir=str(labels_dir), client=spec,
                            keep_runs=ctx.keep_runs)

    return score(gather_outcomes(__name__, list(scenes), job, ctx.out_dir, WorkerResult.model_validate_json,
                                 ctx.out_dir.parents[1]))


def score(outcomes: list[Outcome]) -> SuiteResult:
    groups: dict[str, list[bool]] = defaultdict(list)
    for o in outcomes:
        for key in (f"budget={o.budget}", f"screen={o.screen}", f"toolkit={o.toolkit}", f"budget={o.budget},screen={o.screen}"):
            groups[key].append(o.hit)
    misses = []
    for o in outcomes:
        if o.hit:
            continue
        expected = predicted = None
        if o.image_size:
            sx, sy = o.image_size[0] / int(o.screen.split("x")[0]), o.image_size[1] / int(o.screen.split("x")[1])
            expected = (o.box[0] * sx, o.box[1] * sy, o.box[2] * sx, o.box[3] * sy)
            if o.model_point:
                px, py = float(o.model_point[0]), float(o.model_point[1])
                predicted = (px, py, px, py)
        misses.append(Miss(case=f"{o.screen}/{o.case}@{o.budget}", detail=o.detail, image=o.image,
                           expected_box=expected, predicted_box=predicted))
    metrics = {"hit_rate": share(o.hit for o in outcomes), "targets": float(len({(o.screen, o.case) for o in outcomes})),
               "cases": float(len(outcomes))}
    metrics.update({f"hit_rate@{k}": share(v) for k, v in groups.items() if "," not in k})
    breakdown = {k: {"hit_rate": share(v), "cases": float(len(v))} for k, v in groups.items()}
    return SuiteResult(suite=NAME, system="", metrics=metrics, breakdown=breakdown, misses=misses)


# -- the worker (one process per screen size) -------------------------------------------------


def pick_targets(targets: dict[str, Target], width: int, height: int, limit: int | None) -> list[tuple[str, Target]]:
    """Targets wholly on screen; with a limit, a spread over the widget kinds (round robin)."""
    inside = [(n, t) for n, t in targets.items() if t.x >= 0 and t.y >= 0 and t.x + t.width <= width and t.y + t.height <= height]
    if limit is None:
        return inside
    by_kind: dict[str, list[tuple[str, Target]]] = defaultdict(list)
    for name, target in inside:
        by_kind[name.split(":")[0]].append((name, target))
    picked: list[tuple[str, Target]] = []
    while len(picked) < min(limit, len(inside)):
        for kind in sorted(by_kind):
            if by_kind[kind] and len(picked) < limit:
                picked.append(by_kind[kind].pop(0))
    return picked


def worker(job: GroundingJob) -> WorkerResult:
    from tilepilot.agents.desktop.runner import run_desktop
    from tilepilot.agents.desktop.state import DesktopOptions
    from tilepilot.agents.rules import build_policy
    from tilepilot.tools.screen import Screen

    out = Path(job.out_dir)
    registry = ScreenRegistry(Path(job.labels_dir), ScreenLabels)
    policy = build_policy("desktop", [])
    client = job.client.connect()
    outcomes: list[Outcome] = []
    screen_name = f"{job.width}x{job.height}"
    with client, Screen(job.display) as screen:
        for toolkit, number in job.scenes:
            scene = f"{toolkit}{number}"
            python = job.gtk_python if toolkit == "gtk" and job.gtk_python else sys.executable
            with AppProcess(APPS[toolkit], ["--scene", str(number), "--screen", screen_name], job.display, out, python) as app:
                assert app.ready is not None
                chosen = pick_targets(app.ready.targets, job.width, job.height, job.max_targets)
                key = f"{screen_name}-{scene}"
                labels = ScreenLabels(
                    key=key, width=job.width, height=job.height, fingerprint=fingerprint(screen.capture_monitor(1).image),
                    targets={instruction(t): t.model_copy(update={"text": n}) for n, t in chosen},
                )
                registry.add(key, labels)
                for name, target in chosen:
                    for budget in job.budgets:
                        run_dir = out / "runs" / f"{scene}-{name.replace(':', '-')}-{budget}"
                        outcome = _one_case(run_desktop, DesktopOptions, policy, client, app, job, scene,
                                            name, target, budget, run_dir)
                        write_verdict(run_dir, EvalVerdict(suite=NAME, case=f"{outcome.screen}/{outcome.case}@{budget}",
                                                           success=outcome.hit, detail=outcome.detail))
                        if outcome.hit and not job.keep_runs:  # only misses are shown (report.html); hundreds of
                            shutil.rmtree(run_dir, ignore_errors=True)  # hit runs would only fill the disk
                            outcome.image = None
                        outcomes.append(outcome)
    return WorkerResult(outcomes=outcomes)


def _one_case(run_desktop, options_type, policy, client, app: AppProcess, job: GroundingJob, scene: str,
              name: str, target: Target, budget: int, run_dir: Path) -> Outcome:
    case, out = f"{scene}/{name}", Path(job.out_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    park_pointer(job.display)
    before = len(app.layout().state["presses"])
    # One step: the click is the whole task (settle time is for the next observation, which never comes).
    options = options_type(task=instruction(target), max_steps=1, budget=budget, settle_ms=0)
    result = run_desktop(options, client, policy, run_dir, display=job.display)
    clicked = bool(result.steps and result.steps[0].executed)
    presses = app.layout_when(lambda lay: len(lay.state["presses"]) > before or not clicked).state["presses"][before:]
    common: dict = dict(case=case, toolkit=scene.rstrip("0123456789"), screen=f"{job.width}x{job.height}", budget=budget, box=target.box())
    step = result.steps[0] if result.steps else None
    if step is None:
        return Outcome(hit=False, detail=f"no step ({result.stop_reason})", **common)
    common.update(image=str((run_dir / step.screenshot).relative_to(out)),
                  image_size=(step.geometry.image_width, step.geometry.image_height))
    if step.action is None or step.action.kind != "click" or not step.screen_xy:
        return Outcome(hit=False, detail=f"no click: {step.invalid or step.outcome()}"[:300], **common)
    x, y = step.screen_xy[0]
    seen = presses[-1]["target"] if presses else None
    hit = bool(step.executed and target.contains(x, y) and seen == name)
    detail = f"expected {name} in {target.x},{target.y} {target.width}x{target.height}; clicked screen ({x}, {y}), app saw {seen}"
    return Outcome(hit=hit, detail=detail, model_point=step.model_xy[0] if step.model_xy else None, **common)


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv, GroundingJob, worker))
