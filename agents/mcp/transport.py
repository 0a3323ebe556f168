"""``tilepilot mcp``: serve the MCP server over stdio (default) or streamable HTTP.

HTTP always has a token: every request without ``Authorization: Bearer <token>`` is refused with
401 before the MCP layer sees it. On loopback (the default) a token is generated when none is given,
written to a 0600 file in the state folder and printed once on stderr; any other interface needs one
given. On every loopback address the Host and Origin headers must name the address and port the
server is bound to (a web page whose name rebinds to this machine gets 421/403).
"""

from __future__ import annotations

import hmac
import os
import secrets
import signal
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Optional

import typer

from tilepilot.agents.errors import UsageError
from tilepilot.model_runtime.server import is_loopback

TOKEN_ENV = "TILEPILOT_MCP_TOKEN"
API_KEY_ENV = "TILEPILOT_API_KEY"


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


def loopback_names(host: str, port: int) -> list[str]:
    """The Host header values that name this server on loopback: the bound address and port (and localhost for it)."""
    names = [host] + (["localhost"] if host in ("127.0.0.1", "::1") else ["127.0.0.1"] if host == "localhost" else [])
    return [f"[{name}]:{port}" if ":" in name else f"{name}:{port}" for name in names]


def http_app(server: Any, host: str, port: int, token: str) -> Any:
    """The streamable-HTTP app at /mcp, behind the token gate."""
    from mcp.server.transport_security import TransportSecuritySettings

    if is_loopback(host):  # the SDK guards only its own three names by default; any loopback address needs it
        names = loopback_names(host, port)
        security = TransportSecuritySettings(allowed_hosts=names, allowed_origins=[f"http://{name}" for name in names])
    else:  # the token guards; the Host header is whatever name the clients use for this machine
        security = TransportSecuritySettings(enable_dns_rebinding_protection=False)
    return BearerTokenGate(server.streamable_http_app(host=host, transport_security=security), token)


def token_file(host: str, port: int) -> Path:
    from tilepilot.model_runtime.server import state_dir

    return state_dir() / f"mcp-http-{host}-{port}.token"


@contextmanager
def generated_token(host: str, port: int) -> Iterator[str]:
    """A new token in a 0600 file for the server's lifetime, announced once on stderr."""
    from tilepilot.agents.runs import write_atomic

    token, path = secrets.token_urlsafe(32), token_file(host, port)
    write_atomic(path, token + "\n")  # a mkstemp file: mode 0600 from the start, never readable by others
    where = f"[{host}]" if ":" in host else host
    print(f"tilepilot mcp: http://{where}:{port}/mcp needs 'Authorization: Bearer {token}' "
          f"(generated; also in {path}, mode 0600; --token or env {TOKEN_ENV} sets your own)", file=sys.stderr, flush=True)
    try:
        yield token
    finally:
        path.unlink(missing_ok=True)


def _exit_on_signal(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def serve_http(server: Any, host: str, port: int, token: Optional[str]) -> None:
    import uvicorn

    if not is_loopback(host) and not token:
        raise UsageError(f"--host {host} is not loopback: serving there needs a token (--token or env {TOKEN_ENV}), "
                         "which every request must send as 'Authorization: Bearer TOKEN'")
    # Bound here, so the Host check and the token file name the actual port (--port 0 included); uvicorn
    # listens on it once it serves, so no client connects before the token file is there.
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise UsageError(f"--host {host} --port {port}: cannot listen there ({err.strerror})") from None
    port = sock.getsockname()[1]
    # uvicorn re-raises SIGTERM once it has shut down; as an exception (not the default death) it lets the
    # generated token's file be removed on the way out.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    with sock, (nullcontext(token) if token else generated_token(host, port)) as bearer:
        uvicorn.Server(uvicorn.Config(http_app(server, host, port, bearer), log_level="warning")).run(sockets=[sock])


def mcp_command(
    transport: str = typer.Option("stdio", "--transport", "-t", help="stdio (for a client that starts tilepilot) or http "
                                  "(streamable HTTP at http://HOST:PORT/mcp)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface for http; anything but loopback needs --token."),
    port: int = typer.Option(8766, "--port", min=0, max=65535, help="Port for http."),
    token: Optional[str] = typer.Option(None, "--token", envvar=TOKEN_ENV, help="Bearer token every HTTP request must "
                                        f"send (env {TOKEN_ENV}; default on loopback: a new one, printed once and "
                                        "saved in a 0600 file in the state folder)."),
    runs: Path = typer.Option(Path("runs"), "--runs", help="Folder for the run folders of calls that give no out."),
    root: Optional[list[Path]] = typer.Option(None, "--root", help="A folder callers' paths may lead into (repeatable; "
                                              "default: the current folder). A client that declares roots replaces them."),
    base_url: Optional[list[str]] = typer.Option(None, "--base-url", help="Model server(s) for calls that name none "
                                                 f"(default: env TILEPILOT_BASE_URL, else the managed one); the only "
                                                 f"ones that get env {API_KEY_ENV}."),
    allow_server: Optional[list[str]] = typer.Option(None, "--allow-server", help="A model server callers may name as "
                                                     "base_url besides loopback ones (repeatable); it gets no API key."),
) -> None:
    """Serve tilepilot's agents as MCP tools (review, desktop, listen, rules, serve status) to other agents."""
    from tilepilot.tools.extras import check

    check("mcp", "tilepilot mcp")
    from tilepilot.agents.mcp.server import build_server
    from tilepilot.agents.mcp.servers import ModelServers

    if transport not in ("stdio", "http"):
        raise UsageError(f"--transport must be stdio or http, got {transport!r}")
    missing = [folder for folder in root or () if not folder.expanduser().is_dir()]
    if missing:
        raise UsageError(f"--root {missing[0]}: no such folder")
    # Out of the environment, so that nothing in this process sends the key anywhere but where ModelServers says.
    servers = ModelServers.of(base_url or [], allow_server or [], os.environ.pop(API_KEY_ENV, None))
    if not root and Path.cwd() == Path(Path.cwd().anchor):  # e.g. a desktop client that starts servers in /
        print("tilepilot mcp: started in /, so every path on this machine is inside the roots unless the client "
              "declares its own; pass --root FOLDER", file=sys.stderr, flush=True)
    server = build_server(runs.resolve(), root or [Path.cwd()], servers)
    if transport == "stdio":
        server.run("stdio")
        return
    serve_http(server, host, port, token or os.environ.get(TOKEN_ENV) or None)


def register(app: typer.Typer) -> None:
    app.command("mcp")(mcp_command)
