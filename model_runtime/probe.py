"""What an OpenAI-compatible server offers, found out when a client connects.

tilepilot's first server is vLLM, but users also run llama.cpp's server, Ollama, LM Studio, or a
vLLM that someone else started with other flags. :func:`probe_server` asks each server only what
is cheap and harmless (``GET /v1/models``, ``/props``, one ``/tokenize`` of a short text) and
records:

- the served id: ``--served-name`` if given, else the profile's name, else a listed id that names
  the same model (``gemma-4-12b:latest``, ``google/gemma-4-12B-it``), else the only model listed;
- ``max_model_len`` from the server where it reports one (vLLM's ``/v1/models``, llama.cpp's
  ``/props``); the smaller of that and the profile's wins;
- how prompt tokens are counted: vLLM's ``/tokenize`` of the chat messages (exact), llama-server's
  ``/apply-template`` then ``/tokenize`` (exact; media counted by mtmd's rules, see budget.py),
  an older llama.cpp's ``/tokenize`` of a text (``{"content"}`` in, ``{"tokens"}`` out; the chat template's few tokens
  are learned from usage), llama-cpp-python's ``/extras/tokenize`` (``{"input"}``), or, with none of these, an estimate from
  the characters. Text-only tokenizers and the estimate carry a declared safety margin
  (:data:`MARGINS`) and are corrected from each answer's ``usage.prompt_tokens``.

Two things need a chat request to find out, so :func:`probe_images` and :func:`probe_structured`
run only when asked for (``tilepilot serve status --base-url``) or when an agent first needs them
on a server whose counts are inexact; on a vLLM-like server the client learns both from its own
requests (see :mod:`tilepilot.model_runtime.client`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Literal

import httpx
import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tilepilot.model_runtime.errors import (
    ApiKeyRefusedError, ModelNotServedError, ModelRuntimeError, ServerCrashedError, ServerUnreachableError,
)
from tilepilot.model_runtime.profiles import ModelProfile
from tilepilot.model_runtime.server import crash_report

Counting = Literal["vllm", "llama.cpp-chat", "llama.cpp", "llama-cpp-python", "estimate"]
ImageSupport = Literal["unchecked", "honoured", "ignored", "none"]
Structured = Literal["unchecked", "json_schema", "grammar", "none"]

# Safety margin per counting method: the share added to an inexact count before sizing requests.
# A text tokenizer misses only the chat template's few tokens per message (learned from usage);
# the character estimate can be off by a quarter on code or non-English text.
MARGINS: dict[str, float] = {"vllm": 0.0, "llama.cpp-chat": 0.0, "llama.cpp": 0.05, "llama-cpp-python": 0.05,
                             "estimate": 0.15}
EXACT: frozenset[str] = frozenset({"vllm", "llama.cpp-chat"})

_PROBE_TEXT = "Count these words, please."


class ServerCapabilities(BaseModel):
    """One server's answers to the probe (logged as the ``server_probe`` event of a run)."""

    model_config = ConfigDict(validate_assignment=True)

    base_url: str
    served_id: str
    served_id_source: str  # why that id: "--served-name", "profile name", "same model", "only model listed"
    listed_ids: list[str] = Field(default_factory=list)
    counting: Counting = "estimate"
    margin: float = MARGINS["estimate"]
    server_max_model_len: int | None = None
    # What the server holds at once (None: it does not say): llama.cpp's slots, each of the full context;
    # vLLM's KV pool, as requests of its full context (kv_cache_max_concurrency; shorter ones fit more).
    server_slots: int | None = None
    kv_concurrency: float | None = None
    max_model_len: int
    max_model_len_source: Literal["server", "profile"] = "profile"
    images: ImageSupport = "unchecked"
    structured_output: Structured = "unchecked"
    notes: list[str] = Field(default_factory=list)

    @property
    def exact(self) -> bool:
        return self.counting in EXACT


# -- served id -----------------------------------------------------------------------------------

def _stem(model_id: str) -> str:
    """An id without its Ollama tag (``:latest``), organisation or folder, and case."""
    return model_id.split(":")[0].rstrip("/").rsplit("/", 1)[-1].lower()


def resolve_served_id(listed: list[str], profile: ModelProfile, served_name: str | None, url: str) -> tuple[str, str]:
    """The id to send as ``model``, and why (see the module docstring for the order)."""
    shown = ", ".join(listed) or "nothing"
    if served_name:
        if listed and served_name not in listed:
            raise ModelNotServedError(f"the server at {url} does not serve {served_name!r} (it serves: {shown})")
        return served_name, "--served-name"
    if not listed or profile.served_name in listed:
        return profile.served_name, "profile name"
    names = {_stem(profile.served_name), _stem(profile.model), _stem(profile.name)}
    same = [m for m in listed if m == profile.model or _stem(m) in names]
    if len(same) == 1:
        return same[0], "same model"
    if len(listed) == 1:
        return listed[0], "only model listed"
    raise ModelNotServedError(
        f"the server at {url} serves several models and none is {profile.served_name!r} (it serves: {shown}); "
        "pick one with --served-name (env TILEPILOT_SERVED_NAME)"
    )


# -- the cheap probe -----------------------------------------------------------------------------

def key_refused(response: httpx.Response) -> ApiKeyRefusedError | None:
    """The error for a 401/403 (the server wants another API key, or one at all), else None."""
    if response.status_code not in (401, 403):
        return None
    request = response.request
    what = "refused the API key" if "authorization" in request.headers else "requires an API key"
    return ApiKeyRefusedError(f"the model server at {request.url.scheme}://{request.url.netloc.decode()} {what} "
                              f"(HTTP {response.status_code}): set TILEPILOT_API_KEY to the key it was started with")


def _answer(r: httpx.Response) -> dict | None:
    """A JSON object answered with 200, or None for anything else: a missing endpoint is an answer, not an
    error. A refused key is an error: a probe without its key would quietly find less than there is."""
    if refused := key_refused(r):
        raise refused
    try:
        data = r.json() if r.status_code == 200 else None
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _get_json(http: httpx.Client, url: str) -> dict | None:
    try:
        r = http.get(url, timeout=10.0)
    except httpx.HTTPError:
        return None
    return _answer(r)


def _post_json(http: httpx.Client, url: str, body: dict) -> dict | None:
    try:
        r = http.post(url, json=body, timeout=30.0)
    except httpx.HTTPError:
        return None
    return _answer(r)


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _tokens(data: dict | None) -> list | None:
    tokens = (data or {}).get("tokens")
    return tokens if isinstance(tokens, list) and tokens else None


def detect_counting(http: httpx.Client, url: str, model: str) -> Counting:
    """Which tokenizer endpoint the server has (``{"tokens": []}`` and 404 both mean none)."""
    messages = [{"role": "user", "content": [{"type": "text", "text": _PROBE_TEXT}]}]
    vllm = _post_json(http, f"{url}/tokenize", {"model": model, "messages": messages, "add_generation_prompt": True})
    if _int((vllm or {}).get("count")):
        return "vllm"
    if _tokens(_post_json(http, f"{url}/tokenize", {"content": _PROBE_TEXT})):
        # llama-server with /apply-template renders the chat exactly as it will for the request.
        template = _post_json(http, f"{url}/apply-template", {"messages": messages})
        return "llama.cpp-chat" if isinstance((template or {}).get("prompt"), str) else "llama.cpp"
    if _tokens(_post_json(http, f"{url}/extras/tokenize", {"input": _PROBE_TEXT, "model": model})):
        return "llama-cpp-python"
    return "estimate"


def list_models(http: httpx.Client, url: str) -> list[dict]:
    """``/v1/models`` entries; a server without that endpoint lists nothing (not an error)."""
    try:
        r = http.get(f"{url}/v1/models", timeout=10.0)
    except httpx.HTTPError as err:
        if crashed := crash_report(url):
            raise ServerCrashedError(crashed) from None
        raise ServerUnreachableError(
            f"cannot reach the model server at {url} ({type(err).__name__}); "
            "start one with `tilepilot serve start` or pass --base-url"
        ) from None
    if refused := key_refused(r):
        raise refused
    try:
        data = r.json().get("data", []) if r.status_code == 200 else []
    except (ValueError, AttributeError):
        data = []
    return [m for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)]


def server_max_model_len(http: httpx.Client, url: str, entry: dict) -> int | None:
    """The context the server runs with: vLLM's ``max_model_len``, else llama.cpp's ``/props`` ``n_ctx``."""
    found = _int(entry.get("max_model_len"))
    if found:
        return found
    props = _get_json(http, f"{url}/props") or {}
    settings = props.get("default_generation_settings")
    return _int(settings.get("n_ctx")) if isinstance(settings, dict) else None


_VLLM_CONCURRENCY = re.compile(r'^vllm:cache_config_info\{[^}]*kv_cache_max_concurrency="([\d.]+)"', re.M)


def server_capacity(http: httpx.Client, url: str) -> tuple[int | None, float | None]:
    """(llama.cpp's ``/props`` ``total_slots``, vLLM's KV cache max concurrency from ``/metrics``)."""
    slots = _int((_get_json(http, f"{url}/props") or {}).get("total_slots"))
    if slots:
        return slots, None
    try:
        r = http.get(f"{url}/metrics", timeout=10.0)
    except httpx.HTTPError:
        return None, None
    found = _VLLM_CONCURRENCY.search(r.text) if r.status_code == 200 else None
    return None, (float(found.group(1)) if found else None)


def requests_in_flight(caps: ServerCapabilities, request_tokens: int) -> int | None:
    """How many requests of up to ``request_tokens`` the server holds at once; None where it does not say.

    More in flight than this only wait in the server's queue (or, on vLLM, preempt one another), while
    the client holds their images and the run's deadline runs."""
    if caps.server_slots:
        return caps.server_slots
    if caps.kv_concurrency and caps.server_max_model_len:
        return max(1, int(caps.kv_concurrency * caps.server_max_model_len / max(1, request_tokens)))
    return None


def probe_server(http: httpx.Client, url: str, profile: ModelProfile, served_name: str | None = None) -> ServerCapabilities:
    """The cheap probe: no chat request, nothing the server has to generate."""
    entries = list_models(http, url)
    listed = [m["id"] for m in entries]
    served_id, source = resolve_served_id(listed, profile, served_name, url)
    notes = [] if entries else ["the server lists no models (/v1/models); assuming it serves the id tilepilot sends"]
    entry = next((m for m in entries if m["id"] == served_id), {})
    server_len = server_max_model_len(http, url, entry)
    counting = detect_counting(http, url, served_id)
    if counting not in EXACT:
        notes.append(f"no exact token counts: estimating with a {MARGINS[counting]:.0%} margin, corrected from usage")
    max_len = profile.max_model_len if server_len is None else min(server_len, profile.max_model_len)
    smaller = max_len < profile.max_model_len
    slots, concurrency = server_capacity(http, url)
    return ServerCapabilities(
        base_url=url, served_id=served_id, served_id_source=source, listed_ids=listed,
        counting=counting, margin=MARGINS[counting], server_max_model_len=server_len,
        server_slots=slots, kv_concurrency=concurrency,
        max_model_len=max_len,
        max_model_len_source="server" if smaller else "profile", notes=notes,
    )


def fit_profile(profile: ModelProfile, max_model_len: int) -> ModelProfile:
    """The profile with a server's smaller context: every agent sizes requests by ``input_budget``."""
    if max_model_len >= profile.max_model_len:
        return profile
    # Keep at least half the context for the prompt, so a small server still takes real pages.
    reserve = min(profile.output_reserve, max_model_len // 2)
    return profile.model_copy(update={"max_model_len": max_model_len, "output_reserve": reserve})


_LIMIT_PATTERNS = (
    re.compile(r"maximum context length is (\d+)"),  # vLLM, OpenAI
    re.compile(r"context window of (\d+)"),  # llama-cpp-python
    re.compile(r"n_ctx(?:_slot)?\D{1,4}(\d+)"),  # llama.cpp's server
)


def limit_from_error(message: str) -> int | None:
    """The context size an overflow error names, if it names one."""
    for pattern in _LIMIT_PATTERNS:
        match = pattern.search(message)
        if match:
            return int(match.group(1))
    return None


# -- what a refusal is about ---------------------------------------------------------------------

def about_images(error: str) -> bool:
    error = error.lower()
    return any(k in error for k in ("image", "multimodal", "multi-modal", "vision", "mm_processor"))


def about_format(error: str) -> bool:
    error = error.lower()
    return any(k in error for k in ("response_format", "json_schema", "schema", "grammar", "structured"))


def response_format(schema: type[BaseModel], flavour: str) -> dict | None:
    """The request's ``response_format`` for a flavour; None (``none``): parse leniently and validate."""
    if flavour == "none":
        return None
    if flavour == "grammar":  # llama.cpp's servers turn a schema under json_object into a grammar
        return {"type": "json_object", "schema": schema.model_json_schema()}
    return {"type": "json_schema", "json_schema": {"name": schema.__name__, "schema": schema.model_json_schema(), "strict": True}}


# -- the probes that need a chat request -------------------------------------------------------

Post = Callable[[dict], dict]  # sends one chat body, returns the JSON answer, raises ModelRuntimeError


class _Ok(BaseModel):
    ok: bool


def probe_structured(post: Post, model: str) -> Structured:
    """Which structured-output request the server honours: OpenAI's json_schema, a grammar, or none."""
    for flavour in ("json_schema", "grammar"):
        # 96 tokens: llama.cpp's schema grammars allow up to 22 whitespace characters between JSON
        # tokens, and a random-weight model takes them; 24 cut its valid {"ok": true} short.
        body = {"model": model, "max_tokens": 96, "temperature": 0.0, "response_format": response_format(_Ok, flavour),
                "messages": [{"role": "user", "content": 'Answer {"ok": true} in JSON.'}]}
        try:
            text = post(body)["choices"][0]["message"].get("content") or ""
            _Ok.model_validate(json.loads(lenient_json(text), strict=False))
            return flavour
        except (ModelRuntimeError, KeyError, IndexError, TypeError, ValueError, ValidationError):
            continue
    return "none"


def probe_images(post: Post, model: str, expected_image_tokens: int, image_part: dict) -> ImageSupport:
    """Send the same prompt with and without one image; the difference is what the server spent on it.

    ``expected_image_tokens`` is what the image costs at the requested budget: equal means the
    server honoured ``mm_processor_kwargs``; a server that drops the image (or refuses the request)
    takes no images.
    """
    def prompt_tokens(content: list[dict]) -> int:
        body = {"model": model, "max_tokens": 1, "temperature": 0.0, "messages": [{"role": "user", "content": content}],
                "mm_processor_kwargs": {"max_soft_tokens": 70}}
        return int(post(body)["usage"]["prompt_tokens"])

    text = {"type": "text", "text": "Describe."}
    try:
        without = prompt_tokens([text])
        with_image = prompt_tokens([image_part, text])
    except (ModelRuntimeError, KeyError, IndexError, TypeError, ValueError):
        return "none"
    spent = with_image - without
    if spent == expected_image_tokens:
        return "honoured"
    return "ignored" if spent > 8 else "none"


def probe_image() -> Image.Image:
    """A small, busy picture (a flat one may be cached or compressed away by some servers)."""
    y, x = np.mgrid[0:480, 0:480]
    return Image.fromarray(np.stack([(x * 7) % 256, (y * 5) % 256, ((x ^ y) * 3) % 256], axis=-1).astype(np.uint8))


def lenient_json(text: str) -> str:
    """Cheap, safe repairs: strip code fences and text around the outermost JSON object."""
    text = text.strip()
    if text.startswith("```"):
        text = text.strip("`")
        text = text[text.find("\n") + 1 :] if "\n" in text else text
    start, end = text.find("{"), text.rfind("}")
    return text[start : end + 1] if 0 <= start < end else text


def plain_messages(messages: list[dict], join_text: bool = True) -> list[dict]:
    """The wire messages in the plainest form OpenAI-compatible servers agree on.

    Text-only content goes as one string (llama-cpp-python renders a list of parts without its chat
    template), and system text joins the first user turn, as Gemma's own template does (Gemma has
    no system role; llama.cpp's ``gemma`` chat format drops system messages). ``join_text=False``
    keeps every list a list (llama-server renders one with its template): then a text part
    standing in for an image is rendered exactly as the image's marker would be, for counting.
    """
    out: list[dict] = []
    system: list[str] = []
    for message in messages:
        parts = message["content"]
        texts = [p["text"] for p in parts if p.get("type") == "text"]
        if message["role"] == "system":
            system.extend(texts)
            continue
        if system and message["role"] == "user":
            parts = [{"type": "text", "text": "\n\n".join(system)}, *parts]
            texts = ["\n\n".join(system), *texts]
            system = []
        text_only = join_text and len(texts) == len(parts)
        out.append({"role": message["role"], "content": "\n\n".join(texts) if text_only else parts})
    if system:  # only system text: send it as the user's
        out.append({"role": "user", "content": "\n\n".join(system)})
    return out
