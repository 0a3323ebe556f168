"""Run the desktop graph to its end: checkpointing, confirmations, Ctrl-C, trajectory.

:func:`run_desktop` is the library entry point (the CLI and the tests use it). It owns the
run's resources (X connections, sqlite checkpoint) and always leaves a complete
``trajectory.json`` behind, whatever stops the run: done, fail, the step or time limit, an
unapproved confirmation, Ctrl-C, pyautogui's fail-safe, or an error (which is re-raised after
the trajectory is written).
"""

from __future__ import annotations

import sqlite3
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Callable

from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.types import Command

from agents.desktop.graph import ActionExecutor, CaptureSource, ChatModel, DesktopRuntime, build_graph
from agents.desktop.screen_texts import ScreenTextProvider, X11WindowTitles
from agents.desktop.state import STATE_MODELS, ConfirmRequest, DesktopOptions, DesktopState, RunResult, StepRecord
from agents.desktop.trajectory import TrajectoryWriter
from agents.errors import USER_ERRORS
from agents.rules import AuditLog, Policy
from agents.runs import CHECKPOINT_NAME
from tools import actions as action_models

Approver = Callable[[ConfirmRequest], bool]
THREAD_ID = "desktop"


def _serializer() -> JsonPlusSerializer:
    # Only our own state models may be revived from the checkpoint.
    models = list(STATE_MODELS) + [
        getattr(action_models, name) for name in ("Click", "Move", "Drag", "Scroll", "Type", "Hotkey", "Key", "Wait", "Done", "Fail")
    ]
    return JsonPlusSerializer(allowed_msgpack_modules=[(m.__module__, m.__name__) for m in models])


def effective_max_steps(options: DesktopOptions, policy: Policy) -> int:
    limit = policy.limit("max_steps")
    return min(options.max_steps, int(limit)) if limit is not None else options.max_steps


def run_desktop(
    options: DesktopOptions,
    client: ChatModel,
    policy: Policy,
    run_dir: Path,
    *,
    display: str | None = None,
    texts: ScreenTextProvider | None = None,
    approve: Approver | None = None,
    on_step: Callable[[StepRecord], None] | None = None,
    screen: CaptureSource | None = None,
    executor: ActionExecutor | None = None,
) -> RunResult:
    """Run one task. ``approve`` answers confirmations (None: nobody can, the run stops "denied")."""
    from tools.screen import Screen
    from tools.ui import UIExecutor

    run_dir = Path(run_dir)
    with ExitStack() as stack:
        if screen is None:
            screen = Screen(display)
            stack.callback(screen.close)
        display = getattr(screen, "display", display)
        if executor is None:
            executor = UIExecutor(display, dry_run=options.dry_run)
        if texts is None:
            x11_texts = X11WindowTitles(display)
            stack.callback(x11_texts.close)
            texts = x11_texts
        writer = TrajectoryWriter(run_dir, options, client.profile.name, client.profile.input_budget)
        runtime = DesktopRuntime(
            client=client, policy=policy, options=options, screen=screen, executor=executor, texts=texts,
            writer=writer, audit=AuditLog(writer.audit_path, agent="desktop"),
            max_steps=effective_max_steps(options, policy),
        )
        conn = sqlite3.connect(run_dir / CHECKPOINT_NAME, check_same_thread=False)
        stack.callback(conn.close)
        app = build_graph(runtime).compile(checkpointer=SqliteSaver(conn, serde=_serializer()))
        config = {"configurable": {"thread_id": THREAD_ID}, "recursion_limit": runtime.max_steps * 6 + 20}
        payload: object = DesktopState(task=options.task, started_at=time.time())
        try:
            while True:
                for update in app.stream(payload, config, stream_mode="updates"):
                    recorded = (update.get("record") or {}).get("steps")
                    if recorded and on_step is not None:
                        on_step(recorded[-1])
                snapshot = app.get_state(config)
                if not snapshot.interrupts:
                    break
                request = ConfirmRequest.model_validate(snapshot.interrupts[0].value)
                answer = bool(approve(request)) if approve is not None else False
                writer.emit("confirm", step=request.step, reason=request.reason, approved=answer,
                            asked=approve is not None)
                payload = Command(resume=answer)
        except KeyboardInterrupt:
            return _finish(app, config, writer, "stopped", "interrupted by Ctrl-C")
        except USER_ERRORS as err:
            _finish(app, config, writer, "stopped", f"error: {err}")
            raise
        values = app.get_state(config).values
        return _finish(app, config, writer, values.get("status") or "stopped", values.get("stop_reason", ""))


def _finish(app, config: dict, writer: TrajectoryWriter, status: str, reason: str) -> RunResult:
    values = app.get_state(config).values
    steps = [StepRecord.model_validate(s) for s in values.get("steps", [])]
    writer.finish(status, reason, steps)  # type: ignore[arg-type]
    return RunResult(run=str(writer.run_dir), status=status, stop_reason=reason, steps=steps)  # type: ignore[arg-type]
