"""Run the desktop graph to its end: checkpointing, confirmations, Ctrl-C, resume, trajectory.

:func:`run_desktop` is the library entry point (the CLI and the tests use it). It owns the
run's resources (X connections, the :class:`tilepilot.agents.runs.Run` with its checkpoint) and always
leaves a complete ``trajectory.json`` behind, whatever stops the run: done, fail, the step or
time limit, an unapproved confirmation, Ctrl-C, pyautogui's fail-safe, or an error (which is
re-raised after the trajectory is written).

A resumed run (``Run`` opened with ``resume``) continues after the last *recorded* step: a step
that a kill cut short is dropped and its screen observed afresh, because the screen may have
changed while nobody watched; nothing decided on an old screenshot is ever executed.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from langgraph.types import Command

from tilepilot.agents.desktop.graph import ActionExecutor, CaptureSource, DesktopContext, build_graph
from tilepilot.agents.desktop.screen_texts import ScreenTextProvider, desktop_texts
from tilepilot.agents.desktop.state import STATE_MODELS, ConfirmRequest, DesktopOptions, DesktopState, RunResult, StepRecord
from tilepilot.agents.desktop.trajectory import TrajectoryWriter
from tilepilot.agents.errors import USER_ERRORS
from tilepilot.agents.rules import AuditLog, Policy
from tilepilot.agents.runs import Deadline, Run
from tilepilot.model_runtime.chat_model import ChatModel
from tilepilot.tools import actions as action_models
from tilepilot.tools.extras import check as check_extra

if TYPE_CHECKING:
    from langchain_core.runnables import RunnableConfig

Approver = Callable[[ConfirmRequest], bool]
THREAD_ID = "desktop"


def _checkpoint_types() -> list[type]:
    # Only our own state models may be revived from the checkpoint (Run.checkpointer enforces it).
    return list(STATE_MODELS) + [
        getattr(action_models, name) for name in ("Click", "Move", "Drag", "Scroll", "Type", "Hotkey", "Key", "Wait", "Done", "Fail")
    ]


def effective_max_steps(options: DesktopOptions, policy: Policy) -> int:
    limit = policy.limit("max_steps")
    return min(options.max_steps, int(limit)) if limit is not None else options.max_steps


def desktop_deadline(options: DesktopOptions, policy: Policy) -> Deadline:
    return Deadline.of(options.max_runtime_s, policy.limit("max_runtime_s"))


def run_desktop(
    options: DesktopOptions,
    client: ChatModel,
    policy: Policy,
    run: Run | Path,
    *,
    display: str | None = None,
    texts: ScreenTextProvider | None = None,
    approve: Approver | None = None,
    on_step: Callable[[StepRecord], None] | None = None,
    screen: CaptureSource | None = None,
    executor: ActionExecutor | None = None,
) -> RunResult:
    """Run one task in ``run`` (a Run, new or resumed; or a folder path for a new run).

    ``approve`` answers confirmations (None: nobody can, the run stops "denied").
    """
    from tilepilot.tools.screen import Screen
    from tilepilot.tools.ui import UIExecutor

    if screen is None or executor is None:  # the real screen and pointer: one line if the extra is missing
        check_extra("desktop", "tilepilot desktop")
    with ExitStack() as stack:
        if not isinstance(run, Run):
            run = stack.enter_context(Run.open("desktop", options, out=Path(run), deadline=desktop_deadline(options, policy)))
        run.attach_client(client)
        if screen is None:
            screen = Screen(display)
            stack.callback(screen.close)
        display = getattr(screen, "display", display)
        if executor is None:
            executor = UIExecutor(display, dry_run=options.dry_run)
        if texts is None:
            texts = desktop_texts(display)
            stack.callback(texts.close)
        writer = TrajectoryWriter(run, options, client.profile.name, client.profile.input_budget, policy.prompt)
        ctx = DesktopContext(
            client=client, policy=policy, options=options, screen=screen, executor=executor, texts=texts,
            writer=writer, audit=AuditLog(writer.audit_path, agent="desktop"),
            max_steps=effective_max_steps(options, policy), deadline=run.deadline,
        )
        app = build_graph().compile(checkpointer=run.checkpointer(_checkpoint_types()))
        config = run.thread(THREAD_ID, recursion_limit=40)  # one step per stream: the graph pauses after record
        payload = _start_or_continue(app, config, options, run.resumed)
        run.progress.start("desktop", ctx.max_steps, "steps")

        def recorded(update: dict) -> None:
            steps = (update.get("record") or {}).get("steps")
            if steps:
                run.progress.update(len(steps))
                if on_step is not None:
                    on_step(steps[-1])

        try:
            while True:
                snapshot = run.drive(app, payload, config, context=ctx, pause_after=["record"], on_update=recorded)
                if not snapshot.interrupts:
                    break
                request = ConfirmRequest.model_validate(snapshot.interrupts[0].value)
                answer = bool(approve(request)) if approve is not None else False
                writer.emit("confirm", step=request.step, reason=request.reason, approved=answer, asked=approve is not None)
                payload = Command(resume=answer)
        except KeyboardInterrupt:
            return _finish(run, app, config, writer, "stopped", "interrupted by Ctrl-C")
        except USER_ERRORS as err:
            _finish(run, app, config, writer, "stopped", f"error: {err}")
            raise
        values = app.get_state(config).values
        return _finish(run, app, config, writer, values.get("status") or "stopped", values.get("stop_reason", ""))


FINAL_STATUSES = ("done", "fail", "max_steps")  # a resume has nothing left to do after these


def _start_or_continue(app, config: RunnableConfig, options: DesktopOptions, resumed: bool) -> object:
    """The first payload: a fresh state, or (resumed) None after dropping the step a kill cut short."""
    values = app.get_state(config).values if resumed else None
    if not values:
        return DesktopState(task=options.task, started_at=time.time())
    if values.get("status") not in FINAL_STATUSES:
        # As if the last recorded step had just been recorded: the graph goes on to observe.
        app.update_state(config, {"current": None, "status": None, "stop_reason": ""}, as_node="record")
    return None


def _finish(run: Run, app, config: RunnableConfig, writer: TrajectoryWriter, status: str, reason: str) -> RunResult:
    values = app.get_state(config).values
    steps = [StepRecord.model_validate(s) for s in values.get("steps", [])]
    writer.finish(status, reason, steps)  # type: ignore[arg-type]
    run.finish(status, reason, steps=len(steps))  # type: ignore[arg-type]
    return RunResult(run=str(writer.run_dir), status=status, stop_reason=reason, steps=steps)  # type: ignore[arg-type]
