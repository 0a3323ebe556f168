"""A fault-injecting HTTP proxy on loopback, in front of the real vLLM server.

Tests script what the next requests suffer: a delay, an HTTP 500, a dropped connection, or a
chat answer whose content is replaced by invalid JSON. Everything else is forwarded unchanged,
and every request body is recorded so tests can see what the client sent (retries, temperature).
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

FAULTS = ("delay", "500", "close", "bad_json", "overflow", "unparsed")


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.delay_s = 0.0  # applied to every request while set
        self.queue: deque[str] = deque()  # one fault per upcoming chat request
        self.always: str | None = None  # a fault for every chat request
        self.requests: list[dict] = []  # recorded chat request bodies
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> "FaultProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _next_fault(self, path: str) -> str | None:
        if not path.endswith("/chat/completions"):
            return None
        with self._lock:
            return self.queue.popleft() if self.queue else self.always

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def _forward(self, method: str) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) if method == "POST" else None
                fault = proxy._next_fault(self.path)
                if body and self.path.endswith("/chat/completions"):
                    with proxy._lock:
                        proxy.requests.append(json.loads(body))
                if proxy.delay_s or fault == "delay":
                    time.sleep(proxy.delay_s or 5.0)
                if fault == "500":
                    return self._reply(500, b'{"error": {"message": "injected fault"}}')
                if fault == "overflow":  # what vLLM answers when a prompt exceeds max_model_len
                    return self._reply(400, b'{"error": {"message": "This model\'s maximum context length is '
                                            b'32768 tokens. However, you requested 40000 tokens."}}')
                if fault == "unparsed":  # llama-server's chat parser refusing the model's own output
                    return self._reply(500, b'{"error": {"code": 500, "message": "The model produced output that '
                                            b'does not match the expected peg-native format", "type": "server_error"}}')
                if fault == "close":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                headers = {"content-type": self.headers.get("content-type", "application/json")}
                r = httpx.request(method, proxy.upstream + self.path, content=body, headers=headers, timeout=300)
                content = r.content
                if fault == "bad_json" and r.status_code == 200:
                    data = r.json()
                    data["choices"][0]["message"]["content"] = '{"truncated": [1, 2'
                    content = json.dumps(data).encode()
                self._reply(r.status_code, content)

            def _reply(self, status: int, content: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def do_GET(self):
                self._forward("GET")

            def do_POST(self):
                self._forward("POST")

        return Handler
