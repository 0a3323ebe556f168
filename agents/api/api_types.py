"""The typed requests and results of tilepilot's Python API (``tilepilot.review`` and friends).

A request model holds what one call of an operation takes; the API functions, the CLI and the MCP
server's input schemas all come from these, so the three never disagree on an option. A result's
serialisation (:meth:`to_json`) is exactly what the CLI prints with ``--json``. Fields marked
``exclude=True`` are for people (the random-weights note, where the outputs went) and are not part
of that machine output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from tilepilot.agents.review.findings import Finding
from tilepilot.tools.convert import INPUTS_DESCRIPTION

ReviewMode = Literal["map-reduce", "rolling"]
ListenTask = Literal["transcribe", "summarize", "ask"]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServerChoice(_Request):
    """Which model and where: the options every model-backed operation shares."""

    model: str = Field("tiny", description="Model profile: tiny (random weights, for tests), gemma-4-12b, or a checkpoint folder.")
    base_url: list[str] = Field([], description="OpenAI-compatible server(s) of the model; empty: the managed local server.")


class RunChoice(_Request):
    """Where a run writes, and how long it may take."""

    out: Optional[str] = Field(None, description="Run folder to create (default ./runs/<agent>-<UTC time>).")
    resume: Optional[str] = Field(None, description="Run folder of a stopped run to continue with its own inputs and options.")
    max_runtime_s: Optional[float] = Field(None, gt=0, description="Stop after this many seconds (resumable).")


class ReviewRequest(ServerChoice, RunChoice):
    paths: list[str] = Field([], description=f"Files or folders to review (empty with resume): {INPUTS_DESCRIPTION}.")
    rules: list[str] = Field([], description="Rule files or folders, in order (later ones win).")
    no_model: bool = Field(False, description="Only the deterministic rule checks: no server needed.")
    pages: Optional[str] = Field(None, description="Page range, e.g. 1-50,60.")
    mode: ReviewMode = Field("map-reduce", description="map-reduce (parallel chunks) or rolling (in order, carrying notes).")
    budget_tokens: Optional[int] = Field(None, ge=1, description="Prompt tokens per request (default: the model's input budget).")
    concurrency: int = Field(2, ge=1, le=64, description="Chunks in flight at once (map-reduce).")
    prefer: Literal["fidelity", "tokens"] = Field("fidelity", description="fidelity: text-layer pages go as text; tokens: as images where legible and cheaper.")
    legibility: Optional[str] = Field(None, description="A legibility.json from `tilepilot eval legibility` for prefer=tokens.")
    password: Optional[str] = Field(None, description="Password of encrypted PDFs (never stored in the run folder); a "
                                    "password-protected Word or ODF file is refused.")


class DesktopRequest(ServerChoice, RunChoice):
    task: Optional[str] = Field(None, description="What to do on the screen, in plain words (empty with resume).")
    rules: list[str] = Field([], description="Rule files or folders, in order (later ones win).")
    max_steps: int = Field(30, ge=1, description="Stop after this many steps.")
    dry_run: bool = Field(False, description="Decide and guard, but execute nothing.")
    monitor: int = Field(1, ge=0, description="Monitor to watch and act on (1..n; 0 = all).")
    budget: Literal["auto", 70, 140, 280, 560, 1120] = Field("auto", description="Screenshot budget in soft tokens, or auto.")
    history: int = Field(4, ge=1, le=8, description="Screenshots kept in the prompt.")
    actions: list[str] = Field([], description="Action kinds offered to the model (empty: all).")


class ListenRequest(ServerChoice, RunChoice):
    files: list[str] = Field([], description="Audio files (wav, flac, ogg, mp3, m4a, ...), any length (empty with resume).")
    task: Optional[ListenTask] = Field(None, description="transcribe (default), summarize or ask (needs question).")
    question: Optional[str] = Field(None, description="The question for task ask (implies it).")
    rules: list[str] = Field([], description="Rule files or folders, in order (later ones win).")
    workers: int = Field(4, ge=1, description="Clips sent to the server at once.")


# -- results -------------------------------------------------------------------------------------

class _Result(BaseModel):
    def to_json(self) -> str:
        """What the CLI prints with ``--json``."""
        return self.model_dump_json()


class DocumentFindings(BaseModel):
    source: str = Field(description="The file you gave (a .docx, a scan, a PDF).")
    path: str = Field(description="The PDF reviewed, whose pages the findings cite: the file itself for a PDF, "
                      "else its cached conversion.")
    pages: int
    failed_pages: list[int]
    findings: list[Finding]


class ReviewUsage(BaseModel):
    requests: int
    prompt_tokens: int
    max_prompt_tokens: int


class ReviewResult(_Result):
    run: str = Field(description="The run folder: findings.json, report.md, report.html, events.jsonl.")
    documents: list[DocumentFindings]
    usage: ReviewUsage
    note: SkipJsonSchema[Optional[str]] = Field(None, exclude=True)  # e.g. "random weights: the findings are noise"

    @property
    def report_html(self) -> Path:
        return Path(self.run) / "report.html"

    @property
    def report_md(self) -> Path:
        return Path(self.run) / "report.md"

    @property
    def findings(self) -> list[Finding]:
        return [f for d in self.documents for f in d.findings]


class DesktopStep(BaseModel):
    action: Optional[dict]
    model_xy: list[list[int]]
    screen_xy: list[list[int]]
    guard: Optional[str]
    executed: bool


class DesktopResult(_Result):
    run: str = Field(description="The run folder: trajectory, screenshots, replay (tilepilot replay RUN).")
    status: str = Field(description="done, fail, max_steps, denied, stopped, stuck or deadline.")
    stop_reason: str = ""
    steps: list[DesktopStep]
    note: SkipJsonSchema[Optional[str]] = Field(None, exclude=True)


class ClipText(BaseModel):
    start_s: float
    end_s: float
    text: str
    prompt_tokens: int


class TranscriptResult(_Result):
    """One input of a listen run; the CLI prints one such object per line."""

    run: str
    duration_s: float
    clips: list[ClipText]
    text: str
    summary: Optional[str] = None
    answer: Optional[str] = None
    outputs: SkipJsonSchema[str] = Field("", exclude=True)  # the folder holding transcript.txt and transcript.json
    question: SkipJsonSchema[Optional[str]] = Field(None, exclude=True)
    note: SkipJsonSchema[Optional[str]] = Field(None, exclude=True)

    def to_json(self) -> str:
        return self.model_dump_json(exclude_none=True)


class ListenResult(_Result):
    run: str
    inputs: list[TranscriptResult]

    def to_json(self) -> str:
        """One line per input, as the CLI prints them."""
        return "\n".join(item.to_json() for item in self.inputs)


class RuleFileCheck(BaseModel):
    path: str
    ok: bool
    summary: str = ""  # what a valid file sets, e.g. "applies to desktop; 2 confirmations"
    problems: list[str] = []  # "file:line: message" each


class RulesCheckResult(_Result):
    files: list[RuleFileCheck]
    problems: list[str] = Field(description="Every problem as file:line: message (empty: all files are valid).")

    @property
    def ok(self) -> bool:
        return not self.problems


class ServeStatus(_Result):
    """Whether the model server answers: the managed local one, or what a ``base_url`` server offers."""

    model: str
    base_url: Optional[str] = None
    running: bool
    healthy: bool
    pid: Optional[int] = None
    capabilities: Optional[dict] = Field(default=None, description="What the server offers (with base_url): token counting, "
                                                 "image budgets, structured output, max context, the served id.")
