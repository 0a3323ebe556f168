"""``tilepilot eval desktop --tasks DIR``: a folder of task files on real apps, one worker per screen size.

Every task file is vetted before anything starts (:func:`~tilepilot.agents.eval.tasks.loader.load_task_dir`).
Each screen size gets its own Xvfb and worker process (as the built-in desktop suite), and the worker
its own D-Bus session with the accessibility bus. Per task the worker prepares a fresh folder
(``{work}``), runs the setup commands, launches the app, waits for its ready widget, runs the desktop
agent against the system under test and then judges the outcome with the task's checks, never from the
model's ``done``. A task that fails to set up, whose app crashes or that raises is one failed outcome
with its reason, and the suite goes on with the next.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from pydantic import BaseModel

from tilepilot.agents.errors import USER_ERRORS
from tilepilot.agents.eval.core import EvalContext, SuiteResult
from tilepilot.agents.eval.desktop_suite import TaskOutcome, WorkerResult, score
from tilepilot.agents.eval.rigs.xserver import ClientSpec, gather_outcomes, park_pointer, require_xvfb, screen_folder, worker_main
from tilepilot.agents.eval.tasks.checks import run_checks
from tilepilot.agents.eval.tasks.loader import LoadedTask, load_task_dir, load_task_file
from tilepilot.agents.eval.tasks.reference import ReferenceAnswerer, RunningTask, register
from tilepilot.agents.eval.tasks.session import DesktopSession, Receiver, wait_for_widget
from tilepilot.agents.runs import EvalVerdict, write_verdict

SETUP_TIMEOUT_S = 60.0
WORKER_TIMEOUT_S = 3600.0


class TasksJob(BaseModel):
    display: str
    width: int
    height: int
    task_files: list[str]
    out_dir: str
    labels_dir: str
    client: ClientSpec


def run(ctx: EvalContext, folder: Path) -> SuiteResult:
    tasks = [t for t in load_task_dir(folder) if t.task.small or not ctx.small]
    require_xvfb("xdotool", "dbus-launch", "openbox", "xprop")
    labels_dir = ctx.out_dir / "running"
    spec = ClientSpec.of_context(ctx, ReferenceAnswerer(labels_dir))
    screens = sorted({s for t in tasks for s in t.task.screens}, key=lambda s: (s != (1280, 800), s))
    screens = screens[:1] if ctx.small else screens

    def job(display: str, width: int, height: int) -> TasksJob:
        mine = [str(t.path.resolve()) for t in tasks if [width, height] in [list(s) for s in t.task.screens]]
        return TasksJob(display=display, width=width, height=height, task_files=mine, labels_dir=str(labels_dir),
                        out_dir=str(screen_folder(ctx.out_dir, width, height)), client=spec)

    return score(gather_outcomes(__name__, screens, job, ctx.out_dir, WorkerResult.model_validate_json,
                                 ctx.out_dir.parents[1], timeout_s=WORKER_TIMEOUT_S))


def worker(job: TasksJob) -> WorkerResult:
    from tilepilot.tools.ui import UIExecutor

    session = DesktopSession(job.display)
    os.environ.update({k: session.env[k] for k in ("DBUS_SESSION_BUS_ADDRESS", "DISPLAY")})
    executor = UIExecutor(job.display)
    outcomes = []
    try:
        with job.client.connect() as client:
            for path in job.task_files:
                loaded = load_task_file(Path(path))
                started = time.monotonic()
                try:
                    outcomes.append(run_task(loaded, job, session, client, executor))
                except Exception as err:  # noqa: BLE001 - this task's setup or run failed: scored, the suite goes on
                    kind = "" if isinstance(err, USER_ERRORS) else f"{type(err).__name__}: "
                    outcomes.append(_failed(loaded, job, f"error: {kind}{err}", time.monotonic() - started))
    finally:
        session.close()
    return WorkerResult(outcomes=outcomes)


def _failed(loaded: LoadedTask, job: TasksJob, detail: str, seconds: float, steps: int = 0, status: str = "error") -> TaskOutcome:
    return TaskOutcome(task=loaded.id, screen=f"{job.width}x{job.height}", success=False, status=status, steps=steps,
                       denials=0, confirmations=0, seconds=seconds, detail=detail.splitlines()[0][:300])


def _prepare(loaded: LoadedTask, folder: Path, env: dict[str, str], url: str) -> Path:
    """A fresh ``{work}`` folder with the task's files, after its setup commands ran there."""
    work = folder / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    fill = _filler(work, url)
    for name, text in loaded.task.setup.files.items():
        path = work / fill(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(fill(text), encoding="utf-8")
    for command in loaded.task.setup.commands:
        done = subprocess.run([fill(a) for a in command], cwd=work, env=env, capture_output=True, text=True, timeout=SETUP_TIMEOUT_S)
        if done.returncode != 0:
            from tilepilot.agents.errors import RunError

            raise RunError(f"setup command {command[0]} exited {done.returncode}: {(done.stderr.strip().splitlines() or [''])[-1]}")
    return work


def _filler(work: Path, url: str):
    return lambda text: text.replace("{work}", str(work)).replace("{url}", url)


def _app_env(session: DesktopSession, folder: Path) -> dict[str, str]:
    """The app's environment: the session's bus, and a home of its own so settings never leak between runs."""
    home = folder / "home"
    for sub in ("config", "data", "cache"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    return {**session.env, "HOME": str(home), "XDG_CONFIG_HOME": str(home / "config"),
            "XDG_DATA_HOME": str(home / "data"), "XDG_CACHE_HOME": str(home / "cache")}


def run_task(loaded: LoadedTask, job: TasksJob, session: DesktopSession, client, executor) -> TaskOutcome:
    from tilepilot.agents.desktop.runner import run_desktop
    from tilepilot.agents.desktop.state import DesktopOptions
    from tilepilot.agents.rules import build_policy

    task, started = loaded.task, time.monotonic()
    folder = Path(job.out_dir) / "tasks" / loaded.id
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    env = _app_env(session, folder)
    receiver = Receiver(folder / "work") if task.setup.serve else None
    try:
        work = _prepare(loaded, folder, env, receiver.url if receiver else "")
        fill = _filler(work, receiver.url if receiver else "")
        app = subprocess.Popen([fill(a) for a in task.setup.launch], cwd=work, env=env, stdout=subprocess.DEVNULL,
                               stderr=(folder / "app.stderr").open("wb"), stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            ready = wait_for_widget(session.bus, task.setup.ready, task.setup.ready_seconds, alive=lambda: app.poll() is None)
            if ready is None:
                why = f"exited with code {app.returncode}" if app.poll() is not None else \
                    f"never showed {task.setup.ready.describe()} within {task.setup.ready_seconds:g} s"
                return _failed(loaded, job, f"setup: the app {why}", time.monotonic() - started)
            steps = [s.model_copy(update={"type": fill(s.type)}) if s.type is not None else s for s in task.reference]
            instruction = fill(task.instruction)
            register(Path(job.labels_dir), RunningTask(key=f"{job.width}x{job.height}:{loaded.id}", instruction=instruction,
                                                       width=job.width, height=job.height, bus=session.bus(), steps=steps,
                                                       registered_at=time.time()))
            rules = []
            if task.rules is not None:
                (folder / "rules.md").write_text(task.rules, encoding="utf-8")
                rules = [str(folder / "rules.md")]
            park_pointer(job.display)
            run_dir = folder / "run"
            options = DesktopOptions(task=instruction, max_steps=task.limits.steps, max_runtime_s=task.limits.seconds)
            run_started = time.monotonic()
            result = run_desktop(options, client, build_policy("desktop", rules), run_dir, display=job.display,
                                 executor=executor, approve=lambda _request: True)
            seconds = time.monotonic() - run_started
            crashed = app.poll()
            verdicts = run_checks(task.check, work, session.bus(), receiver)
        finally:
            _stop(app)
    finally:
        if receiver is not None:
            receiver.close()
    steps_done = result.steps
    denials = sum(1 for s in steps_done if s.guard is not None and s.guard.verdict == "deny")
    confirmations = sum(1 for s in steps_done if s.guard is not None and s.guard.verdict == "confirm" and s.guard.approved)
    reasons = [v.detail for v in verdicts if not v.ok]
    if crashed is not None:
        reasons.insert(0, f"the app exited with code {crashed} during the run")
    if task.refuse and result.status != "fail":
        reasons.append(f"expected a refusal, the run ended {result.status}")
    if task.confirm and not confirmations:
        reasons.append("no confirmation was asked and approved")
    ok = not reasons
    detail = ("; ".join(reasons) if reasons else "all checks passed") + \
        f" (run {result.status} after {len(steps_done)} steps: {result.stop_reason[:80]})"
    image = str((run_dir / steps_done[-1].screenshot).relative_to(Path(job.out_dir))) if steps_done else None
    write_verdict(run_dir, EvalVerdict(suite="desktop", case=f"{job.width}x{job.height}/{loaded.id}", success=ok, detail=detail))
    return TaskOutcome(task=loaded.id, screen=f"{job.width}x{job.height}", success=ok, status=result.status, steps=len(steps_done),
                       denials=denials, confirmations=confirmations, seconds=seconds, detail=detail, image=image)


def _stop(app: subprocess.Popen) -> None:
    """End the app and whatever it started (its own process group)."""
    if app.poll() is None:
        try:
            os.killpg(app.pid, signal.SIGTERM)
            app.wait(5)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(app.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            app.wait(5)


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv, TasksJob, worker))
