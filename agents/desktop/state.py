"""Typed state of a desktop run: options, one record per step, and the LangGraph state.

Everything here is plain data that the LangGraph checkpoint (``checkpoint.sqlite``) and the
trajectory (``trajectory.json``) store as they are. Live objects (the X connection, the model
client, the screenshots in memory) never enter the state; they live in ``graph.DesktopContext``.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tilepilot.agents.desktop.frame import Convention, ModelFrame
from tilepilot.agents.rules import ScreenText
from tilepilot.tools.actions import Action, ActionKind
from tilepilot.tools.screen import Geometry

RunStatus = Literal["done", "fail", "max_steps", "stopped", "denied", "deadline", "stuck"]
Verdict = Literal["allow", "deny", "confirm"]

NO_CHANGE = "no visible change on the screen"  # the outcome note of a step that changed nothing

ALL_KINDS: tuple[str, ...] = tuple(k.value for k in ActionKind)


class DesktopOptions(BaseModel):
    """How one run behaves; the CLI fills it from its options."""

    model_config = ConfigDict(frozen=True)

    task: str = Field(min_length=1)
    rules: tuple[str, ...] = ()  # --rules, in order (the manifest keeps them for --resume)
    model: str = "tiny"
    max_steps: int = Field(default=30, ge=1, le=10_000)
    max_runtime_s: float = Field(default=900.0, gt=0)  # with the rules' limits.max_runtime_s: the smaller wins
    # Image soft tokens: one of the profile's budgets, or "auto": per screenshot the smallest
    # budget that does not shrink the screen (tilepilot.model_runtime.budget.native_budget).
    budget: int | Literal["auto"] = "auto"
    monitor: int = Field(default=1, ge=0)
    dry_run: bool = False
    history_images: int = Field(default=4, ge=1, le=8, description="last K screenshots sent as images")
    # Evict this many screenshots at once, so the requests in between extend each other and hit
    # vLLM's prefix cache. Default K - 1: over 20 steps at 1280x800 the hit rate is 0.70 with
    # 2.85 screenshots a request (evicting 2 of K=4: 0.56 with 3.3; evicting 4: 0.75 with 2.5).
    history_block: Optional[int] = Field(default=None, ge=1, description="evict this many screenshots at once (prefix cache)")
    kinds: tuple[str, ...] = ALL_KINDS  # action kinds offered to the model; done and fail always are
    temperature: float = 0.0
    max_tokens: int = Field(default=400, ge=32)
    settle_ms: int = Field(default=150, ge=0, description="wait after an action so the screen shows its effect")
    # Then wait until two screenshots SETTLE_POLL_MS apart match, at most this long: real apps redraw
    # late and work in the background (mousepad's Replace All runs behind a spinner).
    settle_max_ms: int = Field(default=3000, ge=0, description="wait at most this long after an action for the screen to stop changing")


    @field_validator("kinds")
    @classmethod
    def _can_always_end(cls, kinds: tuple[str, ...]) -> tuple[str, ...]:
        # --actions limits what the model may do on the screen, never whether it may stop.
        return tuple(dict.fromkeys([*kinds, *(k for k in ("done", "fail") if k not in kinds)]))

    @property
    def eviction_block(self) -> int:
        return self.history_block or max(1, self.history_images - 1)


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
    budget: Optional[int] = None  # the image budget it was sent at (--budget, or what "auto" chose)
    coordinates: Convention = "pixels"  # the model's convention (its profile's): how action/model_xy read
    window_title: Optional[str] = None
    screen_texts: list[ScreenText] = []  # what the guard matched deny_text against
    thought: str = ""
    raw_output: str = ""
    action: Optional[Action] = None  # in the model's frame (screenshot pixels or 0..1000)
    screen_action: Optional[Action] = None  # in screen pixels
    model_xy: list[tuple[int, int]] = []
    screen_xy: list[tuple[int, int]] = []
    invalid: Optional[str] = None  # why the model's answer could not be used
    # The typed text went (or may go) into a password field: the record holds it masked
    # (tilepilot.agents.desktop.secrets), and only the live run keeps the real text to type it.
    secret: bool = False
    guard: Optional[GuardRecord] = None
    executed: bool = False
    result: str = ""
    # Did the screen change after this executed action (tilepilot.agents.desktop.verify)? None: not
    # checked (nothing executed, or the run ended before the next screenshot).
    screen_changed: Optional[bool] = None
    usage: Optional[Usage] = None
    timings: Timings = Timings()

    @property
    def frame(self) -> ModelFrame:
        return ModelFrame(geometry=self.geometry, convention=self.coordinates)

    def outcome(self) -> str:
        """One line for the model's history and for humans, every coordinate in the model's frame."""
        if self.invalid:  # already in the model's frame
            return f"invalid: {self.invalid}"
        if self.action is not None and self.action.kind in ("done", "fail"):
            return self.action.kind
        # The guard and the executor speak screen pixels; the model reads its own frame.
        describe = self.frame.describe
        if self.guard is not None and self.guard.verdict == "deny":
            return f"denied by the guard: {describe(self.guard.reason)}"
        if self.guard is not None and self.guard.verdict == "confirm" and not self.guard.approved:
            return f"not approved: {describe(self.guard.reason)}"
        done = describe(self.result) if self.result else ("executed" if self.executed else "not executed")
        return f"{done}; {NO_CHANGE}" if self.screen_changed is False else done


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
    sends: str = ""  # the keys or the text it will send (masked for a password field)

    def describe(self) -> str:
        """The question in one line: what, where, what it sends, and why it needs approval."""
        where = ", ".join(f"({x}, {y})" for x, y in self.action.points())
        what = " ".join(p for p in (f"step {self.step}: {self.action.kind}", where, f"sends {self.sends}" if self.sends else "") if p)
        return f"{what} needs approval: {self.reason}"


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
