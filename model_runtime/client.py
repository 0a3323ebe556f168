"""The one place that sends chat requests to the model server.

``ChatClient.chat`` sends typed messages, optionally constrained to a pydantic model's JSON
schema (``response_format: json_schema``; xgrammar on the server), and returns the parsed object
with the server's token usage and the client's own estimate. It is made of three parts, each its own
module: the transport (:mod:`~tilepilot.model_runtime.transport`: replicas, retries with backoff, typed
one-line errors), token counting (:mod:`~tilepilot.model_runtime.prompt_counter`) and structured-output
negotiation (:mod:`~tilepilot.model_runtime.structured`). What the client adds is the request itself and
what it learns about the server.

``check()`` probes the server (:mod:`tilepilot.model_runtime.probe`) and the client adapts to what it finds:
the served id, the smaller ``max_model_len`` (``client.profile`` then carries it, so every agent
sizes its requests by it), exact counts or a margin-padded estimate corrected from usage, the
structured-output flavour, and whether images are taken. What it learns later (a drift, a
flavour, an overflow naming a smaller context) goes to ``on_event`` (a run's event log).

One client is shared by an agent's threads: the parts are safe to share, and what the client learns
(capabilities, the fitted profile) is updated under its lock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar, cast

from pydantic import BaseModel, ValidationError

from tilepilot.model_runtime.counting import llama_cpp_media_tokens
from tilepilot.model_runtime.errors import (
    ContextOverflowError,
    ImagesNotSupportedError,
    InvalidOutputError,
    ModelNotServedError,
    ServerError,
    UnparsedOutputError,
)
from tilepilot.model_runtime.payloads import EncodedRequest, ImagePart, Message, encode_messages
from tilepilot.model_runtime.probe import (
    MARGINS,
    ServerCapabilities,
    about_images,
    fit_profile,
    limit_from_error,
    probe_image,
    probe_images,
    probe_server,
    probe_structured,
)
from tilepilot.model_runtime.profiles import ModelProfile
from tilepilot.model_runtime.prompt_counter import PromptCounter, wire_messages
from tilepilot.model_runtime.structured import StructuredOutput, parse
from tilepilot.model_runtime.transport import CHAT_PATH, Transport, normalize_base_url

__all__ = ["ChatClient", "ChatResult", "EventSink", "Usage", "normalize_base_url"]

T = TypeVar("T", bound=BaseModel)


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
        self._transport = Transport(base_urls, timeout_s=timeout_s, max_retries=max_retries, backoff_s=backoff_s,
                                    api_key=api_key)
        self.base_urls = self._transport.base_urls
        self.declared_profile = profile  # before a server's smaller context is applied
        self.profile = profile
        self.served_name = served_name
        self.model = served_name or profile.served_name
        self.on_event = on_event
        # Until check() probes the server, count as vLLM does (exact /tokenize).
        self.capabilities: ServerCapabilities | None = None
        self._counter = PromptCounter(self._transport)
        self._structured = StructuredOutput(self._emit)
        self._learn_lock = threading.Lock()  # what the client learns: capabilities and the fitted profile
        self._probe_lock = threading.Lock()  # one image probe at a time

    @property
    def max_retries(self) -> int:
        return self._transport.max_retries

    def close(self) -> None:
        self._transport.close()

    @property
    def closed(self) -> bool:
        return self._transport.closed

    def __enter__(self) -> "ChatClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _emit(self, kind: str, **fields: Any) -> None:
        sink = self.on_event  # read once: a run may detach it from another thread
        if sink is not None:
            sink(kind, **fields)

    # -- probe --------------------------------------------------------------------------------

    def check(self) -> ServerCapabilities:
        """Probe every replica (one line if one is down or serves another model) and adapt to them.

        Replicas must serve the same id; the smallest context and the least exact counting win.
        """
        found = [probe_server(self._transport.http, url, self.declared_profile, self.served_name) for url in self.base_urls]
        caps = found[0]
        ids = sorted({c.served_id for c in found})
        if len(ids) > 1:
            raise ModelNotServedError(f"the replicas serve different models ({', '.join(ids)}); pick one with --served-name")
        if len({c.counting for c in found}) > 1:
            caps = caps.model_copy(update={"counting": "estimate", "margin": MARGINS["estimate"]})
        smallest = min(found, key=lambda c: c.max_model_len)
        caps = caps.model_copy(update={k: getattr(smallest, k) for k in
                                       ("server_max_model_len", "max_model_len", "max_model_len_source")})
        for field in ("server_slots", "kv_concurrency"):  # requests go round the replicas: their room adds up
            values = [getattr(c, field) for c in found]
            caps = caps.model_copy(update={field: sum(values) if None not in values else None})
        with self._learn_lock:
            self.capabilities = caps
            self.model = caps.served_id
            self.profile = fit_profile(self.declared_profile, caps.max_model_len)
            self._counter = PromptCounter(self._transport, caps.counting, caps.margin)
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
                expected = llama_cpp_media_tokens(enc, self.profile) if caps.counting == "llama.cpp-chat" else enc.media_tokens
                found = probe_images(self._post_body, self.model, expected, enc.messages[0]["content"][0])
                self._set_images(caps, found)
        return caps.images

    def _set_images(self, caps: ServerCapabilities, images: str, **why: Any) -> None:
        with self._learn_lock:
            if caps.images != "unchecked":
                return  # another thread learned it first
            caps.images = images  # type: ignore[assignment]
        self._emit("server_capability", images=images, **why)

    def _no_images(self) -> ImagesNotSupportedError:
        return ImagesNotSupportedError(
            f"this server/model takes no images ({self.model!r} at {', '.join(self.base_urls)}); "
            "ask without images, or use a multimodal model such as the tiny one or Gemma 4"
        )

    # -- counting -----------------------------------------------------------------------------

    def count_prompt_tokens(self, messages: list[Message], image_budget: int | None = None) -> int:
        """Prompt tokens: exact where the server counts (vLLM's /tokenize), else a padded estimate."""
        enc = encode_messages(messages, self.profile, image_budget or self.profile.vision.default_max_soft_tokens)
        return self._counter.count(enc, self.model, self.profile)[0]

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
        counter = self._counter
        estimated, raw = counter.count(enc, self.model, self.profile) if estimate or not self.exact else (None, 0)
        body: dict = {
            "model": self.model,
            "messages": wire_messages(enc, counter.counting),
            "max_tokens": max_tokens,
            "mm_processor_kwargs": {"max_soft_tokens": budget},
            "chat_template_kwargs": {"enable_thinking": thinking},
        }
        started = time.monotonic()
        last_problem = ""
        for attempt in range(1, output_attempts + 1):
            body["temperature"] = temperature if attempt == 1 else min(temperature + 0.3 * (attempt - 1), 1.5)
            try:
                data, url = self._structured.send(lambda sent: self._post_chat(sent, enc), body, schema,
                                                  self.capabilities)
            except UnparsedOutputError as err:  # the server's parser refused the output: as if it were invalid
                if schema is None:
                    raise
                last_problem = err.detail[:200]
                continue
            try:
                text = data["choices"][0]["message"].get("content") or ""
                usage = Usage(**{k: data["usage"][k] for k in ("prompt_tokens", "completion_tokens")})
            except (KeyError, IndexError, TypeError, AttributeError, ValidationError):
                raise ServerError(f"{url} answered a chat request without choices or usage") from None
            if attempt == 1:
                self._learn(counter, enc, estimated, raw, usage.prompt_tokens)
            # Parametrized at run time so the parsed field serializes as the schema; with no schema T is BaseModel.
            result = cast("ChatResult[T]", ChatResult[schema or BaseModel](
                text=text,
                usage=usage,
                estimated_prompt_tokens=estimated,
                # A server that picks its own image size (budgets ignored) makes image counts inexact.
                exact=self.exact and not (enc.image_grids and self.capabilities is not None
                                          and self.capabilities.images == "ignored"),
                attempts=attempt,
                latency_s=time.monotonic() - started,
                base_url=url,
            ))
            if schema is None:
                return result
            result.parsed, last_problem = parse(schema, text)
            if result.parsed is not None:
                return result
        raise InvalidOutputError(
            f"the model's output did not match {schema.__name__ if schema else 'the request'} after {output_attempts} attempts "
            f"({last_problem})"
        )

    def _post_body(self, body: dict) -> dict:
        """A probe's chat body, answered as it is (the probes judge refusals themselves)."""
        return self._transport.post_json(CHAT_PATH, body)

    def _post_chat(self, body: dict, enc: EncodedRequest) -> tuple[dict, str]:
        """One chat body through the transport; a refusal teaches a smaller context or that images are not taken."""
        try:
            return self._transport.post(CHAT_PATH, body)
        except ContextOverflowError as err:
            self._learn_limit(err.detail)
            raise
        except ServerError as err:
            caps = self.capabilities
            if enc.image_grids and caps is not None and caps.images == "unchecked" and about_images(err.detail):
                self._set_images(caps, "none", reason=str(err)[:200])
                raise self._no_images() from None
            raise

    def _learn(self, counter: PromptCounter, enc: EncodedRequest, estimated: int | None, raw: int, actual: int) -> None:
        """Correct inexact counts from usage; on an exact server, an image miscount means ignored budgets."""
        caps = self.capabilities
        if caps is None or estimated is None:
            return
        if not caps.exact:
            self._emit("token_drift", **counter.learn(raw, estimated, actual).model_dump())
            return
        if enc.image_grids and caps.images == "unchecked":
            self._set_images(caps, "honoured" if actual == estimated else "ignored", estimated=estimated, actual=actual)
        elif actual != estimated:
            self._emit("token_drift", estimated=estimated, raw=raw, actual=actual, drift=actual - estimated, scale=1.0)

    def _learn_limit(self, message: str) -> None:
        limit = limit_from_error(message)
        with self._learn_lock:
            if not limit or limit >= self.profile.max_model_len:
                return
            self.profile = fit_profile(self.profile, limit)
            if self.capabilities is not None:
                self.capabilities.server_max_model_len = limit
                self.capabilities.max_model_len = limit
                self.capabilities.max_model_len_source = "server"
            budget = self.profile.input_budget
        self._emit("max_model_len_learned", max_model_len=limit, input_budget=budget)
