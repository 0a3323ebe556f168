"""``tilepilot mcp`` as a real child process, reached with the mcp SDK's own client over stdio or HTTP."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from tests.conftest import REPO

TOKEN = "test-token-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def root_args(roots: Sequence[Path]) -> list[str]:
    return [arg for root in roots for arg in ("--root", str(root))]


class HttpServer:
    """``tilepilot mcp --transport http`` on a free loopback port, with a token (None: the server makes one)."""

    def __init__(self, runs: Path, env: dict[str, str] | None = None, *, roots: Sequence[Path] = (),
                 host: str = "127.0.0.1", token: str | None = TOKEN) -> None:
        self.host, self.port = host, free_port()
        self.url = f"http://{host}:{self.port}/mcp"
        self.log_path = runs.parent / f"mcp-http-{self.port}.log"
        self.log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tilepilot", "mcp", "--transport", "http", "--host", host, "--port", str(self.port),
             *(["--token", token] if token else []), "--runs", str(runs), *root_args(roots)],
            cwd=REPO, env={**os.environ, **(env or {})}, stdout=self.log, stderr=subprocess.STDOUT)
        for _ in range(600):  # until it listens (or dies)
            if self.process.poll() is not None:
                raise RuntimeError(f"tilepilot mcp exited with {self.process.returncode}: {self.log_path.read_text()[-2000:]}")
            try:
                with socket.create_connection((host, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("tilepilot mcp --transport http did not listen within 60 s")

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


@asynccontextmanager
async def mcp_session(transport: str, runs: Path, *, http: HttpServer | None = None, env: dict[str, str] | None = None,
                      roots: Sequence[Path] = (), args: Sequence[str] = (), token: str = TOKEN,
                      **callbacks: Any) -> AsyncIterator[ClientSession]:
    """An initialized client session; ``callbacks`` go to ClientSession (elicitation_callback, list_roots_callback).

    Over stdio the server is started in the repository with ``--root`` for each of ``roots`` (none: the
    repository itself) and ``args``; over HTTP, ``http`` is the server and ``token`` its token.
    """
    if transport == "stdio":
        params = StdioServerParameters(
            command=sys.executable, args=["-m", "tilepilot", "mcp", "--runs", str(runs), *root_args(roots), *args],
            cwd=str(REPO), env={**os.environ, **(env or {})})
        async with stdio_client(params) as (read, write), ClientSession(read, write, **callbacks) as session:
            await session.initialize()
            yield session
        return
    assert http is not None
    client = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
    async with client, streamable_http_client(http.url, http_client=client) as (read, write), \
            ClientSession(read, write, **callbacks) as session:
        await session.initialize()
        yield session


def tool_error(result: Any) -> str:
    """A refused call's one line, without the SDK's own "Error executing tool NAME: " in front."""
    assert result.is_error, result.structured_content
    [text] = [c.text for c in result.content if c.type == "text"]
    assert len(text.strip().splitlines()) == 1, text
    return re.sub(r"^Error executing tool \w+: ", "", text)


def refused_without_token(url: str) -> list[int]:
    """Status codes of an initialize POST with no token and with a wrong one."""
    body = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "probe", "version": "0"}}}
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    codes = []
    for extra in ({}, {"Authorization": "Bearer wrong"}):
        codes.append(httpx2.post(url, json=body, headers={**headers, **extra}, timeout=30).status_code)
    return codes
