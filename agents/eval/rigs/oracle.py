"""The reference answerer: an OpenAI-compatible server that answers every request from the labels.

``tilepilot eval SUITE --model oracle`` runs the suite's real agent path against this server. It
identifies each request from the request itself (page text, page pixels, screenshot or audio hash:
the suite's :data:`Answerer` does that) and answers in the JSON schema the agent asked for, so a
score below 1.0 is a ceiling that tilepilot puts on a perfect model.

What it emulates of a real vLLM server, so that ceilings show up rather than hide:

- ``/tokenize`` counts like vLLM does for the tiny checkpoint: its chat template rendered with
  jinja2, then its BPE tokenizer (``tokenizers``), both built locally by :mod:`tilepilot.model_runtime.tiny`
  (nothing from a hub). ``usage.prompt_tokens`` is that count plus the media tokens by the
  budget math, the same arithmetic the client uses.
- A prompt plus ``max_tokens`` beyond the profile's ``max_model_len`` is a 400 context error.
- The answer is clipped to the requested schema the way constrained decoding would clip a
  perfect model (arrays to ``maxItems``, strings to ``maxLength``), and to ``max_tokens`` (then it
  is cut mid-JSON, ``finish_reason: length``, as a real server does).

``oracle:p`` answers ``right`` when a hash of the case key maps below ``p``, else ``wrong``. A
request the answerer cannot identify gets a schema-valid minimal answer ("nothing found") and is
counted in :attr:`OracleServer.unidentified`, so tests can assert it stayed 0.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import threading
import time
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel

from tilepilot.model_runtime.budget import audio_prompt_tokens, image_prompt_tokens
from tilepilot.model_runtime.profiles import GEMMA_4_12B, CoordinateConvention, ModelProfile

SERVED_NAME = "oracle"


class OracleReply(BaseModel):
    key: str  # stable case id the request was identified as
    # The answer object (validated by the agent against the schema it requested); a str is sent as
    # is, for requests without a schema (transcripts, summaries).
    right: dict | str
    wrong: dict | str  # a plausible but wrong answer (what oracle:p returns for the other cases)


Answerer = Callable[[dict], "OracleReply | None"]  # gets the raw /v1/chat/completions JSON body


def oracle_profile(coordinates: CoordinateConvention = "pixels") -> ModelProfile:
    """The real model's limits (context, output reserve, caps), served as ``oracle``: never a ceiling itself."""
    return GEMMA_4_12B.model_copy(update={"name": SERVED_NAME, "served_name": SERVED_NAME, "model": SERVED_NAME,
                                          "coordinates": coordinates,
                                          "requires_gpu": False})


def right_share(key: str) -> float:
    """A deterministic number in [0, 1) per case key: ``oracle:p`` answers right below ``p``."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64


# -- token counting --------------------------------------------------------------------------


class TinyTokenCounter:
    """Counts prompt tokens exactly as vLLM does when it serves the tiny checkpoint."""

    def __init__(self, checkpoint: Path):
        import jinja2
        from tokenizers import Tokenizer

        from tilepilot.model_runtime.tiny import CHAT_TEMPLATE, SPECIAL_TOKENS

        self._tokenizer = Tokenizer.from_file(str(checkpoint / "tokenizer.json"))
        self._template = jinja2.Environment().from_string(CHAT_TEMPLATE)
        self._bos = SPECIAL_TOKENS["bos_token"]

    def ids(self, text: str) -> list[int]:
        return self._tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self._tokenizer.decode(ids)

    def prompt(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        return self._template.render(messages=messages, bos_token=self._bos, add_generation_prompt=add_generation_prompt)


@lru_cache(maxsize=1)
def _counter() -> TinyTokenCounter:
    from tilepilot.agents.backend import ensure_tiny_checkpoint

    return TinyTokenCounter(ensure_tiny_checkpoint())


def _media_tokens(messages: list[dict], budget: int, profile: ModelProfile) -> int:
    """Media prompt tokens minus their one-token placeholders (what the client adds to the text count)."""
    from PIL import Image

    extra = 0
    for message in messages:
        content = message.get("content")
        for part in content if isinstance(content, list) else []:
            if part.get("type") == "image_url":
                data = base64.b64decode(part["image_url"]["url"].split(",", 1)[1])
                width, height = Image.open(io.BytesIO(data)).size
                extra += image_prompt_tokens(width, height, budget, profile.vision) - 1
            elif part.get("type") == "input_audio":
                import soundfile as sf

                frames = sf.info(io.BytesIO(base64.b64decode(part["input_audio"]["data"]))).frames
                extra += audio_prompt_tokens(frames, profile.audio) - 1
    return extra


# -- schema handling -------------------------------------------------------------------------


def _resolve(schema: dict, root: dict) -> dict:
    while "$ref" in schema:
        schema = root["$defs"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def minimal_instance(schema: dict, root: dict | None = None) -> Any:
    """The smallest value valid for ``schema`` ("nothing found" for an answer with a findings list)."""
    root = root or schema
    schema = _resolve(schema, root)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [_resolve(s, root) for s in schema[key]]
            null = next((s for s in options if s.get("type") == "null"), None)
            if null is not None:
                return None
            # An action union: "fail" is the honest answer for a screen the oracle does not know,
            # and never clicks (a click at (0, 0) would arm pyautogui's fail-safe corner).
            give_up = next((s for s in options if _resolve(s.get("properties", {}).get("kind", {}), root).get("const") == "fail"), None)
            return minimal_instance(give_up or options[0], root)
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        return {name: minimal_instance(props[name], root) for name in schema.get("required", [])}
    if kind == "array":
        return [minimal_instance(schema.get("items", {}), root) for _ in range(schema.get("minItems", 0))]
    if kind == "string":
        return "-" * schema.get("minLength", 0)
    if kind in ("integer", "number"):
        return schema.get("minimum", 0)
    if kind == "boolean":
        return False
    return None


def clip_to_schema(value: Any, schema: dict, root: dict | None = None) -> Any:
    """Cut arrays to ``maxItems`` and strings to ``maxLength``: what a grammar lets a model write."""
    root = root or schema
    schema = _resolve(schema, root)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            for option in (_resolve(s, root) for s in schema[key]):
                if option.get("type") == {dict: "object", list: "array", str: "string"}.get(type(value)):
                    return clip_to_schema(value, option, root)
            return value
    if isinstance(value, dict) and "properties" in schema:
        props = schema["properties"]
        return {k: clip_to_schema(v, props[k], root) if k in props else v for k, v in value.items()}
    if isinstance(value, list):
        items = value[: schema.get("maxItems", len(value))]
        return [clip_to_schema(v, schema.get("items", {}), root) for v in items]
    if isinstance(value, str) and "maxLength" in schema:
        return value[: schema["maxLength"]]
    return value


# -- the server ------------------------------------------------------------------------------


class OracleServer:
    """A real HTTP server on 127.0.0.1 (a free port), in a daemon thread. Use as a context manager or start()/close()."""

    def __init__(self, answerer: Answerer, p: float = 1.0, profile: ModelProfile | None = None):
        self.answerer = answerer
        self.p = p
        self.profile = profile or oracle_profile()
        self.requests = 0
        self.unidentified = 0
        self.answered_right = 0
        self.answered_wrong = 0
        self._lock = threading.Lock()
        self._http: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        assert self._http is not None, "start() the server first"
        return f"http://127.0.0.1:{self._http.server_address[1]}"

    def start(self) -> "OracleServer":
        _counter()  # build/load the tokenizer before the first request, not inside it
        handler = type("OracleHandler", (_Handler,), {"oracle": self})
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._http.daemon_threads = True
        self._thread = threading.Thread(target=self._http.serve_forever, name="oracle-server", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None

    def __enter__(self) -> "OracleServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- request handling (called from the handler threads) -------------------------------

    def count(self, body: dict) -> int:
        counter = _counter()
        if "messages" in body:
            text = counter.prompt(_placeholder_messages(body["messages"], self.profile), body.get("add_generation_prompt", True))
        else:
            text = str(body.get("prompt", ""))
        return len(counter.ids(text))

    def complete(self, body: dict) -> tuple[int, dict]:
        budget = int((body.get("mm_processor_kwargs") or {}).get("max_soft_tokens") or self.profile.vision.default_max_soft_tokens)
        prompt_tokens = self.count(body) + _media_tokens(body["messages"], budget, self.profile)
        max_tokens = int(body.get("max_tokens") or 512)
        if prompt_tokens + max_tokens > self.profile.max_model_len:
            return 400, {"error": {"message": f"This model's maximum context length is {self.profile.max_model_len} tokens. "
                                              f"However, you requested {prompt_tokens + max_tokens} tokens "
                                              f"({prompt_tokens} in the messages, {max_tokens} in the completion).",
                                   "type": "BadRequestError", "code": 400}}
        schema = ((body.get("response_format") or {}).get("json_schema") or {}).get("schema")
        reply = self.answerer(body)
        with self._lock:
            self.requests += 1
            if reply is None:
                self.unidentified += 1
            right = reply is not None and (self.p >= 1.0 or right_share(reply.key) < self.p)
            if reply is not None:
                self.answered_right += right
                self.answered_wrong += not right
        answer: Any = (reply.right if right else reply.wrong) if reply else (minimal_instance(schema) if schema else "")
        if schema:
            answer = clip_to_schema(answer, schema)
        counter = _counter()
        content = answer if isinstance(answer, str) else json.dumps(answer, ensure_ascii=False)
        ids = counter.ids(content)
        finish = "stop"
        if len(ids) > max_tokens:  # a real server stops mid-answer; the client then sees broken JSON
            content, ids, finish = counter.decode(ids[:max_tokens]), ids[:max_tokens], "length"
        return 200, {
            "id": f"chatcmpl-oracle-{self.requests}", "object": "chat.completion", "created": int(time.time()),
            "model": SERVED_NAME,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(ids), "total_tokens": prompt_tokens + len(ids)},
        }


def _placeholder_messages(messages: list[dict], profile: ModelProfile) -> list[dict]:
    """Media parts as their one-token placeholder text, as the tiny chat template renders them."""
    out = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            parts = []
            for part in content:
                if part.get("type") == "image_url":
                    parts.append({"type": "text", "text": profile.image_placeholder})
                elif part.get("type") == "input_audio":
                    parts.append({"type": "text", "text": profile.audio_placeholder})
                else:
                    parts.append(part)
            content = parts
        out.append({**message, "content": content})
    return out


class _Handler(BaseHTTPRequestHandler):
    oracle: OracleServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the eval prints its own table
        pass

    def _send(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self.path == "/health":
            self._send(200, {})
        elif self.path == "/v1/models":
            self._send(200, {"object": "list", "data": [{"id": SERVED_NAME, "object": "model", "owned_by": "tilepilot",
                                                         "max_model_len": self.oracle.profile.max_model_len}]})
        else:
            self._send(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:  # noqa: N802
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        except json.JSONDecodeError:
            self._send(400, {"error": {"message": "request body is not JSON"}})
            return
        if body.get("model") not in (None, SERVED_NAME):
            self._send(404, {"error": {"message": f"The model `{body.get('model')}` does not exist."}})
        elif self.path == "/tokenize":
            count = self.oracle.count(body)
            self._send(200, {"count": count, "max_model_len": self.oracle.profile.max_model_len})
        elif self.path == "/v1/chat/completions":
            try:
                status, payload = self.oracle.complete(body)
            except Exception as err:  # a bug in an answerer must show as a server error, not a hang
                status, payload = 500, {"error": {"message": f"oracle failed: {type(err).__name__}: {err}"}}
            self._send(status, payload)
        else:
            self._send(404, {"error": {"message": f"no route {self.path}"}})
