"""Training examples from a desktop run: each useful step's request, rebuilt as it was sent.

A run counts when the eval harness checked it and found it a success (``eval.json``), or, where no
check exists, when the agent finished it with ``done``. Within it, a step teaches when its action
was carried out and did something: a step the guard denied, that could not be parsed, that was
not approved or that changed nothing on the screen is left out (the model should not learn it).

The request is rebuilt with the agent's own functions (``tilepilot.agents.desktop.history``) from the
trajectory, the recorded rules prompt and the saved screenshots, which are the very JPEG bytes
the model received at the grid it was sized for.
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from tilepilot.agents.desktop.history import build_messages, system_prompt
from tilepilot.agents.desktop.state import StepRecord
from tilepilot.agents.desktop.trajectory import Trajectory, load_trajectory
from tilepilot.agents.export.dataset import Example, ExportError, SourceSummary
from tilepilot.agents.runs import EVENTS_NAME, read_events, read_verdict


def desktop_examples(run: Path) -> tuple[list[Example], SourceSummary]:
    run = Path(run)
    trajectory = load_trajectory(run)
    if "policy_prompt" not in trajectory.model_fields_set:
        raise ExportError(f"{run}: recorded by a tilepilot that did not keep the rules prompt; "
                          "its requests cannot be rebuilt exactly (run the task again)")
    verdict = read_verdict(run)
    if verdict is not None and not verdict.success:
        return [], SourceSummary(run=str(run), agent="desktop", examples=0, note=f"left out: eval {verdict.suite} miss")
    if verdict is None and trajectory.status != "done":
        return [], SourceSummary(run=str(run), agent="desktop", examples=0,
                                 note=f"left out: finished {trajectory.status or 'unfinished'}, not done")
    for step in trajectory.steps:  # a damaged folder is refused whole, even where a left-out step lost its file
        _screenshot(run, step)
    counted = {e["step"]: e["usage"]["prompt_tokens"] for e in read_events(run / EVENTS_NAME, "step") if e.get("usage")}
    opened: dict[Path, Image.Image] = {}  # each screenshot decoded once per run, shared by the steps that show it
    examples = [step_example(run, trajectory, i, counted.get(step.step), opened)
                for i, step in enumerate(trajectory.steps) if teaches(step, last=i == len(trajectory.steps) - 1)]
    why = f"eval {verdict.suite}: success" if verdict is not None else "done"
    skipped = len(trajectory.steps) - len(examples)
    note = why + (f"; {skipped} step(s) left out (denied, invalid or no effect)" if skipped else "")
    return examples, SourceSummary(run=str(run), agent="desktop", examples=len(examples), note=note)


def teaches(step: StepRecord, last: bool) -> bool:
    """A step worth learning from a successful run: a usable action that was carried out and had an
    effect, or the answer that ended it (``done``; or ``fail`` where refusing was the success)."""
    if step.action is None or step.invalid or step.usage is None:
        return False
    if step.guard is not None and (step.guard.verdict == "deny" or (step.guard.verdict == "confirm" and not step.guard.approved)):
        return False
    if step.action.kind in ("done", "fail"):
        return last
    return step.executed and step.screen_changed is not False


def step_example(run: Path, trajectory: Trajectory, index: int, prompt_tokens: int | None = None,
                 opened: dict[Path, Image.Image] | None = None) -> Example:
    """Step ``index``'s request, rebuilt exactly as it was sent, and its answer."""
    step = trajectory.steps[index]
    assert step.usage is not None and step.action is not None
    start = step.step + 1 - step.usage.images  # the window the request carried (history.window_start)
    earlier = trajectory.steps[:index]
    shown = [s for s in earlier if s.step >= start] + [step]
    files = [_screenshot(run, s) for s in shown]
    opened = {} if opened is None else opened
    for path in files:
        if path not in opened:
            opened[path] = _open(path)
    images = {s.step: opened[path] for s, path in zip(shown, files)}
    system = system_prompt(trajectory.policy_prompt, step.frame, trajectory.options.kinds)
    messages = build_messages(system, trajectory.task, earlier, images, images[step.step], start)
    target = step.raw_output or json.dumps({"thought": step.thought, "action": step.action.model_dump(mode="json")})
    return Example(agent="desktop", source=f"{run}#step={step.step}", messages=messages, target=target,
                   image_budget=step.budget, prompt_tokens=prompt_tokens if prompt_tokens is not None else step.usage.prompt_tokens,
                   image_files=dict(enumerate(files)))


def _screenshot(run: Path, step: StepRecord) -> Path:
    path = run / step.screenshot
    if not path.is_file():
        raise ExportError(f"{run}: the screenshot of step {step.step} ({step.screenshot}) is missing; "
                          "the run folder is incomplete")
    return path


def _open(path: Path) -> Image.Image:
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except OSError:
        raise ExportError(f"{path}: not a readable screenshot; the run folder is damaged") from None
