"""``tilepilot desktop TASK`` and ``tilepilot replay RUN``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal, Optional

import typer
from rich.console import Console

from tilepilot.agents.cli_model import (
    BaseUrlOption, JsonOption, MaxRuntimeOption, ModelOption, OutOption, ResumeOption, RulesOption, check_budget,
    check_resume, rules_paths,
)
from tilepilot.agents.desktop.state import ALL_KINDS, ConfirmRequest, StepRecord
from tilepilot.agents.errors import UsageError
from tilepilot.agents.runs import DeadlineReached
from tilepilot.model_runtime.profiles import IMAGE_BUDGETS, ImageBudget

err = Console(stderr=True)

EXIT_CODES = {"done": 0, "fail": 1, "max_steps": 1, "denied": 1, "stopped": 1, "stuck": 1, "deadline": DeadlineReached.exit_code}


def _kinds(option: Optional[str]) -> tuple[str, ...]:
    if not option:
        return ALL_KINDS
    kinds = tuple(k.strip().lower() for k in option.split(",") if k.strip())
    unknown = [k for k in kinds if k not in ALL_KINDS]
    if unknown or not kinds:
        raise UsageError(f"--actions {option!r}: unknown kind(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(ALL_KINDS)}")
    return kinds


def _budget(option: str) -> ImageBudget | Literal["auto"]:
    if option.strip().lower() == "auto":
        return "auto"
    try:
        value = int(option)
    except ValueError:
        raise UsageError(f"--budget must be auto or one of {', '.join(map(str, IMAGE_BUDGETS))}, got {option!r}") from None
    return check_budget(value)


def _ask(request: ConfirmRequest) -> bool:
    err.print(request.describe(), markup=False, highlight=False)
    return typer.confirm("Execute it?", default=False, err=True)


def _print_step(step: StepRecord) -> None:
    verdict = step.guard.verdict if step.guard else "-"
    action = step.action.kind if step.action else "-"
    where = f" screen {step.screen_xy}" if step.screen_xy else ""
    err.print(f"step {step.step}: {action}{where} guard={verdict} executed={step.executed} {step.outcome()[:120]}",
              markup=False, highlight=False)


def desktop(
    task: Optional[str] = typer.Argument(None, help="What to do on the screen, in plain words (not with --resume)."),
    rules: RulesOption = None,
    base_url: BaseUrlOption = None,
    model: ModelOption = "tiny",
    max_steps: int = typer.Option(30, "--max-steps", min=1, help="Stop after this many steps."),
    max_runtime: MaxRuntimeOption = None,
    dry_run: bool = typer.Option(False, "--dry-run", help="Decide and guard, but execute nothing."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Approve every action the rules want confirmed."),
    monitor: int = typer.Option(1, "--monitor", min=0, help="Monitor to watch and act on (1..n; 0 = all)."),
    budget: str = typer.Option("auto", "--budget", help="Screenshot budget in soft tokens (70..1120), or auto: the "
                               "smallest that keeps every screen pixel (1280x800: 560)."),
    history: int = typer.Option(4, "--history", min=1, max=8, help="Screenshots kept in the prompt."),
    actions: Optional[str] = typer.Option(None, "--actions", help="Comma list of action kinds to offer (default: all)."),
    out: OutOption = None,
    resume: ResumeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Operate the desktop by screenshot until the task is done, guarded by the rules and recorded.

    Without --max-runtime a run stops after 900 s (or the rules' limits.max_runtime_s if smaller).
    """
    from tilepilot.api_types import DesktopRequest
    from tilepilot.operations import run_desktop_request
    from tilepilot.progress import console_progress

    check_resume(resume, task, "the TASK", "TASK argument", out)
    request = DesktopRequest(task=task, rules=rules_paths(rules), model=model, base_url=list(base_url or ()),
                             max_steps=max_steps, max_runtime_s=max_runtime, dry_run=dry_run, monitor=monitor,
                             budget=_budget(budget), history=history, actions=list(_kinds(actions)),
                             out=str(out) if out else None, resume=str(resume) if resume else None)
    approve = (lambda _request: True) if yes else (_ask if sys.stdin.isatty() and not as_json else None)
    result = run_desktop_request(request, approve=approve, on_step=None if as_json else _print_step,
                                 progress=None if as_json else console_progress(err), quiet=as_json)
    if as_json:
        typer.echo(result.to_json())
    else:
        err.print(f"run folder: {result.run}", markup=False, highlight=False)
        err.print(f"{result.status}: {result.stop_reason or ''} ({len(result.steps)} steps; replay: tilepilot replay {result.run})",
                  markup=False, highlight=False)
        if result.note:
            err.print(f"[dim]{result.note}[/dim]")
    raise typer.Exit(EXIT_CODES[result.status])


def replay(
    run: Path = typer.Argument(..., help="A run folder written by `tilepilot desktop`."),
    out: Optional[Path] = typer.Option(None, "--out", help="HTML file (default RUN/replay.html)."),
) -> None:
    """Write one self-contained HTML page that replays a desktop run."""
    from tilepilot.agents.desktop.replay import write_replay

    path = write_replay(run, out)
    typer.echo(str(path))


def register(app: typer.Typer) -> None:
    app.command("desktop")(desktop)
    app.command("replay")(replay)
