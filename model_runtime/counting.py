"""Prompt-token counts for servers that cannot count them exactly.

An inexact count is sized up by a declared safety margin (``probe.MARGINS``) before an agent plans
with it, and learns from every answer: the server's ``usage.prompt_tokens`` over what was
estimated, summed over all answers so far, scales later estimates. Each answer's drift is reported
to the caller (the client logs it as a ``token_drift`` event).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

from pydantic import BaseModel

from tilepilot.model_runtime.budget import MEDIA_MARKERS, llama_cpp_audio_soft_tokens, llama_cpp_image_soft_tokens
from tilepilot.model_runtime.payloads import EncodedRequest
from tilepilot.model_runtime.profiles import ModelProfile

# Characters per token of an unknown tokenizer on English prose (tilepilot's own tokenizer gets
# 3.0-4.5, see tests/model_runtime/test_server_integration.py); the margin covers the rest.
CHARS_PER_TOKEN = 3.5
# Chat-template tokens around each message (role markers, turn ends) and the generation prompt.
TEMPLATE_TOKENS_PER_MESSAGE = 6
GENERATION_PROMPT_TOKENS = 3


def char_estimate(text: str) -> int:
    return math.ceil(len(text.encode("utf-8")) / CHARS_PER_TOKEN)


def template_overhead(messages: int) -> int:
    return TEMPLATE_TOKENS_PER_MESSAGE * messages + GENERATION_PROMPT_TOKENS


class Drift(BaseModel):
    """One answer's count against the estimate (the ``token_drift`` event's fields)."""

    estimated: int  # what the agent planned with (margin included)
    raw: int  # the estimate before scale and margin
    actual: int  # the server's usage.prompt_tokens
    drift: int  # actual - estimated: positive means the margin was too small
    scale: float  # the correction now applied to raw estimates


class Corrector:
    """Scales raw estimates by what the server reported so far, then adds the margin."""

    def __init__(self, margin: float) -> None:
        self.margin = margin
        self._actual = 0
        self._raw = 0
        self._lock = threading.Lock()

    @property
    def scale(self) -> float:
        with self._lock:
            # Never trust fewer than one answer's worth, and never shrink below half the raw count.
            return max(0.5, self._actual / self._raw) if self._raw else 1.0

    def padded(self, raw: int) -> int:
        return math.ceil(round(raw * self.scale * (1.0 + self.margin), 6))  # round: 100 * 1.1 is 110.00000000000001

    def learn(self, raw: int, estimated: int, actual: int) -> Drift:
        with self._lock:
            self._raw += max(raw, 1)
            self._actual += actual
        return Drift(estimated=estimated, raw=raw, actual=actual, drift=actual - estimated, scale=round(self.scale, 4))


# -- llama-server: exact counts from its own chat template and tokenizer ---------------------------


def llama_cpp_media_tokens(enc: EncodedRequest, profile: ModelProfile) -> int:
    """What llama-server spends on the request's images and clips (markers included); see budget.py."""
    images = sum(llama_cpp_image_soft_tokens(g.width, g.height, spec=profile.vision) + MEDIA_MARKERS
                 for g in enc.image_grids)
    audio = sum(llama_cpp_audio_soft_tokens(n, profile.audio) + MEDIA_MARKERS for n in enc.audio_samples)
    return images + audio


def with_placeholders(wire: list[dict], profile: ModelProfile) -> list[dict]:
    """The wire messages as llama-server renders them, each image or clip as its one-token placeholder.

    A message with media reaches llama-server's chat template as one string: its parts joined with
    newlines, except before and after a media marker (``concat_content_parts`` in common/chat.cpp).
    A text part that is exactly a placeholder stands for media too (callers count that way).
    """
    markers = {profile.image_placeholder, profile.audio_placeholder}
    out = []
    for message in wire:
        content = message["content"]
        if isinstance(content, list):
            parts = [(p["text"], p["text"] in markers) if p.get("type") == "text" else
                     (profile.image_placeholder if p.get("type") == "image_url" else profile.audio_placeholder, True)
                     for p in content]
            if any(is_marker for _, is_marker in parts):
                text, after_marker = "", False
                for piece, is_marker in parts:
                    if not is_marker and text and not after_marker:
                        text += "\n"
                    text, after_marker = text + piece, is_marker
                content = text
        out.append({**message, "content": content})
    return out


PostJson = Callable[[str, dict], dict]


def llama_chat_count(post: PostJson, wire: list[dict], enc: EncodedRequest, profile: ModelProfile) -> int:
    """Exact prompt tokens on llama-server: ``/apply-template`` (the chat template it will use), then
    ``/tokenize`` with special tokens parsed; each placeholder token becomes its media's tokens."""
    prompt = post("/apply-template", {"messages": with_placeholders(wire, profile)}).get("prompt")
    if not isinstance(prompt, str):
        raise ValueError(f"llama-server's /apply-template answered no prompt ({str(prompt)[:80]})")
    # add_special as llama-server tokenizes the chat prompt: a template without BOS (llama.cpp's
    # built-in gemma) gets it added, one that writes it (the tiny one) does not get a second.
    tokens = post("/tokenize", {"content": prompt, "add_special": True, "parse_special": True}).get("tokens") or []
    return len(tokens) - enc.media_count + llama_cpp_media_tokens(enc, profile)
