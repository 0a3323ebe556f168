"""A real second server: llama.cpp's own ``llama-server`` on the Gemma 3 270M GGUF.

The binary is built and cached by .ci/setup-env.sh (``TILEPILOT_LLAMA``), portable across CPUs, and
smoke-tested there with one completion before it is cached. The model is text-only: its words are
real, if weak. The server renders chats with ``/apply-template`` and counts them with ``/tokenize``,
so tilepilot counts exactly; it takes ``json_schema`` (as a grammar) and no images here (no
projector), so tilepilot must refuse images in one line -- and still review.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from tilepilot.agents.runs import read_events
from tilepilot.model_runtime.server import free_port
from tests.conftest import REPO, tilepilot
from tests.gen.pdfs import digital_pdf
from tests.requires import require_llama_build
from tests.serving import wait_for_models

pytestmark = pytest.mark.integration

GGUF_NAME = "gemma-3-270m-q4_k_m.gguf"
N_CTX = 8192


@pytest.fixture(scope="module")
def llama_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    build = require_llama_build()
    port = free_port(0)
    log = tmp_path_factory.mktemp("llama") / "server.log"
    # The GGUF carries no chat template: name llama.cpp's built-in Gemma one (--no-jinja, or the name
    # would be taken as a Jinja template) instead of its ChatML fallback.
    cmd = [str(build / "bin" / "llama-server"), "-m", str(build / GGUF_NAME), "--host", "127.0.0.1",
           "--port", str(port), "-c", str(N_CTX), "-t", "2", "--no-webui", "--chat-template", "gemma", "--no-jinja"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        seconds = wait_for_models(proc, url, log, "llama.cpp server", limit_s=120)
        print(f"\n[llama.cpp] server ready in {seconds:.1f} s", flush=True)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_probe_of_the_llama_server(llama_url: str) -> None:
    proc = tilepilot("serve", "status", "--base-url", llama_url, "--json")
    assert proc.returncode == 0, proc.stderr
    caps = json.loads(proc.stdout)
    assert caps["served_id"].endswith(GGUF_NAME) and caps["served_id_source"] == "only model listed"
    assert (caps["counting"], caps["exact"]) == ("llama.cpp-chat", True) and caps["margin"] == 0
    assert caps["images"] == "none"  # no projector loaded
    assert caps["structured_output"] == "json_schema"  # llama-server turns the schema into a grammar
    print(f"\n[llama.cpp] probe: {caps}")


def test_ask_end_to_end(llama_url: str, tmp_path: Path) -> None:
    proc = tilepilot("ask", "Name three colours.", "--base-url", llama_url, "--json", "--max-tokens", "24")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["exact"] is True and out["usage"]["prompt_tokens"] == out["estimated_prompt_tokens"] > 0
    assert out["answer"].strip(), out
    print(f"\n[llama.cpp] ask: {out}")
    Image.new("RGB", (320, 240), "white").save(tmp_path / "a.png")
    refused = tilepilot("ask", "What is this?", "--base-url", llama_url, "--image", str(tmp_path / "a.png"))
    assert refused.returncode == 4
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "takes no images" in lines[0], refused.stderr


def test_review_of_a_text_pdf_end_to_end(llama_url: str, tmp_path: Path) -> None:
    pdf = digital_pdf(tmp_path / "contract.pdf", pages=1)  # one chunk, then the summary
    out = tmp_path / "run"
    started = time.monotonic()
    proc = tilepilot("review", str(pdf), "--rules", str(REPO / "rules" / "examples" / "contract.md"), "--concurrency", "1",
                     "--out", str(out), "--json", env={"TILEPILOT_BASE_URL": llama_url})
    print(f"\n[llama.cpp] review of a text page: {time.monotonic() - started:.1f} s")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    findings = json.loads((out / "findings.json").read_text())
    assert findings["documents"][0]["pages"] == 1
    events = out / "events.jsonl"
    probe = next(read_events(events, "server_probe"))
    assert probe["exact"] is True and probe["counting"] == "llama.cpp-chat"
    assert not list(read_events(events, "token_drift"))
    requests = [e for e in read_events(events, "request") if e["chunk"] != "summary"]
    assert requests and all(r["counted"] == r["prompt_tokens"] for r in requests), requests
    print(f"[llama.cpp] requests: {[(r['prompt_tokens'], r['completion_tokens'], r['latency_s']) for r in requests]}")
    finished = list(read_events(events, "run_finished"))
    assert finished[-1]["status"] == "done"
