"""A loopback proxy in front of the real model server that takes ``done`` and ``fail`` out of the reply schema.

tilepilot always offers ``done`` and ``fail`` (a run can always end), and the random-weight tiny model
picks one within a few steps. Tests that need a real-model run of a fixed length (history eviction,
kill and resume) point the CLI at this proxy: every request still goes to the real vLLM server and the
answers are its own, only the schema's terminal branches are removed on the way, so the run reaches
its step limit.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

TERMINAL = ("done", "fail")


def screen_actions_only(schema: dict) -> dict:
    defs = schema.get("$defs", {})
    terminal = {name for name, d in defs.items() if d.get("properties", {}).get("kind", {}).get("const") in TERMINAL}
    union = schema.get("properties", {}).get("action", {})
    if not terminal or "oneOf" not in union:
        return schema
    union["oneOf"] = [ref for ref in union["oneOf"] if ref["$ref"].rsplit("/", 1)[-1] not in terminal]
    mapping = union.get("discriminator", {}).get("mapping", {})
    for kind in TERMINAL:
        mapping.pop(kind, None)
    for name in terminal:
        del defs[name]
    return schema


def _narrow(body: bytes) -> bytes:
    try:
        request = json.loads(body)
        schema = request["response_format"]["json_schema"]["schema"]
    except (ValueError, KeyError, TypeError):
        return body
    request["response_format"]["json_schema"]["schema"] = screen_actions_only(schema)
    return json.dumps(request).encode()


@contextmanager
def screen_only_proxy(upstream: str) -> Iterator[str]:
    """Serve on a free loopback port; yields its base URL (same path layout as ``upstream``)."""
    # The client keeps the upstream's path (e.g. /v1) after the proxy's root, so requests go to root + path.
    upstream = upstream.rstrip("/")
    root = upstream.split("/v1")[0]
    suffix = upstream[len(root):]
    client = httpx.Client(timeout=600)

    class Handler(BaseHTTPRequestHandler):
        def _forward(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if method == "POST" and self.path.endswith("/chat/completions"):
                body = _narrow(body)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
            reply = client.request(method, root + self.path, content=body, headers=headers)
            self.send_response(reply.status_code)
            for key, value in reply.headers.items():
                if key.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(reply.content)))
            self.end_headers()
            self.wfile.write(reply.content)

        def do_GET(self) -> None:  # noqa: N802 (http.server's names)
            self._forward("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._forward("POST")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}{suffix}"
    finally:
        server.shutdown()
        server.server_close()
        client.close()
