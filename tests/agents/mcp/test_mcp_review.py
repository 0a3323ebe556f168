"""``tilepilot mcp`` with the mcp SDK's own client, over stdio and streamable HTTP: tools, schemas,
a review with progress notifications and resources, a cancelled review that resumes, the token."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

import tilepilot
from tests.agents.mcp.sessions import HttpServer, mcp_session, refused_without_token
from tests.conftest import REPO
from tests.gen.pdfs import mixed_corpus

CONTRACT_RULES = str(REPO / "rules" / "examples" / "contract.md")
PLANTED = {2: ["Contact jane.roe@example.com for notices."], 5: ["The Supplier accepts unlimited liability for delays."]}
TRANSPORTS = ["stdio", "http"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mcp-runs")


def roots(runs: Path) -> list[Path]:
    """The folders these tests' paths lie in: pytest's temporary folders and the repository (rule files)."""
    return [runs.parent, REPO]


@pytest.fixture(scope="module")
def http(runs: Path) -> Iterator[HttpServer]:
    server = HttpServer(runs, roots=roots(runs))
    yield server
    server.close()


@pytest.fixture(scope="module")
def contract(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("mcp") / "contract-8.pdf"
    mixed_corpus(path, 8, plant=PLANTED)
    return path


def _without_run(data: dict) -> dict:
    return {key: value for key, value in data.items() if key != "run"}


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_tools_carry_the_api_schemas_and_annotations(transport: str, runs: Path, http: HttpServer) -> None:
    async def session_work():
        async with mcp_session(transport, runs, http=http, roots=roots(runs)) as session:
            tools = {tool.name: tool for tool in (await session.list_tools()).tools}
            checked = await session.call_tool("check_rules", {"paths": [CONTRACT_RULES]})
            status = await session.call_tool("serve_status", {"model": "tiny"})
            return tools, checked, status

    tools, checked, status = asyncio.run(session_work())
    assert set(tools) == {"review_documents", "run_desktop_task", "listen_audio", "check_rules", "serve_status"}
    for name, request in (("review_documents", tilepilot.ReviewRequest), ("run_desktop_task", tilepilot.DesktopRequest),
                          ("listen_audio", tilepilot.ListenRequest)):
        schema, api = tools[name].input_schema, request.model_json_schema()
        assert set(schema["properties"]) == set(api["properties"]), name
        for field, spec in api["properties"].items():
            assert schema["properties"][field].get("description") == spec.get("description"), (name, field)
            assert schema["properties"][field].get("default") == spec.get("default"), (name, field)
        assert tools[name].output_schema is not None
    assert tools["review_documents"].input_schema["properties"]["mode"]["enum"] == ["map-reduce", "rolling"]
    assert tools["run_desktop_task"].annotations.destructive_hint is True
    assert tools["review_documents"].annotations.destructive_hint is False
    assert tools["check_rules"].annotations.read_only_hint is True
    assert set(tools["review_documents"].output_schema["properties"]) == {"run", "documents", "usage"}
    assert not checked.is_error and checked.structured_content["problems"] == []
    assert not status.is_error and status.structured_content["model"] == "tiny"
    assert set(status.structured_content) >= {"running", "healthy", "base_url"}


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_review_sends_progress_and_returns_findings_and_reports(transport: str, runs: Path, http: HttpServer,
                                                                contract: Path, tmp_path: Path) -> None:
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total, message))

    async def session_work():
        async with mcp_session(transport, runs, http=http, roots=roots(runs)) as session:
            result = await session.call_tool("review_documents", {"paths": [str(contract)], "rules": [CONTRACT_RULES],
                                             "no_model": True}, progress_callback=on_progress)
            links = {c.name: c.uri for c in result.content if c.type == "resource_link"}
            report = await session.read_resource(links["report.md"])
            listing = await session.read_resource(links[f"{Path(result.structured_content['run']).name}/"])
            missing = None
            try:
                await session.read_resource(str(links["report.md"]).replace("report.md", "checkpoint.sqlite"))
            except Exception as err:  # noqa: BLE001
                missing = str(err)
            return result, links, report, listing, missing

    result, links, report, listing, missing = asyncio.run(session_work())
    assert not result.is_error, result.content
    data = result.structured_content
    assert Path(data["run"]).parent == runs and data["run"] in progress[0][2]  # announced before the work
    assert {("no-personal-data", 2), ("no-unlimited-liability", 5)} <= {
        (f["rule"], f["page"]) for d in data["documents"] for f in d["findings"]}
    assert progress and progress[-1][:2] == (8, 8) and "pages" in progress[-1][2]
    assert [p[0] for p in progress] == sorted(p[0] for p in progress) and progress[-1][0] > progress[0][0]
    assert {"report.md", "report.html", "findings.json", "events.jsonl"} <= set(links)
    assert "no-personal-data" in report.contents[0].text
    listed = json.loads(listing.contents[0].text)
    assert listed["run"] == data["run"] and {f["uri"] for f in listed["files"]} == {
        str(uri) for name, uri in links.items() if not name.endswith("/")}
    assert any(c.type == "resource" and str(c.resource.uri).endswith("report.md") for c in result.content)
    assert missing is not None  # the checkpoint is no resource
    api = tilepilot.review(contract, rules=CONTRACT_RULES, no_model=True, out=tmp_path / "api")
    assert _without_run(data) == _without_run(json.loads(api.to_json()))


def test_a_cancelled_review_stops_resumable_and_resumes(runs: Path, tmp_path: Path) -> None:
    big = tmp_path / "contract-300.pdf"  # long enough that the cancel arrives mid-run
    mixed_corpus(big, 300, plant={**PLANTED, 290: PLANTED[2]})
    out = tmp_path / "cancelled"
    events = out / "events.jsonl"

    def finished() -> list[dict]:
        lines = events.read_text().splitlines() if events.exists() else []
        return [json.loads(line) for line in lines if '"run_finished"' in line]

    async def session_work():
        async with mcp_session("stdio", runs, roots=roots(runs)) as session:
            seen: list[float] = []
            with anyio.CancelScope() as scope:
                async def on_progress(done: float, total: float | None, message: str | None) -> None:
                    seen.append(done)
                    if done >= 1:
                        scope.cancel()  # the client gives up on the request: notifications/cancelled

                await session.call_tool("review_documents", {"paths": [str(big)], "no_model": True, "out": str(out)},
                                        progress_callback=on_progress)
            assert scope.cancelled_caught and seen
            for _ in range(1200):  # the run ends on its own once it sees the cancel
                if finished():
                    break
                await anyio.sleep(0.05)
            resumed = await session.call_tool("review_documents", {"resume": str(out)})
            return resumed

    resumed = asyncio.run(session_work())
    first = finished()[0]
    assert first["status"] == "deadline" and "cancelled by the caller" in first["reason"]
    assert not resumed.is_error, resumed.content
    assert finished()[-1]["status"] == "done"
    whole = tilepilot.review(big, no_model=True, out=tmp_path / "whole")
    assert _without_run(resumed.structured_content) == _without_run(json.loads(whole.to_json()))
    assert resumed.structured_content["documents"][0]["pages"] == 300


def test_listen_summarizes_audio_on_the_tiny_server(runs: Path, vllm_server, tmp_path: Path) -> None:
    from tests.gen.audio import AudioFactory

    speech = AudioFactory(tmp_path / "audio").speech("Please send the signed contract by Friday.")

    async def session_work():
        async with mcp_session("stdio", runs, roots=roots(runs)) as session:
            return await session.call_tool("listen_audio", {"files": [str(speech)], "task": "summarize",
                                                            "base_url": [vllm_server.base_url]})

    result = asyncio.run(session_work())
    assert not result.is_error, result.content
    [heard] = result.structured_content["inputs"]
    assert heard["summary"] is not None and heard["clips"] and heard["clips"][0]["prompt_tokens"] > 100
    assert {"transcript.txt", "transcript.json"} <= {c.name for c in result.content if c.type == "resource_link"}
    embedded = [c.resource.text for c in result.content if c.type == "resource"]
    assert embedded and heard["text"] in embedded[0]


def test_http_needs_the_token_and_other_interfaces_need_one(http: HttpServer) -> None:
    assert refused_without_token(http.url) == [401, 401]
    proc = subprocess.run([sys.executable, "-m", "tilepilot", "mcp", "--transport", "http", "--host", "0.0.0.0"],
                          capture_output=True, text=True, cwd=REPO, timeout=120, env={"PATH": "/usr/bin:/bin",
                                                                                       **_python_env()})
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "needs a token" in proc.stderr


def _python_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "TILEPILOT_MCP_TOKEN"}


def test_the_readme_client_example_runs(tmp_path: Path) -> None:
    """examples/mcp_client.py, as a user runs it: tools listed, the rules checked, the demo contract reviewed."""
    proc = subprocess.run([sys.executable, str(REPO / "examples" / "mcp_client.py")], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    tools = {line.split()[1].rstrip(":"): line for line in lines if line.startswith("tool ")}
    assert set(tools) == {"review_documents", "run_desktop_task", "listen_audio", "check_rules", "serve_status"}
    assert "destructive True" in tools["run_desktop_task"] and "read-only True" in tools["check_rules"]
    assert any(line.startswith("check_rules -> ") and '"problems": []' in line for line in lines), proc.stdout
    assert any(line.startswith("  progress ") and "pages" in line for line in lines), proc.stdout
    assert any(line.startswith("  finding p.") for line in lines) and "  finding document [" in proc.stdout and "report.md, first line: #" in proc.stdout
