"""An MCP caller works inside the roots. Attacks on every path argument, with the mcp SDK's own client over stdio.

The secret is a text file outside the roots. Before the roots existed, ``rules: [secret]`` with
``no_model`` made it a rule file, its text went into the system prompt logged in ``events.jsonl``,
and the server served that log back as a resource. Each attack must be refused in one line that
names the argument, and the secret must appear in no response, no resource and no file the run wrote.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mcp import ClientSession
from mcp_types import ListRootsResult, Root

import tilepilot
from tests.agents.mcp.sessions import HttpServer, mcp_session, tool_error
from tests.conftest import REPO
from tilepilot.agents.runs import DeadlineReached

SECRET = "TOP-SECRET-7f3a9c the merger closes on Friday"
RULES = "---\napplies_to: [review]\n---\nLook for personal data.\n"


@dataclass(frozen=True)
class Tree:
    granted: Path  # the --root
    outside: Path
    runs: Path

    @property
    def contract(self) -> str:
        return str(self.granted / "contract.pdf")


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    granted, outside, runs = tmp_path / "granted", tmp_path / "outside", tmp_path / "runs"
    for folder in (granted, outside / "rules", outside / "checkpoint"):
        folder.mkdir(parents=True)
    shutil.copy(REPO / "examples" / "review" / "contract.pdf", granted / "contract.pdf")
    (granted / "rules.md").write_text(RULES)
    (outside / "secret.txt").write_text(SECRET + "\n")
    (outside / "rules" / "secret.md").write_text(RULES + SECRET + "\n")  # a valid rule file, but outside
    (outside / "checkpoint" / "config.json").write_text(json.dumps({"note": SECRET}))
    (granted / "link.txt").symlink_to(outside / "secret.txt")
    (granted / "link.md").symlink_to(outside / "rules" / "secret.md")
    (granted / "linked").symlink_to(outside)
    tilepilot.review(granted / "contract.pdf", no_model=True, out=outside / "run")  # a run folder to resume
    return Tree(granted, outside, runs)


async def seen_by_the_client(session: ClientSession, result: Any) -> str:
    """Everything a call gave the client: its content, structured result and every resource it links."""
    seen = [json.dumps(result.structured_content or {})]
    for content in result.content:
        if content.type == "text":
            seen.append(content.text)
        elif content.type == "resource":
            seen.append(getattr(content.resource, "text", ""))
        elif content.type == "resource_link":
            read = await session.read_resource(content.uri)
            seen.extend(getattr(part, "text", "") for part in read.contents)
    return "\n".join(seen)


def assert_secret_stayed_put(tree: Tree, *texts: str) -> None:
    for text in texts:
        assert SECRET not in text
    run_folders = [tree.runs, *(log.parent for log in tree.granted.rglob("events.jsonl"))]  # what runs wrote
    for path in (p for folder in run_folders for p in folder.rglob("*") if p.is_file()):
        assert SECRET.encode() not in path.read_bytes(), path


def test_every_path_argument_outside_the_roots_is_refused(tree: Tree) -> None:
    o, g = tree.outside, tree.granted
    review = {"paths": [tree.contract], "rules": [str(g / "rules.md")], "no_model": True}
    attacks: list[tuple[str, str, dict]] = [
        ("review_documents", "rules", {**review, "rules": [str(o / "secret.txt")]}),
        ("review_documents", "rules", {**review, "rules": [str(o / "rules" / "secret.md")]}),
        ("review_documents", "rules", {**review, "rules": [str(o / "rules")]}),
        ("review_documents", "rules", {**review, "rules": [str(g / "link.md")]}),  # a symlink inside, pointing out
        ("review_documents", "rules", {**review, "rules": [str(g / "linked" / "rules")]}),
        ("review_documents", "paths", {**review, "paths": [str(o / "secret.txt")]}),
        ("review_documents", "paths", {**review, "paths": [str(g / "link.txt")]}),
        ("review_documents", "paths", {**review, "paths": [str(g / "linked")]}),
        ("review_documents", "paths", {**review, "paths": [f"{g}/../outside/secret.txt"]}),
        ("review_documents", "out", {**review, "out": str(o / "new-run")}),
        ("review_documents", "out", {**review, "out": str(g / "linked" / "new-run")}),
        ("review_documents", "resume", {"resume": str(o / "run")}),
        ("review_documents", "legibility", {**review, "prefer": "tokens", "legibility": str(o / "secret.txt")}),
        ("review_documents", "model", {**review, "model": str(o / "checkpoint")}),
        ("listen_audio", "files", {"files": [str(o / "secret.txt")]}),
        ("listen_audio", "rules", {"files": [tree.contract], "rules": [str(o / "secret.txt")]}),
        ("run_desktop_task", "rules", {"task": "open the file", "rules": [str(o / "rules" / "secret.md")], "dry_run": True}),
        ("run_desktop_task", "out", {"task": "open the file", "out": str(o / "desktop-run"), "dry_run": True}),
        ("check_rules", "paths", {"paths": [str(o / "rules" / "secret.md")]}),
        ("serve_status", "model", {"model": str(o / "checkpoint")}),
    ]

    async def session_work():
        refusals = []
        async with mcp_session("stdio", tree.runs, roots=[tree.granted]) as session:
            for tool, argument, arguments in attacks:
                result = await session.call_tool(tool, arguments)
                refusals.append((tool, argument, tool_error(result), await seen_by_the_client(session, result)))
            fine = await session.call_tool("review_documents", review)  # the same review inside the roots works
            return refusals, fine, await seen_by_the_client(session, fine), await session.list_resources()

    refusals, fine, fine_seen, listed = asyncio.run(session_work())
    for tool, argument, text, seen in refusals:
        assert text.startswith(f"{argument}: ") and "outside the roots" in text, (tool, argument, text)
        assert str(tree.granted) in text  # it says where the caller may go
        assert_secret_stayed_put(tree, seen)
    assert not fine.is_error, fine.content
    assert Path(fine.structured_content["run"]).parent == tree.runs and "report.md" in fine_seen
    assert not (tree.outside / "new-run").exists() and not (tree.outside / "desktop-run").exists()
    assert_secret_stayed_put(tree, fine_seen, json.dumps([r.model_dump() for r in listed.resources]))


def test_a_crafted_run_folder_inside_the_roots_cannot_name_files_outside(tree: Tree) -> None:
    crafted = tree.granted / "crafted"
    with pytest.raises(DeadlineReached):  # stopped at once: a resumable run folder
        tilepilot.review(tree.contract, no_model=True, out=crafted, max_runtime_s=1e-9)
    manifest = json.loads((crafted / "run.json").read_text())
    for field, value in (("paths", [str(tree.outside / "secret.txt")]), ("rules", [str(tree.outside / "secret.txt")])):
        manifest["options"] = {**manifest["options"], "paths": [tree.contract], "rules": [], field: value}
        (crafted / "run.json").write_text(json.dumps(manifest))

        async def session_work():
            async with mcp_session("stdio", tree.runs, roots=[tree.granted]) as session:
                result = await session.call_tool("review_documents", {"resume": str(crafted)})
                return result, await seen_by_the_client(session, result)

        result, seen = asyncio.run(session_work())
        assert tool_error(result).startswith(f"{field}: "), result.content
        assert_secret_stayed_put(tree, seen)


def test_rule_files_over_mcp_must_be_markdown_with_front_matter(tree: Tree) -> None:
    g = tree.granted
    (g / "notes.txt").write_text(RULES)  # front matter, but not Markdown
    (g / "plain.md").write_text("# Notes\n" + SECRET + "\n")  # Markdown, no front matter
    (g / "folder").mkdir()
    (g / "folder" / "plain.md").write_text("# Notes\n" + SECRET + "\n")
    cases = [("review_documents", {"paths": [tree.contract], "rules": [str(g / name)], "no_model": True})
             for name in ("notes.txt", "plain.md", "folder")]
    cases.append(("check_rules", {"paths": [str(g / "plain.md")]}))

    async def session_work():
        async with mcp_session("stdio", tree.runs, roots=[tree.granted]) as session:
            return [(await session.call_tool(tool, arguments)) for tool, arguments in cases]

    for result in asyncio.run(session_work()):
        text = tool_error(result)
        assert "Markdown" in text and "front matter" in text and SECRET not in text, text
    assert_secret_stayed_put(tree)


@pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")  # roots: deprecated in the 2026-07-28 spec
@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_declared_roots_replace_the_root_option_and_follow_list_changed(transport: str, tmp_path: Path) -> None:
    """Like the reference filesystem server: a client's roots are the boundary, and a change holds from the next call."""
    first, second, runs = tmp_path / "first", tmp_path / "second", tmp_path / "runs"
    for folder in (first, second):
        folder.mkdir()
        shutil.copy(REPO / "examples" / "review" / "contract.pdf", folder / "contract.pdf")
    declared = [second]

    async def list_roots(context) -> ListRootsResult:
        return ListRootsResult(roots=[Root(uri=folder.as_uri(), name=folder.name) for folder in declared])

    def review(folder: Path, **extra: Any) -> dict:
        return {"paths": [str(folder / "contract.pdf")], "no_model": True, **extra}

    async def session_work():
        async with mcp_session(transport, runs, roots=[first], http=http, list_roots_callback=list_roots) as session:
            in_declared = await session.call_tool("review_documents", review(second, out=str(second / "run")))
            in_option_only = await session.call_tool("review_documents", review(first))
            report = next(c.uri for c in in_declared.content if c.type == "resource_link" and c.name == "report.md")
            declared[:] = [first]
            await session.send_roots_list_changed()
            after_first = await session.call_tool("review_documents", review(first))
            after_second = await session.call_tool("review_documents", review(second))
            try:
                await session.read_resource(report)  # a run folder in a root the client has since dropped
                stale = None
            except Exception as err:  # noqa: BLE001
                stale = str(err)
            return in_declared, in_option_only, after_first, after_second, stale

    http = HttpServer(runs, roots=[first]) if transport == "http" else None
    try:
        in_declared, in_option_only, after_first, after_second, stale = asyncio.run(session_work())
    finally:
        if http is not None:
            http.close()
    assert not in_declared.is_error, in_declared.content
    assert tool_error(in_option_only).startswith("paths: ") and str(second) in tool_error(in_option_only)
    assert not after_first.is_error, after_first.content
    assert tool_error(after_second).startswith("paths: ")
    assert stale is not None and "outside the roots" in stale
