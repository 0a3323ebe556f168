"""A ChatModel double for the agents' text loops: word-count tokens, a context limit like the server's.

It counts one token per word of text (images by the exact grid math, as the client does) and,
like vLLM, rejects a prompt longer than ``context_limit`` with ``ContextOverflowError``. Answers
come from ``reply`` (free text) or are the smallest instance of the requested JSON schema.
Deterministic, so review's split-and-shrink and listen's condense run offline; the real server's
behaviour stays covered by the integration tests.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import BaseModel

from tilepilot.model_runtime.budget import image_prompt_tokens
from tilepilot.model_runtime.client import ChatResult, Usage
from tilepilot.model_runtime.errors import ContextOverflowError
from tilepilot.model_runtime.payloads import AudioPart, ImagePart, Message, TextPart, fit_image
from tilepilot.model_runtime.profiles import ModelProfile, tiny_profile

AUDIO_TOKENS = 750  # a full clip; the double does not need the exact audio count


def minimal_answer(schema: type[BaseModel]) -> str:
    """The smallest JSON object ``schema`` accepts: empty lists, short strings."""
    values: dict[str, object] = {}
    for name, info in schema.model_fields.items():
        if info.is_required():
            origin = getattr(info.annotation, "__origin__", None)
            values[name] = [] if origin is list else "noted"
    return schema.model_validate(values).model_dump_json()


@dataclass
class WordChat:
    reply: Callable[[list[Message]], str] = lambda messages: "a short answer"
    context_limit: int | None = None
    profile: ModelProfile = field(default_factory=tiny_profile)
    requests: list[tuple[int, list[Message]]] = field(default_factory=list)  # (prompt tokens, messages)
    on_chat: Callable[[list[Message]], None] = lambda messages: None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def count_prompt_tokens(self, messages: list[Message], image_budget: int | None = None) -> int:
        budget = image_budget or self.profile.vision.default_max_soft_tokens
        total = 4 * len(messages)
        for message in messages:
            for part in message.parts:
                if isinstance(part, TextPart):
                    total += len(part.text.split())
                elif isinstance(part, ImagePart):
                    image, _ = fit_image(part.image, budget, self.profile)
                    total += image_prompt_tokens(image.width, image.height, budget)
                elif isinstance(part, AudioPart):
                    total += AUDIO_TOKENS
        return total

    def chat(self, messages: list[Message], *, schema: type[BaseModel] | None = None, max_tokens: int = 512,
             image_budget: int | None = None, **_: object) -> ChatResult:
        tokens = self.count_prompt_tokens(messages, image_budget)
        self.on_chat(messages)
        with self._lock:
            self.requests.append((tokens, messages))
        if self.context_limit is not None and tokens > self.context_limit:
            raise ContextOverflowError(f"the request does not fit the model's context: {tokens} > {self.context_limit} tokens")
        text = minimal_answer(schema) if schema is not None else self.reply(messages)
        result = ChatResult(text=text, usage=Usage(prompt_tokens=tokens, completion_tokens=len(text.split())),
                            estimated_prompt_tokens=tokens, latency_s=0.0, base_url="double")
        result.parsed = schema.model_validate_json(text) if schema is not None else None
        return result

    def close(self) -> None:
        """Nothing to release."""
