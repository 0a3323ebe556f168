"""The server probe against protocol doubles: what cannot run here (Ollama's ids, a server without
``/tokenize`` or structured output, a smaller context), served by a small HTTP server in the test.

The double answers like such servers do (their ids, their 404s, ``{"tokens": []}``, a 400 for
``response_format``); the agents must still run, flag their counts as inexact, and never show a
traceback.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer

import pytest
from PIL import Image
from pydantic import BaseModel, Field

from tilepilot.agents.backend import connect
from tilepilot.agents.eval.rigs.oracle import _Handler as OracleHandler
from tilepilot.agents.runs import Run, read_events
from tilepilot.model_runtime.client import ChatClient
from tilepilot.model_runtime.counting import Corrector
from tilepilot.model_runtime.errors import ContextOverflowError, ImagesNotSupportedError, ModelNotServedError
from tilepilot.model_runtime.payloads import ImagePart, Message, TextPart
from tilepilot.model_runtime.probe import limit_from_error, plain_messages
from tilepilot.model_runtime.profiles import GEMMA_4_12B
from tests.conftest import tilepilot


@dataclass
class Behaviour:
    models: list[dict]
    tokenize: str = "404"  # "404", "empty" ({"tokens": []}), "count" (vLLM's shape) or "llama.cpp" (text in, tokens out)
    structured: str = "refuse"  # "refuse" (400 naming response_format), "llama" (500 for json_schema) or "ignore"
    n_ctx: int | None = None  # answer longer prompts as llama-cpp-python does (400, naming its window)
    chat_posts: int = 0
    answer: str = 'Sure! ```json\n{"label": "ok", "score": 7}\n```'
    requests: list[dict] = field(default_factory=list)


def _prompt_tokens(body: dict) -> int:
    """The double's own tokenizer: about 3 characters per token, images dropped (a text-only model)."""
    chars = 0
    for message in body["messages"]:
        content = message["content"]
        chars += len(content) if isinstance(content, str) else sum(len(p.get("text", "")) for p in content)
    return chars // 3 + 4 * len(body["messages"])


class _Handler(OracleHandler):
    """Reuses the oracle server's quiet JSON replies (``_send``); answers as ``behaviour`` says."""

    behaviour: Behaviour

    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/v1/models":
            self._send(200, {"object": "list", "data": self.behaviour.models})
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        b = self.behaviour
        if self.path == "/tokenize" and b.tokenize == "llama.cpp":
            self._send(200, {"tokens": list(range(len(body.get("content", "")) // 3))})
        elif self.path == "/tokenize" and b.tokenize == "empty":
            self._send(200, {"tokens": []})
        elif self.path == "/tokenize" and b.tokenize == "count":
            self._send(200, {"count": 12, "tokens": list(range(12))})
        elif self.path != "/v1/chat/completions":
            self._send(404, {"error": {"message": "Not Found"}})
        elif "response_format" in body and b.structured == "refuse":
            self._send(400, {"error": {"message": "response_format is not supported by this server"}})
        elif body.get("response_format", {}).get("type") == "json_schema" and b.structured == "llama":
            b.chat_posts += 1
            self._send(500, {"error": {"message": "1 validation error: ('body', 'response_format', 'type') "
                                                  "Input should be 'text' or 'json_object'", "type": "internal_server_error"}})
        elif b.n_ctx is not None and _prompt_tokens(body) > b.n_ctx:
            self._send(400, {"error": {"message": f"Requested tokens ({_prompt_tokens(body)}) exceed context window of {b.n_ctx}"}})
        else:
            b.chat_posts += 1
            b.requests.append(body)
            self._send(200, {"choices": [{"message": {"role": "assistant", "content": b.answer}, "finish_reason": "stop"}],
                             "usage": {"prompt_tokens": _prompt_tokens(body), "completion_tokens": 9}})


@pytest.fixture
def double() -> Iterator[tuple[str, Behaviour]]:
    behaviour = Behaviour(models=[{"id": "llama3.2:latest"}, {"id": "gemma-4-12b:latest"}])
    handler = type("Handler", (_Handler,), {"behaviour": behaviour})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", behaviour
    server.shutdown()
    server.server_close()


class Verdict(BaseModel):
    label: str = Field(max_length=40)
    score: int = Field(ge=0, le=100)


def _ask(client: ChatClient, text: str = "Classify the indemnity clause.", **kwargs):
    return client.chat([Message.text("system", "You review contracts."), Message.text("user", text)], **kwargs)


def test_ollama_ids_without_tokenize_or_structured_output(double):
    url, behaviour = double
    with connect("gemma-4-12b", [url]) as client:
        caps = client.capabilities
        assert (caps.served_id, caps.served_id_source) == ("gemma-4-12b:latest", "same model")
        assert caps.counting == "estimate" and not caps.exact and caps.margin > 0
        result = _ask(client, schema=Verdict)
    assert result.parsed == Verdict(label="ok", score=7)  # fenced JSON, parsed leniently and validated
    assert result.exact is False
    assert caps.structured_output == "none"
    sent = behaviour.requests[-1]
    assert sent["model"] == "gemma-4-12b:latest" and "response_format" not in sent
    # Plain messages: one string, the system text folded into the user turn (Gemma has no system role).
    assert sent["messages"] == [{"role": "user", "content": "You review contracts.\n\nClassify the indemnity clause."}]


def test_tokenize_with_no_tokens_falls_back_to_an_estimate(double):
    url, behaviour = double
    behaviour.tokenize = "empty"
    with connect("gemma-4-12b", [url]) as client:
        assert client.capabilities.counting == "estimate"
        counted = client.count_prompt_tokens([Message.text("user", "word " * 300)])
        assert counted > 300 * 5 / 3.5  # the margin pads the character estimate
        assert _ask(client).text


def test_llama_cpp_servers_own_tokenize_shape(double):
    url, behaviour = double
    behaviour.tokenize = "llama.cpp"
    with connect("gemma-4-12b", [url]) as client:
        assert client.capabilities.counting == "llama.cpp" and not client.capabilities.exact
        text = "word " * 300
        raw = len(text) // 3 + 6 + 3  # text tokens + one message's template + the generation prompt
        assert client.capabilities.margin == 0.05
        assert client.count_prompt_tokens([Message.text("user", text)]) == -(-raw * 105 // 100)  # ceil of raw + 5%


def test_plain_vllm_serve_id_and_the_servers_smaller_context(double):
    url, behaviour = double
    behaviour.models = [{"id": "google/gemma-4-12B-it", "max_model_len": 8192}]
    behaviour.tokenize = "count"
    with connect("gemma-4-12b", [url]) as client:
        caps = client.capabilities
        assert caps.served_id == "google/gemma-4-12B-it" and caps.exact
        assert (caps.max_model_len, caps.max_model_len_source) == (8192, "server")
        assert client.profile.max_model_len == 8192
        assert client.profile.input_budget == 8192 - GEMMA_4_12B.output_reserve


def test_several_models_none_ours_is_one_line_naming_served_name(double):
    url, behaviour = double
    behaviour.models = [{"id": "llama3.2:latest"}, {"id": "qwen3:8b"}]
    with pytest.raises(ModelNotServedError, match="--served-name") as err:
        connect("gemma-4-12b", [url])
    assert "\n" not in str(err.value) and "qwen3:8b" in str(err.value)
    with connect("gemma-4-12b", [url], served_name="qwen3:8b") as client:
        assert client.capabilities.served_id_source == "--served-name"


def test_images_to_a_text_only_server_are_refused_in_one_line(double):
    url, _ = double
    image = Image.new("RGB", (300, 200), "white")
    with connect("gemma-4-12b", [url]) as client:
        with pytest.raises(ImagesNotSupportedError, match="takes no images") as err:
            client.chat([Message(role="user", parts=[ImagePart(image=image), TextPart(text="What is this?")])])
        assert client.capabilities.images == "none" and "\n" not in str(err.value)


def test_probe_and_drift_are_in_the_runs_events(double, tmp_path):
    url, _ = double

    class Options(BaseModel):
        model: str = "gemma-4-12b"

    with connect("gemma-4-12b", [url]) as client, \
            Run.open("probe-test", Options(), out=tmp_path / "run", client=client) as run:
        for text in ("short", "a much longer question " * 40):
            result = _ask(client, text)
        run.finish("done")
    probe = next(read_events(run.dir / "events.jsonl", "server_probe"))
    assert probe["exact"] is False and probe["served_id"] == "gemma-4-12b:latest" and probe["counting"] == "estimate"
    drifts = list(read_events(run.dir / "events.jsonl", "token_drift"))
    assert len(drifts) == 2
    assert drifts[-1]["actual"] == result.usage.prompt_tokens and drifts[-1]["estimated"] == result.estimated_prompt_tokens
    assert drifts[-1]["scale"] != 1.0  # corrected from the first answer's usage


def test_cli_against_the_double(double, tmp_path):
    url, _ = double
    asked = tilepilot("ask", "Who are you?", "--model", "gemma-4-12b", "--base-url", url, "--json")
    assert asked.returncode == 0, asked.stderr
    out = json.loads(asked.stdout)
    assert out["exact"] is False and out["usage"]["prompt_tokens"] > 0
    status = tilepilot("serve", "status", "--model", "gemma-4-12b", "--base-url", url, "--json")
    assert status.returncode == 0, status.stderr
    caps = json.loads(status.stdout)
    assert (caps["served_id"], caps["exact"], caps["images"], caps["structured_output"]) == (
        "gemma-4-12b:latest", False, "none", "none")
    table = tilepilot("serve", "status", "--model", "gemma-4-12b", "--base-url", url)
    assert "takes no images" in table.stdout and "margin" in table.stdout, table.stdout
    Image.new("RGB", (300, 200), "white").save(tmp_path / "a.png")
    refused = tilepilot("ask", "What is this?", "--model", "gemma-4-12b", "--base-url", url, "--image", str(tmp_path / "a.png"))
    assert refused.returncode == 4
    assert refused.stderr.strip().splitlines() == [refused.stderr.strip()] and "takes no images" in refused.stderr


def test_llama_cpp_pythons_500_for_json_schema_steps_down_to_a_grammar_at_once(double):
    url, behaviour = double
    behaviour.structured = "llama"
    behaviour.answer = '{"label": "ok", "score": 7}'
    with connect("gemma-4-12b", [url]) as client:
        assert _ask(client, schema=Verdict).parsed == Verdict(label="ok", score=7)
        assert client.capabilities.structured_output == "grammar"
    assert behaviour.chat_posts == 2  # the refusal is not retried as if the server had hiccuped
    assert behaviour.requests[-1]["response_format"]["type"] == "json_object"


def test_an_overflow_naming_a_smaller_window_lowers_the_limit(double, tmp_path):
    url, behaviour = double
    behaviour.n_ctx = 2048

    class Options(BaseModel):
        model: str = "gemma-4-12b"

    with connect("gemma-4-12b", [url]) as client, \
            Run.open("probe-test", Options(), out=tmp_path / "run", client=client) as run:
        assert client.profile.max_model_len == GEMMA_4_12B.max_model_len  # the server does not say
        with pytest.raises(ContextOverflowError):
            _ask(client, "word " * 4000)
        assert client.profile.max_model_len == 2048 and client.profile.input_budget == 1024
        run.finish("done")
    learned = next(read_events(run.dir / "events.jsonl", "max_model_len_learned"))
    assert learned["max_model_len"] == 2048


def test_limit_from_error_messages():
    assert limit_from_error("This model's maximum context length is 4096 tokens. However, you requested 5011") == 4096
    assert limit_from_error("Requested tokens (3000) exceed context window of 2048") == 2048
    assert limit_from_error("the request exceeds the available context size, n_ctx_slot = 8192") == 8192
    assert limit_from_error("something else") is None


def test_corrector_scales_by_what_the_server_reported():
    corrector = Corrector(0.10)
    assert corrector.padded(100) == 110
    drift = corrector.learn(raw=100, estimated=110, actual=150)
    assert drift.drift == 40 and drift.scale == 1.5
    assert corrector.padded(100) == 165


def test_plain_messages_keep_media_parts():
    image = {"type": "image_url", "image_url": {"url": "data:"}}
    sent = plain_messages([{"role": "system", "content": [{"type": "text", "text": "S"}]},
                           {"role": "user", "content": [image, {"type": "text", "text": "U"}]}])
    assert sent == [{"role": "user", "content": [{"type": "text", "text": "S"}, image, {"type": "text", "text": "U"}]}]
