"""Typed state of a desktop run: options, one record per step, and the LangGraph state.

Everything here is plain data that the LangGraph checkpoint (``checkpoint.sqlite``) and the
trajectory (``trajectory.json``) store as they are. Live objects (the X connection, the model
client, the screenshots in memory) never enter the state; they live in ``graph.DesktopContext``.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from agents.rules import ScreenText
from tools.actions import Action, ActionKind
from tools.screen import Geometry

RunStatus = Literal["done", "fail", "max_steps", "stopped", "denied", "deadline"]
Verdict = Literal["allow", "deny", "confirm"]

ALL_KINDS: tuple[str, ...] = tuple(k.value for k in ActionKind)


class DesktopOptions(BaseModel):
    """How one run behaves; the CLI fills it from its options."""

    model_config = ConfigDict(frozen=True)

    task: str = Field(min_length=1)
    rules: tuple[str, ...] = ()  # --rules, in order (the manifest keeps them for --resume)
    model: str = "tiny"
    max_steps: int = Field(30, ge=1, le=10_000)
    max_runtime_s: float = Field(900.0, gt=0)  # with the rules' limits.max_runtime_s: the smaller wins
    budget: int = 1120  # image soft tokens; one of the profile's budgets
    monitor: int = Field(1, ge=0)
    dry_run: bool = False
    history_images: int = Field(4, ge=1, le=8, description="last K screenshots sent as images")
    history_block: int = Field(2, ge=1, description="evict this many screenshots at once (prefix cache)")
    kinds: tuple[str, ...] = ALL_KINDS  # action kinds offered to the model
    temperature: float = 0.0
    max_tokens: int = Field(400, ge=32)
    settle_ms: int = Field(150, ge=0, description="wait after an action so the screen shows its effect")


class Usage(BaseModel):
    """Token figures of one model request."""

    prompt_tokens: int  # the server's count
    completion_tokens: int
    counted_prompt_tokens: int  # counted before sending (ChatModel.count_prompt_tokens)
    input_budget: int  # the profile's limit for prompt tokens
    images: int  # screenshots in the request
    attempts: int = 1


class GuardRecord(BaseModel):
    verdict: Verdict
    reason: str
    rule_file: Optional[str] = None
    rule_key: Optional[str] = None
    rule_line: Optional[int] = None
    approved: Optional[bool] = None  # for confirm: the human's (or --yes's) answer
    widget: Optional[str] = None  # the widget under the action's point, from the accessibility tree
    widget_box: Optional[tuple[float, float, float, float]] = None  # its box in screen px


class Timings(BaseModel):
    capture_ms: float = 0.0
    decide_ms: float = 0.0  # building the request + the model's latency
    model_ms: float = 0.0
    guard_ms: float = 0.0
    act_ms: float = 0.0
    total_ms: float = 0.0


class StepRecord(BaseModel):
    """Everything that happened in one observe -> decide -> guard -> act step."""

    step: int
    started_at: float
    screenshot: str  # file name inside the run folder (the image the model saw)
    geometry: Geometry  # maps that image onto the screen
    window_title: Optional[str] = None
    screen_texts: list[ScreenText] = []  # what the guard matched deny_text against
    thought: str = ""
    raw_output: str = ""
    action: Optional[Action] = None  # in model (image) pixels
    screen_action: Optional[Action] = None  # in screen pixels
    model_xy: list[tuple[int, int]] = []
    screen_xy: list[tuple[int, int]] = []
    invalid: Optional[str] = None  # why the model's answer could not be used
    guard: Optional[GuardRecord] = None
    executed: bool = False
    result: str = ""
    usage: Optional[Usage] = None
    timings: Timings = Timings()

    def outcome(self) -> str:
        """One line for the model's history and for humans."""
        if self.invalid:
            return f"invalid: {self.invalid}"
        if self.action is not None and self.action.kind in ("done", "fail"):
            return self.action.kind
        if self.guard is not None and self.guard.verdict == "deny":
            return f"denied by the guard: {self.guard.reason}"
        if self.guard is not None and self.guard.verdict == "confirm" and not self.guard.approved:
            return f"not approved: {self.guard.reason}"
        return self.result or ("executed" if self.executed else "not executed")


class DesktopState(BaseModel):
    """The LangGraph state. ``current`` is the step being built; ``steps`` the finished ones."""

    task: str
    started_at: float  # wall clock of the first start (the deadline counts from each start or resume)
    step: int = 0
    steps: list[StepRecord] = []
    current: Optional[StepRecord] = None
    focus_point: Optional[tuple[int, int]] = None  # screen point of the last click: where typing goes
    status: Optional[RunStatus] = None
    stop_reason: str = ""


class ConfirmRequest(BaseModel):
    """What the graph's interrupt asks a human: approve this action?"""

    step: int
    action: Action  # screen coordinates
    model_action: Action
    reason: str
    rule_file: Optional[str] = None
    screenshot: str


class RunResult(BaseModel):
    """What a finished (or stopped) run reports; ``--json`` prints a projection of it."""

    run: str
    status: RunStatus
    stop_reason: str = ""
    steps: list[StepRecord] = []

    def summary(self) -> dict:
        return {
            "run": self.run,
            "status": self.status,
            "steps": [
                {
                    "action": s.action.model_dump(mode="json") if s.action else None,
                    "model_xy": [list(p) for p in s.model_xy],
                    "screen_xy": [list(p) for p in s.screen_xy],
                    "guard": s.guard.verdict if s.guard else None,
                    "executed": s.executed,
                }
                for s in self.steps
            ],
        }


STATE_MODELS: tuple[type[BaseModel], ...] = (
    DesktopState, StepRecord, Usage, GuardRecord, Timings, Geometry, ConfirmRequest, ScreenText,
)
