"""The one place that sends chat requests to the model server.

``ChatClient.chat`` sends typed messages, optionally constrained to a pydantic model's JSON
schema (``response_format: json_schema``; xgrammar on the server), and returns the parsed object
with the server's token usage and the client's own estimate. It retries transient failures with
backoff, spreads requests over several replicas, and turns every failure into one
``ModelRuntimeError`` with a one-line message.

``check()`` probes the server (:mod:`tilepilot.model_runtime.probe`) and the client adapts to what it finds:
the served id, the smaller ``max_model_len`` (``client.profile`` then carries it, so every agent
sizes its requests by it), exact counts or a margin-padded estimate corrected from usage, the
structured-output flavour, and whether images are taken. What it learns later (a drift, a
flavour, an overflow naming a smaller context) goes to ``on_event`` (a run's event log).
"""

from __future__ import annotations

import itertools
import json
import random
import threading
import time
from collections.abc import Sequence
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from tilepilot.model_runtime.counting import Corrector, char_estimate, llama_chat_count, template_overhead
from tilepilot.model_runtime.errors import (
    ContextOverflowError,
    ImagesNotSupportedError,
    InvalidOutputError,
    ModelNotServedError,
    ServerCrashedError,
    ServerError,
    ServerUnreachableError,
)
from tilepilot.model_runtime.payloads import EncodedRequest, ImagePart, Message, encode_messages
from tilepilot.model_runtime.probe import (
    EXACT,
    MARGINS,
    about_format,
    about_images,
    ServerCapabilities,
    fit_profile,
    lenient_json,
    plain_messages,
    limit_from_error,
    probe_image,
    probe_images,
    probe_server,
    probe_structured,
    response_format,
)
from tilepilot.model_runtime.profiles import ModelProfile
from tilepilot.model_runtime.server import crash_report

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
    exact: bool = True  # False: the estimate is the server-less count plus a safety margin
    attempts: int = 1
    latency_s: float
    base_url: str


def normalize_base_url(url: str) -> str:
    url = url.strip().rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


EventSink = Callable[..., None]  # called as sink(kind, **fields), like Run.emit


class ChatClient:
    """A thread-safe client for one served model, over one or more replicas (a :class:`~tilepilot.model_runtime.chat_model.ChatModel`)."""

    def __init__(
        self,
        base_urls: Sequence[str],
        profile: ModelProfile,
        *,
        timeout_s: float = 300.0,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        api_key: str | None = None,
        served_name: str | None = None,
        on_event: EventSink | None = None,
    ) -> None:
        if not base_urls:
            raise ValueError("at least one base URL is needed")
        self.base_urls = [normalize_base_url(u) for u in base_urls]
        self.declared_profile = profile  # before a server's smaller context is applied
        self.profile = profile
        self.served_name = served_name
        self.model = served_name or profile.served_name
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.on_event = on_event
        # Until check() probes the server, count as vLLM does (exact /tokenize).
        self.capabilities: ServerCapabilities | None = None
        self._corrector = Corrector(0.0)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(timeout=httpx.Timeout(timeout_s, connect=5.0), headers=headers)
        self._next = itertools.cycle(range(len(self.base_urls)))
        self._lock = threading.Lock()
        self._probe_lock = threading.Lock()

    def close(self) -> None:
        self._http.close()

    @property
    def closed(self) -> bool:
        return self._http.is_closed

    def __enter__(self) -> "ChatClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _pick(self) -> str:
        with self._lock:
            return self.base_urls[next(self._next)]

    def _emit(self, kind: str, **fields: Any) -> None:
        if self.on_event is not None:
            self.on_event(kind, **fields)

    # -- probe --------------------------------------------------------------------------------

    def check(self) -> ServerCapabilities:
        """Probe every replica (one line if one is down or serves another model) and adapt to them.

        Replicas must serve the same id; the smallest context and the least exact counting win.
        """
        found = [probe_server(self._http, url, self.declared_profile, self.served_name) for url in self.base_urls]
        caps = found[0]
        ids = sorted({c.served_id for c in found})
        if len(ids) > 1:
            raise ModelNotServedError(f"the replicas serve different models ({', '.join(ids)}); pick one with --served-name")
        if len({c.counting for c in found}) > 1:
            caps = caps.model_copy(update={"counting": "estimate", "margin": MARGINS["estimate"]})
        smallest = min(found, key=lambda c: c.max_model_len)
        caps = caps.model_copy(update={k: getattr(smallest, k) for k in
                                       ("server_max_model_len", "max_model_len", "max_model_len_source")})
        self.capabilities = caps
        self.model = caps.served_id
        self.profile = fit_profile(self.declared_profile, caps.max_model_len)
        self._corrector = Corrector(caps.margin)
        return caps

    def probe_all(self) -> ServerCapabilities:
        """:meth:`check`, then the probes that cost a chat request (images, structured output)."""
        caps = self.check()
        self._probe_images()
        caps.structured_output = probe_structured(self._post_body, self.model)
        return caps

    @property
    def exact(self) -> bool:
        return self.capabilities is None or self.capabilities.exact

    def _probe_images(self) -> str:
        caps = self.capabilities
        if caps is None:
            return "unchecked"
        with self._probe_lock:
            if caps.images == "unchecked":
                enc = encode_messages([Message(role="user", parts=[ImagePart(image=probe_image())])], self.profile, 70)
                caps.images = probe_images(self._post_body, self.model, enc.media_tokens, enc.messages[0]["content"][0])
                self._emit("server_capability", images=caps.images)
        return caps.images

    def _no_images(self) -> ImagesNotSupportedError:
        return ImagesNotSupportedError(
            f"this server/model takes no images ({self.model!r} at {', '.join(self.base_urls)}); "
            "ask without images, or use a multimodal model such as the tiny one or Gemma 4"
        )

    # -- counting -----------------------------------------------------------------------------

    def count_prompt_tokens(self, messages: list[Message], image_budget: int | None = None) -> int:
        """Prompt tokens: exact where the server counts (vLLM's /tokenize), else a padded estimate."""
        enc = encode_messages(messages, self.profile, image_budget or self.profile.vision.default_max_soft_tokens)
        return self._count_encoded(enc)[0]

    def _count_encoded(self, enc: EncodedRequest) -> tuple[int, int]:
        """(count to plan with, raw count before correction and margin)."""
        counting = self.capabilities.counting if self.capabilities else "vllm"
        if counting == "vllm":
            body = {"model": self.model, "messages": enc.placeholder_messages, "add_generation_prompt": True}
            data = self._post_json("/tokenize", body)
            count = data.get("count") if isinstance(data, dict) else None
            if not isinstance(count, int):
                count = len(data.get("tokens") or []) if isinstance(data, dict) else 0
            if count <= 0:
                raise ServerError(f"the model server's /tokenize answered no tokens ({str(data)[:80]})")
            # Each placeholder is one token in the text count and is replaced by its media tokens.
            exact = count - enc.media_count + enc.media_tokens
            return exact, exact
        if counting == "llama.cpp-chat":
            exact = llama_chat_count(self._post_json, self._wire(enc), enc, self.profile)
            return exact, exact
        texts = [p["text"] for m in enc.messages for p in m["content"] if p.get("type") == "text"]
        text = "\n".join(texts)
        if counting == "llama.cpp":
            text_tokens = len(self._post_json("/tokenize", {"content": text}).get("tokens") or [])
        elif counting == "llama-cpp-python":
            text_tokens = len(self._post_json("/extras/tokenize", {"input": text, "model": self.model}).get("tokens") or [])
        else:
            text_tokens = char_estimate(text)
        raw = text_tokens + template_overhead(len(enc.messages)) + enc.media_tokens
        return self._corrector.padded(raw), raw

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
        if enc.image_grids and not self.exact and self._probe_images() == "none":
            raise self._no_images()  # an inexact count cannot tell a dropped image: probed once instead
        if enc.image_grids and self.capabilities is not None and self.capabilities.images == "none":
            raise self._no_images()
        estimated, raw = self._count_encoded(enc) if estimate or not self.exact else (None, 0)
        body: dict = {
            "model": self.model,
            "messages": self._wire(enc),
            "max_tokens": max_tokens,
            "mm_processor_kwargs": {"max_soft_tokens": budget},
            "chat_template_kwargs": {"enable_thinking": thinking},
        }
        started = time.monotonic()
        last_problem = ""
        for attempt in range(1, output_attempts + 1):
            body["temperature"] = temperature if attempt == 1 else min(temperature + 0.3 * (attempt - 1), 1.5)
            data, url = self._send_chat(body, schema, enc)
            try:
                text = data["choices"][0]["message"].get("content") or ""
                usage = Usage(**{k: data["usage"][k] for k in ("prompt_tokens", "completion_tokens")})
            except (KeyError, IndexError, TypeError, AttributeError, ValidationError):
                raise ServerError(f"{url} answered a chat request without choices or usage") from None
            if attempt == 1:
                self._learn(enc, estimated, raw, usage.prompt_tokens)
            result = ChatResult[schema or BaseModel](  # type: ignore[index]
                text=text,
                usage=usage,
                estimated_prompt_tokens=estimated,
                # A server that picks its own image size (budgets ignored) makes image counts inexact.
                exact=self.exact and not (enc.image_grids and self.capabilities is not None
                                          and self.capabilities.images == "ignored"),
                attempts=attempt,
                latency_s=time.monotonic() - started,
                base_url=url,
            )
            if schema is None:
                return result
            for candidate in (text, lenient_json(text)):
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

    def _wire(self, enc: EncodedRequest) -> list[dict]:
        """vLLM gets the parts as they are (its /tokenize counted exactly those); others the plainest form."""
        vllm = self.capabilities is None or self.capabilities.counting == "vllm"
        return enc.messages if vllm else plain_messages(enc.messages)

    def _send_chat(self, body: dict, schema: type[BaseModel] | None, enc: EncodedRequest) -> tuple[dict, str]:
        """Post one chat body; until a schema request has worked, a refused flavour steps down
        json_schema -> grammar -> none (then the answer is parsed leniently and validated)."""
        caps = self.capabilities
        known = caps.structured_output if caps is not None else "json_schema"
        trying = known == "unchecked"
        flavours = ["json_schema", "grammar", "none"] if trying else [known]
        while True:
            body.pop("response_format", None)
            if schema is not None and (fmt := response_format(schema, flavours[0])) is not None:
                body["response_format"] = fmt
            try:
                data, url = self._post_chat(body)
            except ContextOverflowError as err:
                self._learn_limit(str(err))
                raise
            except ServerError as err:
                if enc.image_grids and caps is not None and caps.images == "unchecked" and about_images(str(err)):
                    caps.images = "none"
                    self._emit("server_capability", images="none", reason=str(err)[:200])
                    raise self._no_images() from None
                refused = "rejected the request" in str(err) or about_format(str(err))
                if schema is None or not trying or len(flavours) == 1 or not refused:
                    raise
                self._emit("server_capability", refused=flavours.pop(0), reason=str(err)[:200])
                continue
            if schema is not None and trying and caps is not None:
                caps.structured_output = flavours[0]  # type: ignore[assignment]
                self._emit("server_capability", structured_output=flavours[0])
            return data, url

    def _learn(self, enc: EncodedRequest, estimated: int | None, raw: int, actual: int) -> None:
        """Correct inexact counts from usage; on an exact server, an image miscount means ignored budgets."""
        caps = self.capabilities
        if caps is None or estimated is None:
            return
        if not caps.exact:
            self._emit("token_drift", **self._corrector.learn(raw, estimated, actual).model_dump())
            return
        if enc.image_grids and caps.images == "unchecked":
            caps.images = "honoured" if actual == estimated else "ignored"
            self._emit("server_capability", images=caps.images, estimated=estimated, actual=actual)
        elif actual != estimated:
            self._emit("token_drift", estimated=estimated, raw=raw, actual=actual, drift=actual - estimated, scale=1.0)

    def _learn_limit(self, message: str) -> None:
        limit = limit_from_error(message)
        if limit and limit < self.profile.max_model_len:
            self.profile = fit_profile(self.profile, limit)
            if self.capabilities is not None:
                self.capabilities.server_max_model_len = limit
                self.capabilities.max_model_len = limit
                self.capabilities.max_model_len_source = "server"
            self._emit("max_model_len_learned", max_model_len=limit, input_budget=self.profile.input_budget)

    # -- transport ----------------------------------------------------------------------------

    def _post_chat(self, body: dict) -> tuple[dict, str]:
        return self._post_json("/v1/chat/completions", body, with_url=True)

    def _post_body(self, body: dict) -> dict:
        return self._post_json("/v1/chat/completions", body)

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
                        if not isinstance(data, dict):
                            raise ServerError(f"{url}{path} answered JSON that is not an object")
                        return (data, url) if with_url else data
                elif r.status_code in (400, 422):
                    raise ContextOverflowError(_overflow_message(r)) if _is_overflow(r) else ServerError(
                        f"the model server rejected the request: {_error_text(r)}"
                    )
                elif r.status_code == 500 and about_format(_error_text(r)):
                    # llama-cpp-python answers an unknown response_format with a 500: a refusal, not a hiccup.
                    raise ServerError(f"the model server rejected the request: {_error_text(r)}")
                elif r.status_code == 404 and path == "/v1/chat/completions" and _about_model(_error_text(r)):
                    raise ModelNotServedError(f"{url} does not serve {self.model!r}: {_error_text(r)}")
                elif r.status_code not in RETRYABLE_STATUS:
                    raise ServerError(f"the model server at {url} answered HTTP {r.status_code} to {path}: {_error_text(r)}")
                else:
                    last = f"the model server at {url} answered HTTP {r.status_code}: {_error_text(r)[:200]}"
            if attempt < self.max_retries:
                time.sleep(self.backoff_s * (2**attempt) * (1 + 0.25 * random.random()))
        if last.startswith("cannot reach"):
            if crashed := crash_report(url):  # a managed server that died: say so, with its cause
                raise ServerCrashedError(crashed)
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
    return any(k in text for k in ("context length", "maximum context", "max_model_len", "too long", "exceed",
                                   "context window", "n_ctx"))


def _about_model(text: str) -> bool:
    text = text.lower()
    return "model" in text and any(k in text for k in ("not exist", "not found", "unknown", "does not"))


def _overflow_message(r: httpx.Response) -> str:
    return f"the request does not fit the model's context: {_error_text(r)}"
