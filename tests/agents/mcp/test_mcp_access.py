"""Who an MCP caller can reach and who can reach the MCP server: model servers for callers, and HTTP's token.

Attacks, with the mcp SDK's own client: a caller-chosen ``base_url`` off this machine, or on it but not the
configured server, must never receive the ``TILEPILOT_API_KEY``; ``tilepilot mcp --transport http`` without
``--token`` still needs one; a rebinding Host or a foreign Origin is refused on every loopback address.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx2
import pytest

from tests.agents.mcp.sessions import HttpServer, mcp_session, refused_without_token, tool_error
from tests.conftest import REPO

API_KEY = "sk-configured-only-4c1d"


class HeaderRecorder:
    """A loopback HTTP server that answers 404 to everything and records each request's path and Authorization."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _answer(self) -> None:
                recorder.seen.append((self.path, self.headers.get("Authorization")))
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = b'{"error": {"message": "not a model server"}}'
                self.send_response(404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorders() -> Iterator[list[HeaderRecorder]]:
    made = [HeaderRecorder() for _ in range(3)]
    yield made
    for recorder in made:
        recorder.close()


def test_caller_servers_must_be_loopback_or_allowed_and_only_the_configured_one_gets_the_key(
        tmp_path: Path, recorders: list[HeaderRecorder]) -> None:
    configured, other, allowed = recorders
    shutil.copy(REPO / "examples" / "review" / "contract.pdf", tmp_path / "contract.pdf")
    env = {"TILEPILOT_API_KEY": API_KEY, "TILEPILOT_BASE_URL": configured.url}
    # 0.0.0.0 reaches this machine but is no loopback address: it stands in for a server elsewhere.
    elsewhere = f"http://0.0.0.0:{other.port}"

    def review(*base_url: str) -> dict:
        return {"paths": [str(tmp_path / "contract.pdf")], "base_url": list(base_url)}

    async def session_work():
        async with mcp_session("stdio", tmp_path / "runs", roots=[tmp_path], env=env,
                               args=["--allow-server", f"http://0.0.0.0:{allowed.port}/v1"]) as session:
            refused = [await session.call_tool("review_documents", review(url))
                       for url in (elsewhere, "https://models.example.com/v1", "file:///etc/passwd")]
            refused.append(await session.call_tool("serve_status", {"base_url": [elsewhere]}))
            assert not other.seen  # nothing was even sent there
            await session.call_tool("review_documents", review(other.url))  # loopback, not the configured one
            await session.call_tool("review_documents", review(f"http://0.0.0.0:{allowed.port}"))  # --allow-server
            await session.call_tool("review_documents", review(configured.url + "/v1"))
            await session.call_tool("review_documents", review())  # the configured server by default
            return refused

    refused = asyncio.run(session_work())
    for result in refused:
        text = tool_error(result)
        assert text.startswith("base_url: ") and "--allow-server" in text and API_KEY not in text, text
    assert other.seen and allowed.seen and configured.seen
    assert {auth for _, auth in other.seen + allowed.seen} == {None}
    assert {auth for _, auth in configured.seen} == {f"Bearer {API_KEY}"}


def _post(url: str, token: str | None, **headers: str) -> int:
    body = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "probe", "version": "0"}}}
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx2.post(url, json=body, timeout=30, headers={
        "Accept": "application/json, text/event-stream", "Content-Type": "application/json", **auth, **headers}).status_code


def test_http_without_a_token_makes_one_and_checks_host_on_any_loopback_address(tmp_path: Path) -> None:
    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if k != "TILEPILOT_MCP_TOKEN"}
    server = HttpServer(tmp_path / "runs", env={**env, "TILEPILOT_STATE_DIR": str(state)}, roots=[tmp_path],
                        host="127.0.0.2", token=None)
    try:
        [token_file] = state.glob("mcp-*.token")
        token = token_file.read_text().strip()
        assert len(token) >= 32 and stat.S_IMODE(token_file.stat().st_mode) == 0o600
        announced = [line for line in server.log_path.read_text().splitlines() if token in line]
        assert len(announced) == 1 and str(token_file) in announced[0]
        assert refused_without_token(server.url) == [401, 401]
        host = f"127.0.0.2:{server.port}"
        assert _post(server.url, token) == 200
        assert _post(server.url, token, Host="evil.com") == 421  # DNS rebinding: a page on evil.com resolving here
        assert _post(server.url, token, Host=f"127.0.0.1:{server.port}") == 421
        assert _post(server.url, token, Host=host, Origin="http://evil.com") == 403
        assert _post(server.url, token, Host=host, Origin=f"http://{host}") == 200

        async def session_work():
            async with mcp_session("http", tmp_path / "runs", http=server, token=token) as session:
                return {tool.name for tool in (await session.list_tools()).tools}

        assert "review_documents" in asyncio.run(session_work())
    finally:
        server.close()  # SIGTERM, as a service manager stops it
    assert server.process.returncode == 128 + 15 and not token_file.exists()
