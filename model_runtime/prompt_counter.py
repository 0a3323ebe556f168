"""The chat client's token counting: prompt tokens of an encoded request, exact where the server counts.

vLLM counts with ``/tokenize`` (each media placeholder then stands for its media tokens), llama-server
with ``/apply-template`` + ``/tokenize`` (:func:`~tilepilot.model_runtime.counting.llama_chat_count`); other
servers get a character estimate (or their text tokenizer's count) plus the template's overhead, padded
by a margin and corrected from each answer's ``usage`` (:class:`~tilepilot.model_runtime.counting.Corrector`,
which is locked). The counting mode is what the probe found; until then, vLLM's.
"""

from __future__ import annotations

from tilepilot.model_runtime.counting import Corrector, Drift, char_estimate, llama_chat_count, template_overhead
from tilepilot.model_runtime.errors import ServerError
from tilepilot.model_runtime.payloads import EncodedRequest
from tilepilot.model_runtime.probe import Counting, plain_messages
from tilepilot.model_runtime.profiles import ModelProfile
from tilepilot.model_runtime.transport import Transport


def wire_messages(enc: EncodedRequest, counting: Counting) -> list[dict]:
    """vLLM gets the parts as they are (its /tokenize counted exactly those); others the plainest form."""
    return enc.messages if counting == "vllm" else plain_messages(enc.messages, join_text=counting != "llama.cpp-chat")


class PromptCounter:
    """Counts prompts for one client in its server's mode; shared by the client's threads."""

    def __init__(self, transport: Transport, counting: Counting = "vllm", margin: float = 0.0) -> None:
        self._transport = transport
        self.counting: Counting = counting
        self._corrector = Corrector(margin)

    def count(self, enc: EncodedRequest, model: str, profile: ModelProfile) -> tuple[int, int]:
        """(count to plan with, raw count before correction and margin)."""
        if self.counting == "vllm":
            body = {"model": model, "messages": enc.placeholder_messages, "add_generation_prompt": True}
            data = self._transport.post_json("/tokenize", body)
            count = data.get("count")
            if not isinstance(count, int):
                count = len(data.get("tokens") or [])
            if count <= 0:
                raise ServerError(f"the model server's /tokenize answered no tokens ({str(data)[:80]})")
            # Each placeholder is one token in the text count and is replaced by its media tokens.
            exact = count - enc.media_count + enc.media_tokens
            return exact, exact
        if self.counting == "llama.cpp-chat":
            exact = llama_chat_count(self._transport.post_json, wire_messages(enc, self.counting), enc, profile)
            return exact, exact
        text = "\n".join(p["text"] for m in enc.messages for p in m["content"] if p.get("type") == "text")
        if self.counting == "llama.cpp":
            text_tokens = len(self._transport.post_json("/tokenize", {"content": text}).get("tokens") or [])
        elif self.counting == "llama-cpp-python":
            text_tokens = len(self._transport.post_json("/extras/tokenize", {"input": text, "model": model}).get("tokens") or [])
        else:
            text_tokens = char_estimate(text)
        raw = text_tokens + template_overhead(len(enc.messages)) + enc.media_tokens
        return self._corrector.padded(raw), raw

    def learn(self, raw: int, estimated: int, actual: int) -> Drift:
        """Scale later estimates by what the server counted (inexact modes only)."""
        return self._corrector.learn(raw, estimated, actual)
