"""The chat client's transport: JSON over HTTP to one or more replicas, with retries and typed errors.

Requests go round-robin over the replicas; timeouts, dropped connections and transient statuses
(:data:`RETRYABLE_STATUS`) are retried with jittered backoff. Every failure leaves as one typed
:class:`~tilepilot.model_runtime.errors.ModelRuntimeError` with a one-line message; the server's own words
ride along as ``detail`` where it gave any, so callers decide from the type and the server's text, never
from this module's wording. Safe to share between threads (httpx.Client is; the replica cursor is locked).
"""

from __future__ import annotations

import itertools
import json
import random
import threading
import time
from collections.abc import Sequence

import httpx

from tilepilot.model_runtime.errors import (
    ContextOverflowError,
    ModelNotServedError,
    RequestRejectedError,
    ServerCrashedError,
    ServerError,
    ServerUnreachableError,
    UnparsedOutputError,
)
from tilepilot.model_runtime.probe import about_format, key_refused
from tilepilot.model_runtime.server import crash_report

RETRYABLE_STATUS = {408, 429, 500, 502, 503, 504}
CHAT_PATH = "/v1/chat/completions"


def normalize_base_url(url: str) -> str:
    url = url.strip().rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


class Transport:
    """POSTs JSON to the replicas in turn; one instance per client, shared by its threads."""

    def __init__(self, base_urls: Sequence[str], *, timeout_s: float = 300.0, max_retries: int = 3,
                 backoff_s: float = 0.5, api_key: str | None = None) -> None:
        if not base_urls:
            raise ValueError("at least one base URL is needed")
        self.base_urls = [normalize_base_url(u) for u in base_urls]
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(timeout=httpx.Timeout(timeout_s, connect=5.0), headers=headers)
        self._next = itertools.cycle(range(len(self.base_urls)))
        self._lock = threading.Lock()

    def close(self) -> None:
        self.http.close()

    @property
    def closed(self) -> bool:
        return self.http.is_closed

    def _pick(self) -> str:
        with self._lock:
            return self.base_urls[next(self._next)]

    def post_json(self, path: str, body: dict) -> dict:
        """The JSON object a replica answered to ``body`` at ``path``."""
        return self.post(path, body)[0]

    def post(self, path: str, body: dict) -> tuple[dict, str]:
        """The JSON object a replica answered, and that replica's base URL."""
        last = detail = ""
        unreachable = False  # the last attempt found no server at all (then a managed one may have crashed)
        url = self.base_urls[0]
        for attempt in range(self.max_retries + 1):
            url = self._pick()
            unreachable = False
            try:
                r = self.http.post(url + path, json=body)
            except httpx.TimeoutException:
                last = f"the model server at {url} did not answer within {self.http.timeout.read:.0f} s"
            except httpx.ConnectError:
                last, unreachable = f"cannot reach the model server at {url}", True
            except httpx.HTTPError as err:
                last = f"the model server at {url} dropped the connection ({type(err).__name__})"
            else:
                if r.status_code == 200:
                    try:
                        data = r.json()
                    except json.JSONDecodeError:
                        last = f"{url} returned a response that is not JSON"
                    else:
                        if not isinstance(data, dict):
                            raise ServerError(f"{url}{path} answered JSON that is not an object")
                        return data, url
                else:
                    refusal = _refusal(r, url, path, body)
                    if refusal is not None:
                        raise refusal
                    detail = error_text(r)
                    last = f"the model server at {url} answered HTTP {r.status_code}: {detail[:200]}"
            if attempt < self.max_retries:
                time.sleep(self.backoff_s * (2**attempt) * (1 + 0.25 * random.random()))
        if unreachable:
            if crashed := crash_report(url):  # a managed server that died: say so, with its cause
                raise ServerCrashedError(crashed)
            raise ServerUnreachableError(f"{last}; start one with `tilepilot serve start` or pass --base-url")
        # The server's own words of the last answer ride along: a 500 that refuses an image is told apart there.
        raise ServerError(f"{last} (gave up after {self.max_retries + 1} attempts)", detail=detail)


def _refusal(r: httpx.Response, url: str, path: str, body: dict) -> Exception | None:
    """The error of a non-200 answer that retrying cannot change, or None for a transient one."""
    if refused := key_refused(r):
        return refused
    detail = error_text(r)
    if r.status_code in (400, 422):
        if is_overflow(detail):
            return ContextOverflowError(f"the request does not fit the model's context: {detail}", detail=detail)
        return RequestRejectedError(f"the model server rejected the request: {detail}", detail=detail)
    if r.status_code == 500 and about_format(detail):
        # llama-cpp-python answers an unknown response_format with a 500: a refusal, not a hiccup.
        return RequestRejectedError(f"the model server rejected the request: {detail}", detail=detail)
    if r.status_code == 500 and "model produced output that does not match" in detail.lower():
        return UnparsedOutputError(f"the model server at {url} could not parse the model's output: {detail}",
                                   detail=detail)
    if r.status_code == 404 and path == CHAT_PATH and _about_model(detail):
        return ModelNotServedError(f"{url} does not serve {body.get('model')!r}: {detail}")
    if r.status_code not in RETRYABLE_STATUS:
        return ServerError(f"the model server at {url} answered HTTP {r.status_code} to {path}: {detail}", detail=detail)
    return None


def error_text(r: httpx.Response) -> str:
    """The server's own error message, on one line."""
    try:
        msg = r.json().get("error", {})
        msg = msg.get("message", "") if isinstance(msg, dict) else str(msg)
    except (json.JSONDecodeError, AttributeError):
        msg = r.text
    return " ".join(str(msg).split())[:300]


def is_overflow(detail: str) -> bool:
    text = detail.lower()
    return any(k in text for k in ("context length", "maximum context", "max_model_len", "too long", "exceed",
                                   "context window", "n_ctx"))


def _about_model(text: str) -> bool:
    text = text.lower()
    return "model" in text and any(k in text for k in ("not exist", "not found", "unknown", "does not"))
