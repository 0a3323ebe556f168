"""The client under injected server faults, in front of the real vLLM CPU server."""

import pytest
from pydantic import BaseModel, Field

from tilepilot.model_runtime.client import ChatClient
from tilepilot.model_runtime.errors import InvalidOutputError, ServerError, ServerUnreachableError
from tilepilot.model_runtime.payloads import Message
from tilepilot.model_runtime.server import free_port
from tests.faults.proxy import FaultProxy

pytestmark = pytest.mark.integration


class Note(BaseModel):
    text: str = Field(max_length=30)


@pytest.fixture
def proxy(vllm_server):
    with FaultProxy(vllm_server.base_url) as p:
        yield p


def _client(proxy, vllm_server, **kw):
    kw.setdefault("max_retries", 3)
    kw.setdefault("backoff_s", 0.05)
    return ChatClient([proxy.url], vllm_server.profile, **kw)


def _chat(client, **kw):
    return client.chat([Message.text("user", "note")], schema=Note, max_tokens=40, **kw)


def test_500_is_retried_with_backoff_then_succeeds(proxy, vllm_server):
    proxy.queue.extend(["500", "500"])
    res = _chat(_client(proxy, vllm_server))
    assert isinstance(res.parsed, Note)
    assert len(proxy.requests) == 3


def test_persistent_500_gives_a_one_line_error(proxy, vllm_server):
    proxy.always = "500"
    with pytest.raises(ServerError) as exc:
        _chat(_client(proxy, vllm_server, max_retries=2))
    assert "HTTP 500" in str(exc.value) and "3 attempts" in str(exc.value) and "\n" not in str(exc.value)
    assert len(proxy.requests) == 3


def test_dropped_connection_is_retried_then_reported(proxy, vllm_server):
    proxy.queue.append("close")
    assert isinstance(_chat(_client(proxy, vllm_server)).parsed, Note)
    proxy.always = "close"
    with pytest.raises(ServerError, match="dropped the connection"):
        _chat(_client(proxy, vllm_server, max_retries=1))


def test_slow_server_times_out_as_configured(proxy, vllm_server):
    proxy.delay_s = 1.5
    with pytest.raises(ServerError, match="did not answer within 1 s"):
        _chat(_client(proxy, vllm_server, timeout_s=1.0, max_retries=1))
    proxy.delay_s = 0.3
    assert isinstance(_chat(_client(proxy, vllm_server, timeout_s=30)).parsed, Note)


def test_invalid_json_is_retried_at_a_rising_temperature(proxy, vllm_server):
    proxy.queue.append("bad_json")
    res = _chat(_client(proxy, vllm_server), temperature=0.0)
    assert res.attempts == 2 and isinstance(res.parsed, Note)
    assert [r["temperature"] for r in proxy.requests] == [0.0, pytest.approx(0.3)]


def test_invalid_json_every_time_is_a_one_line_error(proxy, vllm_server):
    proxy.always = "bad_json"
    with pytest.raises(InvalidOutputError) as exc:
        _chat(_client(proxy, vllm_server))
    assert "Note" in str(exc.value) and "3 attempts" in str(exc.value) and "\n" not in str(exc.value)


def test_output_the_server_cannot_parse_is_retried_as_invalid_output(proxy, vllm_server):
    """llama-server answers HTTP 500 when its chat parser cannot read the model's output: the same request
    would come back the same, so it is not resent as a hiccup but retried at a rising temperature."""
    proxy.queue.append("unparsed")
    res = _chat(_client(proxy, vllm_server), temperature=0.0)
    assert res.attempts == 2 and isinstance(res.parsed, Note)
    assert [r["temperature"] for r in proxy.requests] == [0.0, pytest.approx(0.3)]
    proxy.always = "unparsed"
    with pytest.raises(InvalidOutputError) as exc:
        _chat(_client(proxy, vllm_server))
    assert "peg-native" in str(exc.value) and "\n" not in str(exc.value)
    assert len(proxy.requests) == 2 + 3


def test_server_down_at_start(vllm_server):
    url = f"http://127.0.0.1:{free_port(0)}"
    with pytest.raises(ServerUnreachableError, match="tilepilot serve start"):
        ChatClient([url], vllm_server.profile).check()
