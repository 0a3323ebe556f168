"""``tilepilot mcp``: serve the MCP server over stdio (default) or streamable HTTP.

HTTP binds loopback by default. Any other interface needs a token, and then every request
without ``Authorization: Bearer <token>`` is refused with 401 before the MCP layer sees it. A
token given on loopback is enforced the same way.
"""

from __future__ import annotations

import hmac
import os
from pathlib import Path
from typing import Any, Optional

import typer

from tilepilot.agents.errors import UsageError
from tilepilot.model_runtime.server import is_loopback

TOKEN_ENV = "TILEPILOT_MCP_TOKEN"


class BearerTokenGate:
    """ASGI middleware: HTTP requests must carry the token; others get 401 and never reach the app."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            given = dict(scope.get("headers") or ()).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                await send({"type": "http.response.start", "status": 401,
                            "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")]})
                await send({"type": "http.response.body", "body": b'{"error": "missing or wrong bearer token"}'})
                return
        await self.app(scope, receive, send)


def http_app(server: Any, host: str, token: Optional[str]) -> Any:
    """The streamable-HTTP app at /mcp, behind the token gate when there is a token."""
    from mcp.server.transport_security import TransportSecuritySettings

    if not is_loopback(host) and not token:
        raise UsageError(f"--host {host} is not loopback: serving there needs a token (--token or env {TOKEN_ENV}), "
                         "which every request must send as 'Authorization: Bearer TOKEN'")
    # On loopback the SDK's DNS-rebinding check guards browsers; elsewhere the token does, and the
    # Host header is whatever name the clients use for this machine.
    security = None if is_loopback(host) else TransportSecuritySettings(enable_dns_rebinding_protection=False)
    app = server.streamable_http_app(host=host, transport_security=security)
    return BearerTokenGate(app, token) if token else app


def mcp_command(
    transport: str = typer.Option("stdio", "--transport", "-t", help="stdio (for a client that starts tilepilot) or http "
                                  "(streamable HTTP at http://HOST:PORT/mcp)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface for http; anything but loopback needs --token."),
    port: int = typer.Option(8766, "--port", min=0, max=65535, help="Port for http."),
    token: Optional[str] = typer.Option(None, "--token", envvar=TOKEN_ENV, help="Bearer token every HTTP request must "
                                        f"send (env {TOKEN_ENV})."),
    runs: Path = typer.Option(Path("runs"), "--runs", help="Folder for the run folders of calls that give no out."),
) -> None:
    """Serve tilepilot's agents as MCP tools (review, desktop, listen, rules, serve status) to other agents."""
    from tilepilot.tools.extras import check

    check("mcp", "tilepilot mcp")
    from tilepilot.agents.mcp.server import build_server

    if transport not in ("stdio", "http"):
        raise UsageError(f"--transport must be stdio or http, got {transport!r}")
    server = build_server(runs.resolve())
    if transport == "stdio":
        server.run("stdio")
        return
    import uvicorn

    app = http_app(server, host, token or os.environ.get(TOKEN_ENV) or None)
    uvicorn.run(app, host=host, port=port, log_level="warning")


def register(app: typer.Typer) -> None:
    app.command("mcp")(mcp_command)
