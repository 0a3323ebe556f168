"""The reference agent for real apps: it answers each step of a task file's ``reference`` by finding
its target in the accessibility tree *at that moment* and clicking the centre of the widget's box,
mapped into the frame of the screenshot it was sent.

It is an answerer behind the oracle's OpenAI-compatible server (``--model oracle[:p]``), so its
answers go through the same request, frame mapping, guard and executor as any model's: on a task
whose reference is right it scores 1.0 unless tilepilot is in the way. The suite's worker registers
each running task (its instruction, screen, accessibility bus and reference steps, ``{work}`` filled
in) in a folder; the answerer recognises a request by its task line and its screenshot's aspect.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from tilepilot.agents.eval.rigs.oracle import OracleReply
from tilepilot.agents.eval.rigs.screen_oracle import DesktopRequest, RegistryAnswerer, action_in_image, reply
from tilepilot.agents.eval.tasks.schema import Step
from tilepilot.agents.eval.tasks.session import wait_for_widget
from tilepilot.tools.actions import Action, Click, Done, Fail, Hotkey, Key, Type, Wait

ASPECT_TOLERANCE = 0.1
FIND_TIMEOUT_S = 5.0  # a menu or dialog may still be drawing when the request arrives


class RunningTask(BaseModel):
    """What the worker registers for the answerer while a task runs."""

    key: str  # "1280x800:mousepad-write"
    instruction: str
    width: int
    height: int
    bus: str | None
    steps: list[Step]
    registered_at: float  # time.time(): of two tasks with the same instruction, the later one is running


class ReferenceAnswerer(RegistryAnswerer):
    def __init__(self, folder: Path) -> None:
        super().__init__(folder, RunningTask)

    def find(self, request: DesktopRequest) -> RunningTask | None:
        if request.step == 0:
            self.registry.reload()  # a run starts: its task may have been registered since the last read
        found = [entry for entry in self.registry.entries.values()
                 if isinstance(entry, RunningTask) and entry.instruction == request.task
                 and abs(entry.width / entry.height - request.image_width / request.image_height) < ASPECT_TOLERANCE]
        return max(found, key=lambda entry: entry.registered_at, default=None)

    def answer(self, request: DesktopRequest, labels: BaseModel) -> OracleReply | None:
        assert isinstance(labels, RunningTask)
        action, why = self.action(labels, request)
        return OracleReply(key=f"task:{labels.key}", right=reply(request.in_model_frame(action), why),
                           wrong=reply(Done(result="the task is done"), "it looks done"))

    def action(self, task: RunningTask, request: DesktopRequest) -> tuple[Action, str]:
        """The step's action in the image's pixels, and a thought naming the step."""
        if request.step >= len(task.steps):
            return Fail(reason="the reference has no more steps"), "out of steps"
        step = task.steps[request.step]
        why = f"reference step {request.step}: {step.kind}"
        if step.click is not None:
            widget = wait_for_widget(lambda: task.bus, step.click, FIND_TIMEOUT_S)
            if widget is None:
                return Fail(reason=f"{step.click.describe()} is not on screen"), why
            x0, y0, x1, y1 = widget.bbox
            centre = Click(x=(x0 + x1) // 2, y=(y0 + y1) // 2)
            return action_in_image(centre, (task.width, task.height), (request.image_width, request.image_height)), \
                f"{why} {step.click.describe()}"
        if step.type is not None:
            return Type(text=step.type), why
        if step.key is not None:
            return Key(key=step.key), why
        if step.hotkey is not None:
            return Hotkey(keys=step.hotkey), why
        if step.wait is not None:
            return Wait(ms=int(step.wait * 1000)), why
        if step.done is not None:
            return Done(result=step.done), why
        return Fail(reason=step.fail or ""), why


def register(folder: Path, entry: RunningTask) -> None:
    from tilepilot.agents.eval.rigs.screen_oracle import ScreenRegistry

    ScreenRegistry(folder, RunningTask).add(entry.key, entry)
