"""The chat client's parts on the real tiny vLLM server: typed transport errors, and one client shared by threads.

The transport tells refusals apart by type (never by its own wording) and carries the server's words in
``detail``; structured-output negotiation and the capabilities the client learns are decided once, however
many threads send their first request at the same moment.
"""

from __future__ import annotations

import threading
from typing import Literal

import pytest
from PIL import Image
from pydantic import BaseModel

from tilepilot.model_runtime.client import ChatClient
from tilepilot.model_runtime.errors import ContextOverflowError, RequestRejectedError, ServerUnreachableError
from tilepilot.model_runtime.payloads import ImagePart, Message, TextPart
from tilepilot.model_runtime.probe import limit_from_error
from tilepilot.model_runtime.server import free_port
from tilepilot.model_runtime.transport import CHAT_PATH, Transport

pytestmark = pytest.mark.integration


class Verdict(BaseModel):
    label: Literal["form", "photo"]  # the grammar keeps a random-weight model's answer short


def _body(model: str, text: str, **extra: object) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 4, "temperature": 0.0, **extra}


def test_the_transport_types_what_the_server_refuses(vllm_server):
    transport = Transport([vllm_server.base_url], max_retries=0)
    model = vllm_server.profile.served_name
    try:
        data, url = transport.post(CHAT_PATH, _body(model, "Hello"))
        assert data["choices"] and url == vllm_server.base_url

        with pytest.raises(RequestRejectedError) as rejected:  # an invalid request: a refusal, not a hiccup
            transport.post(CHAT_PATH, _body(model, "Hello", max_tokens=-1))
        assert rejected.value.detail and rejected.value.detail in str(rejected.value)

        with pytest.raises(ContextOverflowError) as overflow:
            transport.post(CHAT_PATH, _body(model, "word " * (vllm_server.profile.max_model_len + 1000)))
        # The server's own words name its limit; the client learns the context from them.
        assert limit_from_error(overflow.value.detail) == vllm_server.profile.max_model_len, overflow.value.detail
    finally:
        transport.close()
    gone = Transport([f"http://127.0.0.1:{free_port(0)}"], max_retries=1, backoff_s=0.01)
    with pytest.raises(ServerUnreachableError) as unreachable:
        gone.post(CHAT_PATH, _body(model, "Hello"))
    assert "\n" not in str(unreachable.value)
    gone.close()


def test_one_client_shared_by_threads_learns_each_capability_once(vllm_server):
    """Eight threads send the client's first image request with a schema at once: the images verdict and the
    structured-output flavour are each decided and reported exactly once, and every answer parses."""
    client = ChatClient([vllm_server.base_url], vllm_server.profile, max_retries=1, backoff_s=0.1)
    events: list[tuple[str, dict]] = []
    client.on_event = lambda kind, **fields: events.append((kind, fields))
    client.check()
    assert client.capabilities.images == "unchecked" and client.capabilities.structured_output == "unchecked"
    start = threading.Barrier(8)
    results, errors = [], []

    def ask(index: int) -> None:
        image = Image.new("RGB", (96 + 48 * (index % 2), 96), "white")
        start.wait()
        try:
            results.append(client.chat([Message(role="user", parts=[ImagePart(image=image), TextPart(text="Label it.")])],
                                       schema=Verdict, max_tokens=24))
        except Exception as err:  # noqa: BLE001 - reported below, with the others
            errors.append(err)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    client.close()
    assert not errors, errors
    assert len(results) == 8 and all(isinstance(r.parsed, Verdict) for r in results)
    learned = [fields for kind, fields in events if kind == "server_capability"]
    assert [f["images"] for f in learned if "images" in f] == ["honoured"], learned
    assert [f["structured_output"] for f in learned if "structured_output" in f] == ["json_schema"], learned
    assert client.capabilities.images == "honoured" and client.capabilities.structured_output == "json_schema"
