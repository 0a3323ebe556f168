"""The run folder of a desktop run: screenshots, ``trajectory.json``, events, audit log.

::

    RUN/
      run.json              the agent and its options (tilepilot.agents.runs.Run; read by --resume)
      checkpoint.sqlite     LangGraph checkpoint (newest step only)
      events.jsonl          run_started / run_resumed, step, verified, confirm, popup_closed, run_finished
      audit.jsonl           one guard decision per line (tilepilot.agents.rules.AuditLog)
      steps/0000.jpg ...    the screenshot each step's model saw (its coordinates refer to it)
      trajectory.json       options + every finished step (StepRecord) + status; rewritten
                            atomically after every step, so a killed run keeps all finished steps
      replay.html           written by ``tilepilot replay RUN``
"""

from __future__ import annotations

import time
from pathlib import Path

from PIL import Image
from pydantic import BaseModel

from tilepilot.agents.desktop.state import DesktopOptions, RunStatus, StepRecord
from tilepilot.agents.errors import RunError
from tilepilot.agents.runs import Run, write_atomic
from tilepilot.model_runtime.payloads import image_bytes

TRAJECTORY_NAME = "trajectory.json"
AUDIT_NAME = "audit.jsonl"
STEPS_DIR = "steps"
JPEG_QUALITY = 90


class Trajectory(BaseModel):
    agent: str = "desktop"
    task: str
    options: DesktopOptions
    model: str
    input_budget: int
    # The rules' guidance as the system prompt carried it (tilepilot.agents.desktop.history.system_prompt):
    # with the steps and screenshots it rebuilds every request exactly (tilepilot export).
    policy_prompt: str = ""
    started_at: float
    finished_at: float | None = None
    status: RunStatus | None = None
    stop_reason: str = ""
    steps: list[StepRecord] = []


class TrajectoryWriter:
    """Writes one run's files; every file is complete whenever a reader looks.

    The run's events go to ``run.events``; the lifecycle events (start, resume, finish) are the
    Run's own. On a resumed run the trajectory written so far is read back and continued.
    """

    def __init__(self, run: Run, options: DesktopOptions, model: str, input_budget: int, policy_prompt: str = "") -> None:
        self.run_dir = run.dir
        self.events = run.events
        (self.run_dir / STEPS_DIR).mkdir(parents=True, exist_ok=True)
        previous = load_trajectory(self.run_dir) if run.resumed and (self.run_dir / TRAJECTORY_NAME).is_file() else None
        self.data = previous.model_copy(update={"status": None, "stop_reason": "", "finished_at": None}) if previous else \
            Trajectory(task=options.task, options=options, model=model, input_budget=input_budget,
                       policy_prompt=policy_prompt, started_at=time.time())
        self._flush()

    @property
    def audit_path(self) -> Path:
        return self.run_dir / AUDIT_NAME

    @staticmethod
    def screenshot_name(step: int) -> str:
        return f"{STEPS_DIR}/{step:04d}.jpg"

    def save_screenshot(self, step: int, image: Image.Image) -> str:
        name = self.screenshot_name(step)
        # The very bytes sent to the model (encoded once, cached per image by the payload layer).
        write_atomic(self.run_dir / name, image_bytes(image, "jpeg", JPEG_QUALITY))
        return name

    def add_step(self, record: StepRecord) -> None:
        # A step re-done after a resume replaces the record a kill left in the trajectory.
        self.data.steps = sorted([s for s in self.data.steps if s.step != record.step] + [record], key=lambda s: s.step)
        self.events.emit("step", **record.model_dump(mode="json", exclude={"raw_output"}))
        self._flush()

    def verified(self, record: StepRecord, change: dict) -> None:
        """Store a finished step's screen check (tilepilot.agents.desktop.verify) and log it."""
        self.data.steps = [record if s.step == record.step else s for s in self.data.steps]
        self.events.emit("verified", step=record.step, **change)
        self._flush()

    def emit(self, kind: str, **fields: object) -> None:
        self.events.emit(kind, **fields)

    def finish(self, status: RunStatus, stop_reason: str, steps: list[StepRecord] | None = None) -> Trajectory:
        if steps is not None:
            self.data.steps = list(steps)
        self.data.status, self.data.stop_reason, self.data.finished_at = status, stop_reason, time.time()
        self._flush()
        return self.data

    def _flush(self) -> None:
        write_atomic(self.run_dir / TRAJECTORY_NAME, self.data.model_dump_json(indent=1))


def load_trajectory(run_dir: Path) -> Trajectory:
    path = Path(run_dir) / TRAJECTORY_NAME
    if not path.is_file():
        raise RunError(f"{run_dir}: no {TRAJECTORY_NAME}; pass a folder written by `tilepilot desktop`")
    try:
        return Trajectory.model_validate_json(path.read_text(encoding="utf-8"))
    except ValueError as err:
        first = str(err).splitlines()[0]
        raise RunError(f"{path}: not a readable trajectory ({first}); was it written by this tilepilot version?") from None
