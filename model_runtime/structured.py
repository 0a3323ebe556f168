"""The chat client's structured-output negotiation: which ``response_format`` a server takes, and the parse.

Until a schema request has worked, a refused flavour steps down json_schema -> grammar (llama.cpp's
json_object with a schema) -> none; with none, the answer is parsed leniently and validated. A refusal is
a :class:`~tilepilot.model_runtime.errors.RequestRejectedError`, or a server error whose own words are about
the format: never this package's wording. The flavour learned lives in the server's capabilities and is
set under a lock, so threads that negotiate at once agree on one.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from tilepilot.model_runtime.errors import RequestRejectedError, ServerError
from tilepilot.model_runtime.probe import ServerCapabilities, about_format, lenient_json, response_format

T = TypeVar("T", bound=BaseModel)
FLAVOURS = ("json_schema", "grammar", "none")

PostChat = Callable[[dict], tuple[dict, str]]  # one chat body -> (answer, replica URL)
EventSink = Callable[..., None]


class StructuredOutput:
    """Sends chat bodies in the flavour the server takes, learning it from refusals on the first schema requests."""

    def __init__(self, emit: EventSink) -> None:
        self._emit = emit
        self._lock = threading.Lock()

    def send(self, post: PostChat, body: dict, schema: type[BaseModel] | None,
             caps: ServerCapabilities | None) -> tuple[dict, str]:
        known = caps.structured_output if caps is not None else "json_schema"
        trying = schema is not None and known == "unchecked"
        flavours = list(FLAVOURS) if trying else [known]
        while True:
            body.pop("response_format", None)
            if schema is not None and (fmt := response_format(schema, flavours[0])) is not None:
                body["response_format"] = fmt
            try:
                data, url = post(body)
            except ServerError as err:
                refused = isinstance(err, RequestRejectedError) or about_format(err.detail)
                if not trying or len(flavours) == 1 or not refused:
                    raise
                self._emit("server_capability", refused=flavours.pop(0), reason=str(err)[:200])
                continue
            if trying and caps is not None:
                with self._lock:
                    if caps.structured_output == "unchecked":  # the first thread to succeed decides
                        caps.structured_output = flavours[0]  # type: ignore[assignment]
                        self._emit("server_capability", structured_output=flavours[0])
            return data, url


def parse(schema: type[T], text: str) -> tuple[T | None, str]:
    """``text`` as ``schema`` (as sent, then leniently repaired), or None and the first problem, on one line."""
    problem = ""
    for candidate in (text, lenient_json(text)):
        try:
            # strict=False: xgrammar lets raw control characters into JSON strings, which a strict
            # parser rejects; they are harmless in our string fields.
            return schema.model_validate(json.loads(candidate, strict=False)), ""
        except (ValidationError, ValueError) as err:
            problem = " ".join(str(err).split())[:200]
    return None, problem
