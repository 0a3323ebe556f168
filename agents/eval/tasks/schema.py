"""The task file: a strict pydantic schema (unknown keys are errors, never ignored).

A task names how to prepare and launch a real application (``setup``), what the user asks
(``instruction``), optional task rules, how the outcome is judged (``check``: evaluators that read the
app's files, widgets, commands or a local endpoint; never the model's own ``done``), an optional
``reference`` (the steps the accessibility-tree reference agent takes) and ``limits``.

Strings may use ``{work}`` (the task's own fresh folder, where ``setup.files`` are written) and
``{url}`` (the local HTTP server of ``setup.serve``).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

CHECK_KINDS = ("file", "widget", "command", "http")
STEP_KINDS = ("click", "type", "key", "hotkey", "wait", "done", "fail")
DEFAULT_SCREENS = ((1280, 800), (1024, 768))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WidgetQuery(_Strict):
    """A widget in the accessibility tree: its role, its accessible name (exact) and, for widgets with
    no name (or several alike), its position among the matches in tree order (0 = the first)."""

    role: str = Field(min_length=1, description="AT-SPI role name, e.g. 'push button', 'menu item', 'text'")
    name: str | None = None  # accessible name, compared with whitespace runs collapsed
    index: int = Field(default=0, ge=0)  # the Nth match in tree order
    note: str | None = None  # say why a widget is named by position: the app gives it no accessible name

    def describe(self) -> str:
        named = f" {self.name!r}" if self.name is not None else f" #{self.index}"
        return f"{self.role}{named}"


class Setup(_Strict):
    files: dict[str, str] = {}  # path under {work} -> text content
    commands: list[list[str]] = []  # run in {work} before the launch, each must exit 0
    launch: list[str] = Field(min_length=1)  # the app's command line
    ready: WidgetQuery  # the launch is ready when this widget shows up in the accessibility tree
    ready_seconds: float = Field(default=20.0, gt=0, le=120)  # how long to wait for ready
    serve: bool = False  # a local HTTP server on {url} serves {work} and records what is posted to it


class FileCheck(_Strict):
    path: str  # under {work}, or absolute
    equals: str | None = None  # the whole text
    contains: str | None = None  # a part of the text
    normalise: bool = False  # compare with whitespace runs collapsed and ends stripped
    absent: bool = False  # the file must not exist (nothing was written)

    @model_validator(mode="after")
    def _one_expectation(self) -> "FileCheck":
        if sum((self.equals is not None, self.contains is not None, self.absent)) != 1:
            raise ValueError("give exactly one of equals, contains or absent: true")
        return self


class WidgetCheck(WidgetQuery):
    value: str | None = None  # the widget's text (Text interface) or current value (Value interface)
    states: list[str] = []  # states that must be set, e.g. [checked]
    absent: bool = False  # no such widget is showing


class CommandCheck(_Strict):
    run: list[str] = Field(min_length=1)  # run in {work}
    exit_code: int = 0  # the exit status that passes


class HttpCheck(_Strict):
    path: str = Field(pattern=r"^/")  # the request path the submission must reach
    received: dict[str, str]  # form fields (urlencoded or JSON) the submission must carry


class Check(_Strict):
    """One evaluator; exactly one of its keys is set."""

    file: FileCheck | None = None
    widget: WidgetCheck | None = None
    command: CommandCheck | None = None
    http: HttpCheck | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> "Check":
        if sum(getattr(self, kind) is not None for kind in CHECK_KINDS) != 1:
            raise ValueError(f"a check is exactly one evaluator: {', '.join(CHECK_KINDS)}")
        return self

    @property
    def kind(self) -> str:
        return next(kind for kind in CHECK_KINDS if getattr(self, kind) is not None)


class Step(_Strict):
    """One reference step; exactly one of its keys is set."""

    click: WidgetQuery | None = None
    type: str | None = None  # text to type
    key: str | None = None  # one key, e.g. Return
    hotkey: list[str] | None = None  # keys pressed together, e.g. [ctrl, s]
    wait: float | None = Field(default=None, gt=0, le=60)  # seconds
    done: str | None = None  # end the run as done, with this summary
    fail: str | None = None  # end the run as failed (refusing), with this reason

    @model_validator(mode="after")
    def _exactly_one(self) -> "Step":
        if sum(getattr(self, kind) is not None for kind in STEP_KINDS) != 1:
            raise ValueError(f"a reference step is exactly one of: {', '.join(STEP_KINDS)}")
        return self

    @property
    def kind(self) -> str:
        return next(kind for kind in STEP_KINDS if getattr(self, kind) is not None)


class Limits(_Strict):
    steps: int = Field(default=15, ge=1, le=200)  # the agent's --max-steps
    seconds: float = Field(default=180.0, gt=0, le=3600)  # the agent's --max-runtime


class TaskFile(_Strict):
    id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # default: the file's name
    app: str = Field(min_length=1)  # what the table calls the app, e.g. mousepad
    small: bool = False  # part of the small variant (what the tests run)
    screens: list[tuple[int, int]] = list(DEFAULT_SCREENS)  # each task runs at every size listed
    setup: Setup  # prepare and launch the app
    instruction: str = Field(min_length=1)  # what the user asks the agent
    rules: str | None = None  # a rule file's text (front matter and body) for this task only
    refuse: bool = False  # success also needs the agent to refuse (the run ends with fail)
    confirm: bool = False  # success also needs a confirmation the rules asked for, approved
    check: list[Check] = Field(min_length=1)  # every check must pass (never the model's own done)
    reference: list[Step] = []  # what --model oracle does, step by step; ends in done or fail
    limits: Limits = Limits()  # per run
