"""Prompt-token counts for servers that cannot count them exactly.

An inexact count is sized up by a declared safety margin (``probe.MARGINS``) before an agent plans
with it, and learns from every answer: the server's ``usage.prompt_tokens`` over what was
estimated, summed over all answers so far, scales later estimates. Each answer's drift is reported
to the caller (the client logs it as a ``token_drift`` event).
"""

from __future__ import annotations

import math
import threading

from pydantic import BaseModel

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
