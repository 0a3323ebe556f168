"""Where an MCP caller's paths may point: inside the roots, kept as the reference filesystem MCP server keeps them.

The roots are the folders given with ``tilepilot mcp --root`` (default: the folder it was started in).
A client that declares roots (the ``roots`` capability) replaces them with its own, as the reference
server does: they are asked for (``roots/list``) at every call, so a client's
``notifications/roots/list_changed`` holds from its next call on.

Every path argument is resolved, symlinks and ``..`` included, and refused outside the roots in one
line that names the argument. Folders are opened too: each file a review would take from a folder
of ``paths``, and each ``*.md`` of a folder of ``rules``, must resolve inside the roots as well.
``out`` and ``resume`` may also point into the server's own runs folder (``--runs``).

Rule files must be Markdown with valid YAML front matter: a rule file's body goes into the system
prompt, which the run logs in ``events.jsonl``, which the server serves back. Any other text file
would come back to the caller that way.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlparse

from mcp.server.mcpserver import Context
from mcp.shared.message import ServerMessageMetadata
from mcp_types import ListRootsRequest, ListRootsResult

from tilepilot.agents.errors import RuleProblemsError, UsageError

PathKind = Literal["inputs", "rules", "file", "model", "run"]
# Every path argument of every tool, by what it names. A request field that is missing here and from
# NOT_PATHS fails tests/agents/mcp/test_mcp_boundary.py, so a new path argument cannot slip past.
PATH_ARGUMENTS: dict[str, PathKind] = {
    "paths": "inputs", "files": "inputs", "rules": "rules", "legibility": "file", "model": "model",
    "out": "run", "resume": "run",
}
NOT_PATHS = frozenset({
    "base_url", "max_runtime_s", "no_model", "pages", "mode", "budget_tokens", "concurrency", "prefer", "password",
    "task", "max_steps", "dry_run", "monitor", "budget", "history", "actions", "question", "workers",
})


@dataclass(frozen=True)
class Boundary:
    """The roots of one call (resolved), and the server's runs folder."""

    roots: tuple[Path, ...]
    runs: Path
    declared: bool = False  # the client's roots, not --root

    @classmethod
    def of(cls, roots: Iterable[str | Path], runs: Path, *, declared: bool = False) -> Boundary:
        return cls(tuple(dict.fromkeys(Path(r).expanduser().resolve() for r in roots)), Path(runs).resolve(), declared)

    def describe(self) -> str:
        where = ", ".join(map(str, self.roots)) or "none"
        return f"the client's roots ({where})" if self.declared else f"the roots of this server ({where}; tilepilot mcp --root)"

    def holds(self, path: Path, *, runs_too: bool = False) -> bool:
        """Is ``path`` (already resolved) inside a root, or inside the runs folder when ``runs_too``?"""
        return any(path.is_relative_to(root) for root in (*self.roots, *((self.runs,) if runs_too else ())))

    def resolve(self, argument: str, value: str | Path, *, runs_too: bool = False) -> Path:
        """``value`` resolved (symlinks included), or one line naming ``argument`` when it leads outside."""
        try:
            resolved = Path(value).expanduser().resolve()
        except (OSError, RuntimeError, ValueError) as err:  # a symlink loop, a NUL byte, an unknown ~user
            raise UsageError(f"{argument}: {value!r} is no usable path ({err})") from None
        if not self.holds(resolved, runs_too=runs_too):
            also = f" or the runs folder {self.runs}" if runs_too else ""
            raise UsageError(f"{argument}: {value} is outside the roots: use a path inside {self.describe()}{also}")
        return resolved

    def check(self, argument: str, values: Sequence[str | None], kind: PathKind | None = None) -> None:
        """Refuse any of ``values`` of ``argument`` that leads outside (see the module's docstring).

        ``kind`` says what the values name where the argument's name does not (``PATH_ARGUMENTS``)."""
        kind = kind or PATH_ARGUMENTS[argument]
        for value in values:
            if value is None or value == "":
                continue
            if kind == "run":
                self.resolve(argument, value, runs_too=True)
            elif kind == "model":
                self._model(argument, value)
            elif kind == "rules":
                self._rules(argument, value)
            elif kind == "inputs":
                self._inputs(argument, value)
            else:
                self.resolve(argument, value)

    def _model(self, argument: str, value: str) -> None:
        from tilepilot.model_runtime.profiles import GEMMA_4_12B, PROFILE_NAMES

        if value not in (*PROFILE_NAMES, GEMMA_4_12B.model):  # anything else is read as a checkpoint folder
            self.resolve(argument, value)

    def _inputs(self, argument: str, value: str) -> None:
        from tilepilot.agents.review.inputs import expand_inputs

        if self.resolve(argument, value).is_dir():
            for found in expand_inputs([value]):  # the files a review takes from that folder
                self.resolve(argument, found)

    def _rules(self, argument: str, value: str) -> None:
        from tilepilot.agents.rules.discovery import discover
        from tilepilot.agents.rules.loader import load_rule_file

        self.resolve(argument, value)
        try:
            sources = discover("review", [value])  # the files a folder contributes, as every run finds them
        except RuleProblemsError as err:
            raise UsageError(f"{argument}: {err.problems[0][0]}: {err.problems[0][2]}") from None
        for source in (s for s in sources if s.origin == "--rules"):
            path = self.resolve(argument, source.path)
            refusal = f"{argument}: {source.path} is not a rule file: over MCP a rule file is Markdown (.md) with YAML front matter"
            if path.suffix.lower() != ".md":
                raise UsageError(refusal)
            try:
                rule_file = load_rule_file(path)
            except RuleProblemsError as err:
                file, line, message = err.problems[0]
                raise UsageError(f"{argument}: {file}:{line}: {message}") from None
            if not rule_file.has_front_matter:
                raise UsageError(refusal + " ('---' lines around it at the top)")


async def boundary_for(ctx: Context, configured: Boundary) -> Boundary:
    """This call's boundary: the client's roots where it declares the capability, else ``configured``."""
    capabilities = ctx.client_capabilities
    if capabilities is None or capabilities.roots is None:
        return configured
    try:  # asked at every call: a client's roots/list_changed holds from its next call on
        listed = await ctx.session.send_request(ListRootsRequest(), ListRootsResult,
                                                metadata=ServerMessageMetadata(related_request_id=ctx.request_id))
    except Exception as err:  # noqa: BLE001 (no roots, no paths: never fall back to wider ones)
        raise UsageError(f"the client declares roots but listing them failed ({err}); no path can be used") from None
    return Boundary.of(paths_from_roots(str(root.uri) for root in listed.roots), configured.runs, declared=True)


def paths_from_roots(uris: Iterable[str]) -> list[Path]:
    """The local folders of a client's ``file://`` roots; other schemes and other hosts are no roots."""
    folders = []
    for uri in uris:
        parsed = urlparse(str(uri))
        if parsed.scheme == "file" and parsed.netloc in ("", "localhost"):
            folders.append(Path(unquote(parsed.path)))
    return folders
