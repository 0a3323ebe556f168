"""The run folder of a desktop run: screenshots, ``trajectory.json``, events, audit log.

::

    RUN/
      checkpoint.sqlite     LangGraph checkpoint (agents.runs convention)
      events.jsonl          one event per line: run_started, step, confirm, run_finished
      audit.jsonl           one guard decision per line (agents.rules.AuditLog)
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

from agents.desktop.state import DesktopOptions, RunStatus, StepRecord
from agents.errors import RunError
from agents.runs import EVENTS_NAME, EventLog, write_atomic
from model_runtime.payloads import image_bytes

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
    started_at: float
    finished_at: float | None = None
    status: RunStatus | None = None
    stop_reason: str = ""
    steps: list[StepRecord] = []


class TrajectoryWriter:
    """Writes one run's files; every file is complete whenever a reader looks."""

    def __init__(self, run_dir: Path, options: DesktopOptions, model: str, input_budget: int) -> None:
        self.run_dir = Path(run_dir)
        (self.run_dir / STEPS_DIR).mkdir(parents=True, exist_ok=True)
        self.events = EventLog(self.run_dir / EVENTS_NAME)
        self.data = Trajectory(
            task=options.task, options=options, model=model, input_budget=input_budget, started_at=time.time()
        )
        self.events.emit("run_started", task=options.task, options=options.model_dump(mode="json"), model=model)
        self._flush()

    @property
    def audit_path(self) -> Path:
        return self.run_dir / AUDIT_NAME

    def save_screenshot(self, step: int, image: Image.Image) -> str:
        name = f"{STEPS_DIR}/{step:04d}.jpg"
        # The very bytes sent to the model (encoded once, cached per image by the payload layer).
        write_atomic(self.run_dir / name, image_bytes(image, "jpeg", JPEG_QUALITY))
        return name

    def add_step(self, record: StepRecord) -> None:
        self.data.steps = [s for s in self.data.steps if s.step != record.step] + [record]
        self.events.emit("step", **record.model_dump(mode="json", exclude={"raw_output"}))
        self._flush()

    def emit(self, kind: str, **fields: object) -> None:
        self.events.emit(kind, **fields)

    def finish(self, status: RunStatus, stop_reason: str, steps: list[StepRecord] | None = None) -> Trajectory:
        if steps is not None:
            self.data.steps = list(steps)
        self.data.status, self.data.stop_reason, self.data.finished_at = status, stop_reason, time.time()
        self._flush()
        self.events.emit("run_finished", status=status, stop_reason=stop_reason, steps=len(self.data.steps))
        self.events.close()
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
