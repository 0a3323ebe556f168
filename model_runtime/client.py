"""The one place that sends chat requests to the model server.

``ChatClient.chat`` sends typed messages, optionally constrained to a pydantic model's JSON
schema (``response_format: json_schema``; xgrammar on the server), and returns the parsed object
with the server's token usage and the client's own estimate. It retries transient failures with
backoff, spreads requests over several replicas, and turns every failure into one
``ModelRuntimeError`` with a one-line message.
"""

from __future__ import annotations

import itertools
import json
import random
import threading
import time
from collections.abc import Sequence
from typing import Generic, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from model_runtime.errors import (
    ContextOverflowError,
    InvalidOutputError,
    ModelNotServedError,
    ServerError,
    ServerUnreachableError,
)
from model_runtime.payloads import Message, encode_messages
from model_runtime.profiles import ModelProfile

T = TypeVar("T", bound=BaseModel)

RETRYABLE_STATUS = {408, 429, 500, 502, 503, 504}


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int


class ChatResult(BaseModel, Generic[T]):
    parsed: T | None = None
    text: str
    usage: Usage
    estimated_prompt_tokens: int | None = None
    attempts: int = 1
    latency_s: float
    base_url: str


def normalize_base_url(url: str) -> str:
    url = url.strip().rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


def _repair_json(text: str) -> str:
    """Cheap, safe repairs: strip code fences and text around the outermost JSON object."""
    text = text.strip()
    if text.startswith("```"):
        text = text.strip("`")
        text = text[text.find("\n") + 1 :] if "\n" in text else text
    start, end = text.find("{"), text.rfind("}")
    return text[start : end + 1] if 0 <= start < end else text


class ChatClient:
    """A thread-safe client for one served model, over one or more replicas (a :class:`~model_runtime.chat_model.ChatModel`)."""

    def __init__(
        self,
        base_urls: Sequence[str],
        profile: ModelProfile,
        *,
        timeout_s: float = 300.0,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        api_key: str | None = None,
    ) -> None:
        if not base_urls:
            raise ValueError("at least one base URL is needed")
        self.base_urls = [normalize_base_url(u) for u in base_urls]
        self.profile = profile
        self.model = profile.served_name
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(timeout=httpx.Timeout(timeout_s, connect=5.0), headers=headers)
        self._next = itertools.cycle(range(len(self.base_urls)))
        self._lock = threading.Lock()

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "ChatClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _pick(self) -> str:
        with self._lock:
            return self.base_urls[next(self._next)]

    # -- health -------------------------------------------------------------------------------

    def check(self) -> None:
        """Fail fast, with a one-line message, if a replica is down or does not serve the model."""
        for url in self.base_urls:
            try:
                r = self._http.get(f"{url}/v1/models", timeout=10.0)
            except httpx.HTTPError as err:
                raise ServerUnreachableError(
                    f"cannot reach the model server at {url} ({type(err).__name__}); "
                    "start one with `tilepilot serve start` or pass --base-url"
                ) from None
            if r.status_code in (401, 403):
                raise ServerUnreachableError(f"the model server at {url} refused the API key (HTTP {r.status_code})")
            served = [m.get("id") for m in r.json().get("data", [])] if r.status_code == 200 else []
            if self.model not in served:
                raise ModelNotServedError(
                    f"the server at {url} does not serve {self.model!r} (it serves: {', '.join(served) or 'nothing'})"
                )

    # -- counting -----------------------------------------------------------------------------

    def count_prompt_tokens(self, messages: list[Message], image_budget: int | None = None) -> int:
        """Exact prompt tokens: text through the server's /tokenize, media by the budget math."""
        enc = encode_messages(messages, self.profile, image_budget or self.profile.vision.default_max_soft_tokens)
        return self._count_encoded(enc)

    def _count_encoded(self, enc) -> int:
        body = {"model": self.model, "messages": enc.placeholder_messages, "add_generation_prompt": True}
        data = self._post_json("/tokenize", body)
        # Each placeholder is one token in the text count and is replaced by its media tokens.
        return int(data["count"]) - enc.media_count + enc.media_tokens

    # -- chat ---------------------------------------------------------------------------------

    def chat(
        self,
        messages: list[Message],
        *,
        schema: type[T] | None = None,
        temperature: float = 0.0,
        max_tokens: int = 512,
        image_budget: int | None = None,
        estimate: bool = True,
        thinking: bool = False,
        output_attempts: int = 3,
    ) -> ChatResult[T]:
        """One chat request. ``temperature`` is always sent: the checkpoint's generation_config
        would otherwise override vLLM's defaults. Invalid structured output is repaired, then
        retried at a rising temperature, then raised as ``InvalidOutputError``."""
        budget = image_budget or self.profile.vision.default_max_soft_tokens
        enc = encode_messages(messages, self.profile, budget)
        estimated = self._count_encoded(enc) if estimate else None
        body: dict = {
            "model": self.model,
            "messages": enc.messages,
            "max_tokens": max_tokens,
            "mm_processor_kwargs": {"max_soft_tokens": budget},
            "chat_template_kwargs": {"enable_thinking": thinking},
        }
        if schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": schema.__name__, "schema": schema.model_json_schema(), "strict": True},
            }
        started = time.monotonic()
        last_problem = ""
        for attempt in range(1, output_attempts + 1):
            body["temperature"] = temperature if attempt == 1 else min(temperature + 0.3 * (attempt - 1), 1.5)
            data, url = self._post_chat(body)
            text = data["choices"][0]["message"].get("content") or ""
            usage = Usage(**{k: data["usage"][k] for k in ("prompt_tokens", "completion_tokens")})
            result = ChatResult[schema or BaseModel](  # type: ignore[index]
                text=text,
                usage=usage,
                estimated_prompt_tokens=estimated,
                attempts=attempt,
                latency_s=time.monotonic() - started,
                base_url=url,
            )
            if schema is None:
                return result
            for candidate in (text, _repair_json(text)):
                try:
                    # strict=False: xgrammar lets raw control characters into JSON strings, which a
                    # strict parser rejects; they are harmless in our string fields.
                    result.parsed = schema.model_validate(json.loads(candidate, strict=False))
                    return result
                except (ValidationError, ValueError) as err:
                    last_problem = " ".join(str(err).split())[:200]
        raise InvalidOutputError(
            f"the model's output did not match {schema.__name__} after {output_attempts} attempts ({last_problem})"
        )

    # -- transport ----------------------------------------------------------------------------

    def _post_chat(self, body: dict) -> tuple[dict, str]:
        return self._post_json("/v1/chat/completions", body, with_url=True)

    def _post_json(self, path: str, body: dict, with_url: bool = False):
        last = ""
        for attempt in range(self.max_retries + 1):
            url = self._pick()
            try:
                r = self._http.post(url + path, json=body)
            except httpx.TimeoutException:
                last = f"the model server at {url} did not answer within {self._http.timeout.read:.0f} s"
            except httpx.ConnectError:
                last = f"cannot reach the model server at {url}"
            except httpx.HTTPError as err:
                last = f"the model server at {url} dropped the connection ({type(err).__name__})"
            else:
                if r.status_code == 200:
                    try:
                        data = r.json()
                    except json.JSONDecodeError:
                        last = f"{url} returned a response that is not JSON"
                    else:
                        return (data, url) if with_url else data
                elif r.status_code == 400:
                    raise ContextOverflowError(_overflow_message(r)) if _is_overflow(r) else ServerError(
                        f"the model server rejected the request: {_error_text(r)}"
                    )
                elif r.status_code == 404:
                    raise ModelNotServedError(f"{url} does not serve {self.model!r}: {_error_text(r)}")
                elif r.status_code not in RETRYABLE_STATUS:
                    raise ServerError(f"the model server at {url} answered HTTP {r.status_code}: {_error_text(r)}")
                else:
                    last = f"the model server at {url} answered HTTP {r.status_code}"
            if attempt < self.max_retries:
                time.sleep(self.backoff_s * (2**attempt) * (1 + 0.25 * random.random()))
        if last.startswith("cannot reach"):
            raise ServerUnreachableError(f"{last}; start one with `tilepilot serve start` or pass --base-url")
        raise ServerError(f"{last} (gave up after {self.max_retries + 1} attempts)")


def _error_text(r: httpx.Response) -> str:
    try:
        msg = r.json().get("error", {})
        msg = msg.get("message", "") if isinstance(msg, dict) else str(msg)
    except (json.JSONDecodeError, AttributeError):
        msg = r.text
    return " ".join(str(msg).split())[:300]


def _is_overflow(r: httpx.Response) -> bool:
    text = _error_text(r).lower()
    return any(k in text for k in ("context length", "maximum context", "max_model_len", "too long", "exceeds"))


def _overflow_message(r: httpx.Response) -> str:
    return f"the request does not fit the model's context: {_error_text(r)}"
