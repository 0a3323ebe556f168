"""The eval core: systems from the command line, the reference answerer's server, scoring helpers."""

from __future__ import annotations

import httpx
import pytest
from pydantic import BaseModel, Field

from tilepilot.agents.errors import UsageError
from tilepilot.agents.eval.core import SystemSpec, iou, parse_systems, prf, run_suite
from tilepilot.agents.eval.rigs.oracle import OracleReply, OracleServer, clip_to_schema, minimal_instance, oracle_profile, right_share
from tilepilot.model_runtime.client import ChatClient
from tilepilot.model_runtime.errors import InvalidOutputError
from tilepilot.model_runtime.payloads import ImagePart, Message, TextPart
from tests.conftest import tilepilot


def test_systems_pair_urls_with_the_non_oracle_models_in_order():
    systems = parse_systems(["oracle", "tiny", "gemma-4-12b"], ["-", "http://gpu:8000,http://gpu2:8000"])
    assert [(s.label, s.base_urls) for s in systems] == [
        ("oracle", []), ("tiny", []), ("gemma-4-12b@http://gpu:8000,http://gpu2:8000", ["http://gpu:8000", "http://gpu2:8000"])]
    assert systems[0].oracle_p == 1.0 and systems[1].oracle_p is None
    one = parse_systems(["gemma-4-12b"], ["http://a:1", "http://b:1"])  # one real model: URLs are replicas
    assert one[0].base_urls == ["http://a:1", "http://b:1"]
    assert parse_systems([], [])[0].model == "tiny"
    assert SystemSpec(label="x", model="oracle:0.25").oracle_p == 0.25


@pytest.mark.parametrize("models,urls,words", [
    (["tiny", "gemma-4-12b"], ["http://a", "http://b", "http://c"], "3 --base-url values"),
    (["oracle", "oracle"], [], "given twice"),
    (["oracle:1.5"], [], "between 0 and 1"),
    (["oracle:half"], [], "between 0 and 1"),
])
def test_bad_systems_are_one_line_usage_errors(models, urls, words):
    with pytest.raises(UsageError, match=words):
        parse_systems(models, urls)


def test_cli_unknown_suite_is_one_line_and_writes_nothing(tmp_path):
    proc = tilepilot("eval", "nosuch", "--model", "oracle", "--out", str(tmp_path / "out"))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().startswith("tilepilot: error: unknown suite 'nosuch'") and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_unknown_suite_from_the_api():
    with pytest.raises(UsageError, match="unknown suite"):
        run_suite("nosuch", [SystemSpec(label="oracle", model="oracle")], __import__("pathlib").Path("/nonexistent"))


def test_scoring_helpers():
    assert prf(3, 1, 0) == {"precision": 0.75, "recall": 1.0, "f1": pytest.approx(6 / 7)}
    assert prf(0, 0, 0)["f1"] == 1.0 and prf(0, 2, 2)["f1"] == 0.0
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)
    assert iou((0, 0, 1, 1), (2, 2, 3, 3)) == 0.0


class _Item(BaseModel):
    name: str = Field(max_length=5)
    page: int | None


class _Answer(BaseModel):
    items: list[_Item] = Field(max_length=2)
    kind: str


def test_schema_minimal_instance_and_clipping_follow_the_requested_schema():
    schema = _Answer.model_json_schema()
    assert _Answer.model_validate(minimal_instance(schema)).items == []
    long = {"items": [{"name": "abcdefgh", "page": 1}] * 3, "kind": "x"}
    clipped = clip_to_schema(long, schema)
    assert len(clipped["items"]) == 2 and clipped["items"][0]["name"] == "abcde"


def test_right_share_is_fixed_per_key_and_spreads_evenly():
    # Fixed across processes and versions (not Python's per-process hash): oracle:P scores stay comparable.
    assert (right_share("a"), right_share("b")) == (pytest.approx(0.79137427), pytest.approx(0.24273539))
    shares = [right_share(f"case-{i}") for i in range(2000)]
    assert all(0 <= s < 1 for s in shares) and len(set(shares)) == len(shares)
    for p in (0.25, 0.5, 0.75):  # oracle:P answers about a share P of the cases right
        assert abs(sum(s < p for s in shares) / len(shares) - p) < 0.03, p


def test_oracle_server_answers_counts_and_flags_unidentified_requests():
    def answer(body: dict) -> OracleReply | None:
        text = body["messages"][-1]["content"][0]["text"]
        if "known" not in text:
            return None
        return OracleReply(key=text, right={"items": [{"name": "right", "page": 1}], "kind": "r"},
                           wrong={"items": [], "kind": "w"})

    with OracleServer(answer, p=1.0) as server:
        client = ChatClient([server.base_url], oracle_profile(), max_retries=0)
        client.check()
        image = _white_page()
        messages = [Message(role="user", parts=[TextPart(text="known case"), ImagePart(image=image)])]
        result = client.chat(messages, schema=_Answer, image_budget=280)
        assert result.parsed.kind == "r"
        # usage and /tokenize agree: the text count plus the exact image tokens
        assert result.usage.prompt_tokens == client.count_prompt_tokens(messages, 280) == result.estimated_prompt_tokens
        assert client.chat([Message.text("user", "???")], schema=_Answer).parsed.items == []
        assert (server.requests, server.unidentified) == (2, 1)
        # a too-small max_tokens cuts the answer mid-JSON, as a real server does
        with pytest.raises(InvalidOutputError):
            client.chat(messages, schema=_Answer, max_tokens=3, output_attempts=1)
        # the context limit is the profile's: an oversize request is a 400 context error
        r = httpx.post(server.base_url + "/v1/chat/completions",
                       json={"model": "oracle", "messages": [{"role": "user", "content": "known"}], "max_tokens": 10**6})
        assert r.status_code == 400 and "maximum context length" in r.text
    with OracleServer(answer, p=0.0) as server:  # oracle:0 answers every case wrong
        client = ChatClient([server.base_url], oracle_profile(), max_retries=0)
        assert client.chat([Message.text("user", "known")], schema=_Answer).parsed.kind == "w"


def _white_page():
    from PIL import Image

    return Image.new("RGB", (612, 792), "white")


@pytest.mark.integration
def test_oracle_counts_tokens_exactly_as_vllm_serving_the_tiny_checkpoint(chat_client):
    with OracleServer(lambda body: None) as server:
        oracle = ChatClient([server.base_url], chat_client.profile.model_copy(update={"served_name": "oracle"}))
        for messages in ([Message.text("system", "You review contracts."), Message.text("user", "=== page 3 (text layer) ===\nThe Supplier may terminate.")],
                         [Message(role="user", parts=[TextPart(text="look"), ImagePart(image=_white_page()), TextPart(text="done \u00e9\u20ac")])]):
            assert oracle.count_prompt_tokens(messages, 280) == chat_client.count_prompt_tokens(messages, 280)
