"""The one interface every agent is typed against: what a chat model must offer.

:class:`tilepilot.model_runtime.client.ChatClient` satisfies it structurally (no inheritance), and so can a
test double: an agent's loop logic (review's split-on-overflow and shrink, listen's hierarchical
condense, desktop's history window) then runs offline with scripted answers, while behaviour
against the real server stays covered by the integration tests.
"""

from __future__ import annotations

from typing import Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel

from tilepilot.model_runtime.client import ChatResult
from tilepilot.model_runtime.payloads import Message
from tilepilot.model_runtime.profiles import ModelProfile

T = TypeVar("T", bound=BaseModel)


@runtime_checkable
class ChatModel(Protocol):
    """A served model: its profile, exact prompt counting and one chat request."""

    profile: ModelProfile

    def count_prompt_tokens(self, messages: list[Message], image_budget: int | None = None) -> int:
        """Exact prompt tokens of ``messages`` (images counted at ``image_budget``)."""
        ...

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
        """One request; with ``schema`` the answer is parsed into it (``result.parsed``).

        Raises ``ContextOverflowError`` when the prompt does not fit, ``InvalidOutputError`` when
        the answer never matches ``schema``, and ``ServerError`` for other failures.
        """
        ...

    def close(self) -> None:
        """Release connections; the model is not used afterwards."""
        ...
