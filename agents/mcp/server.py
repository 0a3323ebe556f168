"""The MCP server: tilepilot's typed API as tools, run folders as resources.

- Each tool's input schema is its request model's fields (:mod:`tilepilot.api_types`), and its
  structured result is the API result, the same JSON the CLI prints with ``--json``.
- The work runs in a worker thread. Its progress goes out as MCP progress notifications. A
  cancelled request sets the run's cancel event: the run stops the way a time limit stops it,
  checkpointed, and the same tool called with ``resume`` set to the run folder continues it.
- The run folder is announced in the first progress notification, before the work starts (so a client that cancels
  knows what to resume), and its files come back as resource links (``tilepilot://runs/...``).
- Desktop tasks are destructive. A confirmation the guard asks for becomes an elicitation. Only an
  explicit accept executes the action: a decline, a cancel, a failed elicitation or a client that
  cannot elicit leaves it unexecuted. No tool argument relaxes the rules: the shipped rules always
  apply and caller rule files only add to them.
- The caller is not trusted. Every path argument must lead inside the roots (:mod:`.roots`), and a
  run folder is served back only while it lies inside them or in the server's runs folder. Pages
  go only to the model servers :mod:`.servers` allows, and the API key only to the configured one.
"""

from __future__ import annotations

import inspect
import json
import secrets
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import quote

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from mcp_types import CallToolResult, EmbeddedResource, ResourceLink, TextContent, TextResourceContents, ToolAnnotations
from pydantic import BaseModel, Field

from tilepilot.agents.errors import USER_ERRORS
from tilepilot.agents.mcp.roots import Boundary, boundary_for
from tilepilot.agents.mcp.servers import ModelServers
from tilepilot.api_types import (
    DesktopRequest, DesktopResult, ListenRequest, ListenResult, ReviewRequest, ReviewResult, RulesCheckResult,
    ServeStatus,
)
from tilepilot.progress import ProgressEvent

R = TypeVar("R")
URI_ROOT = "tilepilot://runs"
MIME = {".md": "text/markdown", ".json": "application/json", ".jsonl": "application/jsonl", ".html": "text/html",
        ".txt": "text/plain"}
# What a run folder holds that a client may read (the checkpoint and screenshots stay on disk).
READABLE = tuple(MIME)
# Sent inline besides its link (a desktop trajectory can be long: links only).
MAIN_OUTPUT = {"review": "report.md", "listen": "transcript.txt"}


class Approval(BaseModel):
    """What the user answers when the desktop guard asks."""

    execute: bool = Field(description="Execute this action on the screen?")


class RunFolders:
    """The run folders this server wrote or resumed: the only folders its resources read."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._known: dict[str, Path] = {}
        self._lock = threading.Lock()

    def new(self, agent: str) -> Path:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        return self.root / f"{agent}-{stamp}-{secrets.token_hex(3)}"

    def add(self, folder: Path) -> None:
        with self._lock:
            self._known[folder.name] = folder.resolve()

    def file(self, boundary: Boundary, run: str, *parts: str) -> Path:
        folder = self.folder(boundary, run)
        path = folder.joinpath(*parts)
        if not readable(folder, path):
            raise ResourceError(f"{run}/{'/'.join(parts)}: no such output in that run")
        return path

    def folder(self, boundary: Boundary, run: str) -> Path:
        """A run folder this server's tools wrote, while it lies inside this call's roots or the runs folder."""
        with self._lock:
            folder = self._known.get(run)
        if folder is None:
            raise ResourceError(f"unknown run {run!r}: this server reads only the runs its tools wrote")
        if not boundary.holds(folder, runs_too=True):
            raise ResourceError(f"run {run!r} is outside the roots now: {boundary.describe()}")
        return folder

    def links(self, folder: Path) -> list[ResourceLink]:
        """The run folder itself (its listing), then each output a client may read."""
        files = [p for p in sorted(folder.rglob("*")) if readable(folder, p)
                 and len(p.relative_to(folder).parts) <= 2 and not p.name.startswith(".")]
        listing = ResourceLink(name=f"{folder.name}/", uri=f"{URI_ROOT}/{quote(folder.name)}", mime_type="application/json",
                               description=f"the run folder {folder}: its readable outputs")
        return [listing, *(ResourceLink(name=p.relative_to(folder).as_posix(), uri=file_uri(folder, p),
                                        mime_type=MIME[p.suffix], size=p.stat().st_size) for p in files)]

    def listing(self, boundary: Boundary, run: str) -> str:
        folder = self.folder(boundary, run)
        return json.dumps({"run": str(folder), "files": [{"name": link.name, "uri": str(link.uri), "size": link.size}
                                                         for link in self.links(folder)[1:]]})


def readable(folder: Path, path: Path) -> bool:
    """An output a client may read: a file of that kind that stays in the run folder once resolved (no symlink out)."""
    return path.suffix in READABLE and path.is_file() and path.resolve().is_relative_to(folder)


def file_uri(folder: Path, path: Path) -> str:
    return f"{URI_ROOT}/{quote(folder.name)}/" + "/".join(quote(part) for part in path.relative_to(folder).parts)


def _signature_of(request_type: type[BaseModel], result_type: type[BaseModel]) -> tuple[inspect.Signature, dict]:
    """A tool function's signature made of the request model's fields: the MCP input schema is the API's."""
    params = [inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=Context)]
    for name, field in request_type.model_fields.items():
        annotation = Annotated[(field.annotation, *field.metadata, Field(description=field.description))]
        default = inspect.Parameter.empty if field.is_required() else field.default
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation))
    returns = Annotated[CallToolResult, result_type]
    return inspect.Signature(params, return_annotation=returns), {p.name: p.annotation for p in params} | {"return": returns}


def _tool(request_type: type[BaseModel], result_type: type[BaseModel], name: str,
          body: Callable[[Any, Context], Awaitable[CallToolResult]]) -> Callable[..., Awaitable[CallToolResult]]:
    async def tool(ctx: Context, **arguments: Any) -> CallToolResult:
        return await body(request_type(**arguments), ctx)

    tool.__name__ = tool.__qualname__ = name
    tool.__signature__, tool.__annotations__ = _signature_of(request_type, result_type)  # type: ignore[attr-defined]
    return tool


async def _in_worker(ctx: Context, work: Callable[[Callable[[ProgressEvent], None], threading.Event], R]) -> R:
    """Run ``work(progress, cancel)`` in a thread; a cancelled request sets ``cancel`` so the run stops resumable."""
    cancel = threading.Event()

    def progress(event: ProgressEvent) -> None:
        if cancel.is_set() or event.kind == "end":
            return
        total = f"/{event.total:.0f}" if event.total else ""
        try:  # a progress notification that cannot be sent must never stop the run
            anyio.from_thread.run(ctx.report_progress, event.done, event.total, f"{event.label}: {event.done:.0f}{total} {event.unit}")
        except Exception:  # noqa: BLE001
            pass

    try:
        with _one_line():
            return await anyio.to_thread.run_sync(lambda: work(progress, cancel), abandon_on_cancel=True)
    except anyio.get_cancelled_exc_class():
        cancel.set()
        raise


@contextmanager
def _one_line(error: type[Exception] = ToolError) -> Iterator[None]:
    """A user mistake (a path outside the roots, a server that is down) reaches the caller as its one line."""
    try:
        yield
    except USER_ERRORS as err:
        raise error(str(err)) from None


def _result(folders: RunFolders, agent: str, result: BaseModel, structured: dict, summary: str) -> CallToolResult:
    folder = Path(structured["run"])
    folders.add(folder)
    content: list[Any] = [TextContent(text=summary), *folders.links(folder)]
    main = folder / MAIN_OUTPUT.get(agent, "-")
    if readable(folder, main):
        content.append(EmbeddedResource(resource=TextResourceContents(
            uri=file_uri(folder, main), mime_type=MIME[main.suffix], text=main.read_text(encoding="utf-8"))))
    return CallToolResult(content=content, structured_content=structured)


@dataclass(frozen=True)
class Call:
    """What one tool call may use: its request (run folder and servers fixed), its roots, the key for its servers."""

    request: Any
    boundary: Boundary
    api_key: str | None


def build_server(runs_root: Path, roots: Sequence[Path] = (), servers: ModelServers | None = None) -> MCPServer:
    """The ``tilepilot`` MCP server; runs without an ``out`` go into folders under ``runs_root``.

    ``roots`` (default: the current folder) bound every path argument unless the client declares its own;
    ``servers`` says which model servers a caller may name (default: loopback ones, and no API key).
    """
    from tilepilot import __version__

    server = MCPServer(name="tilepilot", version=__version__, log_level="WARNING", instructions=(
        "Agents that review documents (PDF, Word, ODT, RTF, text, scans) against rule files, operate the desktop by screenshot (guarded by rules; "
        "confirmations are asked through elicitation), and transcribe or summarize audio, on a local model."))
    folders = RunFolders(runs_root)
    configured = Boundary.of(roots or [Path.cwd()], runs_root)
    servers = servers or ModelServers.of([], [], None)
    desktop_busy = threading.Lock()

    async def boundary(ctx: Context, error: type[Exception] = ToolError) -> Boundary:
        with _one_line(error):
            return await boundary_for(ctx, configured)

    async def prepare(ctx: Context, agent: str, request: Any) -> Call:
        """The call's roots and servers, and its run folder (a new one under the runs folder unless given), checked."""
        where = await boundary(ctx)
        with _one_line():
            base_url, api_key = servers.for_caller(request.base_url)
            where.check("out", [request.out])  # here too (the run checks all), so announce never names a refused folder
            where.check("resume", [request.resume])
        update: dict[str, Any] = {"base_url": base_url}
        if not request.resume:  # a resumed run is readable once it has finished through this server (_result)
            update["out"] = str(Path(request.out) if request.out else folders.new(agent))
        return Call(request.model_copy(update=update), where, api_key)

    async def announce(ctx: Context, agent: str, request: Any) -> None:
        folder = request.resume or request.out
        await ctx.report_progress(0, None, f"{agent} run folder: {folder} (if stopped, call again with resume={json.dumps(folder)})")

    async def review_documents(request: ReviewRequest, ctx: Context) -> CallToolResult:
        from tilepilot.operations import run_review_request

        call = await prepare(ctx, "review", request)
        await announce(ctx, "review", call.request)
        result: ReviewResult = await _in_worker(ctx, lambda progress, cancel: run_review_request(
            call.request, progress=progress, cancel=cancel, check_paths=call.boundary.check, api_key=call.api_key))
        counts = ", ".join(f"{Path(d.source or d.path).name}: {len(d.findings)} findings" for d in result.documents)
        return _result(folders, "review", result, json.loads(result.to_json()),
                       f"Reviewed {counts}. Report: {result.report_md}" + (f" ({result.note})" if result.note else ""))

    async def run_desktop_task(request: DesktopRequest, ctx: Context) -> CallToolResult:
        from tilepilot.operations import run_desktop_request

        caps = ctx.client_capabilities
        can_elicit = caps is not None and caps.elicitation is not None
        call = await prepare(ctx, "desktop", request)
        if not desktop_busy.acquire(blocking=False):
            raise ToolError("a desktop task is already running on this screen; wait for it to finish")
        try:
            await announce(ctx, "desktop", call.request)
            result: DesktopResult = await _in_worker(ctx, lambda progress, cancel: run_desktop_request(
                call.request, approve=_approver(ctx, cancel) if can_elicit else None, progress=progress, cancel=cancel,
                check_paths=call.boundary.check, api_key=call.api_key))
        finally:
            desktop_busy.release()
        return _result(folders, "desktop", result, json.loads(result.to_json()),
                       f"{result.status}: {result.stop_reason} ({len(result.steps)} steps)")

    async def listen_audio(request: ListenRequest, ctx: Context) -> CallToolResult:
        from tilepilot.operations import run_listen_request

        call = await prepare(ctx, "listen", request)
        await announce(ctx, "listen", call.request)
        result: ListenResult = await _in_worker(ctx, lambda progress, cancel: run_listen_request(
            call.request, progress=progress, cancel=cancel, check_paths=call.boundary.check, api_key=call.api_key))
        structured = {"run": result.run, "inputs": [json.loads(item.to_json()) for item in result.inputs]}
        texts = "\n\n".join(item.summary or item.answer or item.text for item in result.inputs)
        return _result(folders, "listen", result, structured, texts)

    server.add_tool(_tool(ReviewRequest, ReviewResult, "review_documents", review_documents),
                    title="Review documents", annotations=ToolAnnotations(
                        read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False),
                    description="Review documents (PDF; Word, ODT and RTF through LibreOffice; text; scans) against rule "
                    "files: deterministic checks on the text layer plus the model "
                    "on budgeted page chunks. Findings cite page, quote and box; the report and findings come back "
                    "as resources. Cancel stops the run resumable (call again with resume=<run folder>).")
    server.add_tool(_tool(DesktopRequest, DesktopResult, "run_desktop_task", run_desktop_task),
                    title="Operate the desktop", annotations=ToolAnnotations(
                        read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=True),
                    description="Operate the local desktop by screenshot until the task is done: clicks and typing "
                    "on the real screen, guarded by the rules. Actions the rules want confirmed are asked through "
                    "elicitation; only an explicit accept executes them.")
    server.add_tool(_tool(ListenRequest, ListenResult, "listen_audio", listen_audio),
                    title="Transcribe or summarize audio", annotations=ToolAnnotations(
                        read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False),
                    description="Transcribe, summarize (task=summarize) or answer a question (task=ask) about audio "
                    "files of any length; transcripts come back as resources.")

    @server.tool(title="Check rule files", annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False),
                 structured_output=True)
    async def check_rules(ctx: Context, paths: Annotated[list[str], Field(
            description="Rule files (Markdown with YAML front matter), or folders of *.md rule files.")]) -> RulesCheckResult:
        """Validate tilepilot rule files: every problem as file:line: message (an empty list: all valid)."""
        from tilepilot.rules import check

        where = await boundary(ctx)
        with _one_line():
            where.check("paths", paths, kind="rules")
        return await anyio.to_thread.run_sync(lambda: check(paths))

    @server.tool(title="Model server status", annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False),
                 structured_output=True)
    async def serve_status(ctx: Context, model: Annotated[str, Field(description="Model profile, e.g. tiny or gemma-4-12b.")] = "tiny",
                           base_url: Annotated[list[str], Field(description="Probe this server instead of the managed one.")] = []) -> ServeStatus:  # noqa: B006
        """Whether the model server runs and answers; with base_url, what that server offers."""
        from tilepilot.operations import serve_status as status

        where = await boundary(ctx)
        with _one_line():
            where.check("model", [model])
            for url in base_url:
                servers.check(url)
            return await anyio.to_thread.run_sync(lambda: status(model, base_url))

    @server.resource(f"{URI_ROOT}/{{run}}", name="run-folder", mime_type="application/json",
                     description="A run folder a tool wrote: its readable outputs and their URIs.")
    async def run_folder(run: str, ctx: Context) -> str:
        return folders.listing(await boundary(ctx, ResourceError), run)

    @server.resource(f"{URI_ROOT}/{{run}}/{{name}}", name="run-output", description="A file a tool's run wrote.")
    async def run_output(run: str, name: str, ctx: Context) -> str:
        return folders.file(await boundary(ctx, ResourceError), run, name).read_text(encoding="utf-8")

    @server.resource(f"{URI_ROOT}/{{run}}/{{folder}}/{{name}}", name="run-input-output",
                     description="A file of one input of a run (listen with several inputs).")
    async def run_input_output(run: str, folder: str, name: str, ctx: Context) -> str:
        return folders.file(await boundary(ctx, ResourceError), run, folder, name).read_text(encoding="utf-8")

    return server


def _approver(ctx: Context, cancel: threading.Event) -> Callable[[Any], bool]:
    """The desktop guard's question as an elicitation; anything but an explicit accept is a no."""

    def approve(request: Any) -> bool:
        if cancel.is_set():
            return False
        message = f"tilepilot desktop, {request.describe()}"
        try:
            answer = anyio.from_thread.run(ctx.elicit, message, Approval)
        except Exception:  # noqa: BLE001 (an elicitation that fails is not an approval)
            return False
        return answer.action == "accept" and bool(getattr(answer.data, "execute", False))

    return approve
