"""``tilepilot desktop TASK`` and ``tilepilot replay RUN``."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Literal, Optional

import typer
from rich.console import Console

from tilepilot.agents.cli_model import (
    BaseUrlOption, JsonOption, MaxRuntimeOption, ModelOption, OutOption, ResumeOption, RulesOption, check_budget,
    check_resume, progress_sink, rules_paths,
)
from tilepilot.agents.desktop.state import ALL_KINDS, ConfirmRequest, DesktopOptions, StepRecord
from tilepilot.agents.errors import UsageError
from tilepilot.agents.runs import DeadlineReached
from tilepilot.model_runtime.profiles import IMAGE_BUDGETS

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


def _budget(option: str) -> int | Literal["auto"]:
    if option.strip().lower() == "auto":
        return "auto"
    try:
        value = int(option)
    except ValueError:
        raise UsageError(f"--budget must be auto or one of {', '.join(map(str, IMAGE_BUDGETS))}, got {option!r}") from None
    return check_budget(value)


def _ask(request: ConfirmRequest) -> bool:
    where = ", ".join(f"({x}, {y})" for x, y in request.action.points())
    err.print(f"[bold]step {request.step}[/bold]: {request.action.kind} {where} needs approval: {request.reason}")
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
    from tilepilot.agents.backend import connect, random_weights_note
    from tilepilot.agents.desktop.runner import desktop_deadline, run_desktop
    from tilepilot.agents.rules import build_policy
    from tilepilot.agents.runs import Run, read_options
    from tilepilot.tools.screen import require_display

    check_resume(resume, task, "the TASK", "TASK argument", out)
    if resume is not None:  # the run's own task and options; only the server, the time limit and --yes may change
        options = read_options("desktop", resume, DesktopOptions)
        if max_runtime is not None:
            options = options.model_copy(update={"max_runtime_s": max_runtime})
    else:
        options = DesktopOptions(
            task=task, rules=tuple(rules_paths(rules)), model=model, max_steps=max_steps, budget=_budget(budget),
            monitor=monitor, dry_run=dry_run, history_images=history, kinds=_kinds(actions),
            **({"max_runtime_s": max_runtime} if max_runtime is not None else {}),
        )
    display = require_display()
    policy = build_policy("desktop", list(options.rules))
    approve = (lambda _request: True) if yes else (_ask if sys.stdin.isatty() and not as_json else None)
    # python-xlib prints connection warnings on stdout; keep stdout for the --json document.
    with connect(options.model, base_url, quiet=as_json) as client, contextlib.redirect_stdout(sys.stderr):
        with Run.open("desktop", options, out=out, resume=resume, deadline=desktop_deadline(options, policy),
                      progress=progress_sink(as_json, err)) as run:
            if not as_json:
                err.print(f"run folder: {run.dir}" + (" (resumed)" if run.resumed else ""))
            result = run_desktop(options, client, policy, run, display=display, approve=approve,
                                 on_step=None if as_json else _print_step)
    if as_json:
        typer.echo(json.dumps(result.summary(), ensure_ascii=False))
    else:
        err.print(f"{result.status}: {result.stop_reason or ''} ({len(result.steps)} steps; replay: tilepilot replay {result.run})",
                  markup=False, highlight=False)
        note = random_weights_note(client.profile)
        if note:
            err.print(f"[dim]{note}[/dim]")
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
