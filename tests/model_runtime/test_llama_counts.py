"""llama.cpp's counting rules and the crash report, without a server (fast; the server checks are in
test_llama_gguf.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tilepilot.model_runtime import server
from tilepilot.model_runtime.budget import image_grid, llama_cpp_audio_soft_tokens, llama_cpp_image_soft_tokens
from tilepilot.model_runtime.counting import with_placeholders
from tilepilot.model_runtime.gguf import parse_fallbacks
from tilepilot.model_runtime.processes import start_ticks
from tilepilot.model_runtime.profiles import IMAGE_BUDGETS, tiny_profile

SHAPES = [(612, 792), (792, 612), (1920, 1080), (1280, 800), (300, 2000), (4000, 500), (100, 100)]


@pytest.mark.parametrize("width, height", SHAPES)
def test_llama_cpp_keeps_every_budget_grid_it_does_not_have_to_grow(width: int, height: int) -> None:
    for budget in IMAGE_BUDGETS:
        grid = image_grid(width, height, budget)
        got = llama_cpp_image_soft_tokens(grid.width, grid.height)
        if grid.soft_tokens >= 70:
            assert got == grid.soft_tokens, (width, height, budget)
        else:  # mtmd grows an image under its 70-token minimum (vLLM does not)
            assert 70 <= got <= 70 + grid.width // 48 + grid.height // 48 + 1, (width, height, budget, got)


def test_llama_cpp_audio_is_one_token_per_started_640_samples() -> None:
    assert [llama_cpp_audio_soft_tokens(n) for n in (640, 641, 700, 1280, 45 * 16_000)] == [1, 2, 2, 2, 1125]


def test_placeholders_render_as_llama_server_joins_media_messages() -> None:
    profile = tiny_profile()
    wire = [{"role": "user", "content": [
        {"type": "text", "text": "header"}, {"type": "image_url", "image_url": {"url": "data:"}},
        {"type": "text", "text": "after"}, {"type": "text", "text": "last"},
        {"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}]},
        {"role": "assistant", "content": "plain"}]
    got = with_placeholders(wire, profile)
    # Newlines between text parts, none before or after a media marker (common/chat.cpp).
    assert got[0]["content"] == "header<|image|>after\nlast<|audio|>"
    assert got[1] == wire[1]
    text_only = [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]
    assert with_placeholders(text_only, profile) == text_only  # rendered by the template as sent


def test_quantize_fallbacks_are_read_from_llama_quantize_output() -> None:
    log = ("llama_tensor_get_type: warning: blk.0.attn_k.weight                  - ncols    128 not divisible by 256 "
           "(required for type    q4_K) -> falling back to    q5_0\n"
           "warning: blk.1.ffn_down.weight - ncols     96 not divisible by 256 (required for type    q6_K) "
           "(WARNING: must use F16 due to unusual shape) -> falling back to     f16\n")
    assert [(f.tensor, f.wanted, f.got) for f in parse_fallbacks(log)] == [
        ("blk.0.attn_k.weight", "q4_K", "q5_0"), ("blk.1.ffn_down.weight", "q6_K", "f16")]


def test_a_managed_server_that_died_is_reported_as_crashed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TILEPILOT_STATE_DIR", str(tmp_path))
    log = tmp_path / "fake.log"
    log.write_text("0.01.0 I loading\n0.02.0 E srv  load: something broke here\n#0 0x1 in ggml_abort ()\n")
    # A real process under the same supervising sh, named like a server (argv[0] "llama-server").
    script = "import os, time; time.sleep(60)"
    proc = subprocess.Popen(["/bin/sh", "-c", '"$@"; s=$?; echo $s > "$0"; exit $s', str(tmp_path / "fake.exit"),
                             "/bin/bash", "-c", f"exec -a llama-server {sys.executable} -c '{script}'"])
    time.sleep(0.5)
    state = {"profile": "fake", "engine": "llama.cpp", "pid": proc.pid, "host": "127.0.0.1", "port": 1,
             "model": "m", "served_name": "m", "log": str(log), "started_at": 0.0, "command": ["llama-server"],
             "exit_status_file": str(tmp_path / "fake.exit"), "start_ticks": start_ticks(proc.pid)}
    (tmp_path / "fake@llama.cpp.json").write_text(json.dumps(state))
    url = "http://127.0.0.1:1"
    assert server.crash_report(url) is None  # alive
    child = int(Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()[0])
    subprocess.run(["kill", "-SEGV", str(child)], check=True)
    proc.wait(timeout=10)
    report = server.crash_report(url)
    assert report is not None and "crashed (llama-server, killed by signal 11 (SIGSEGV))" in report
    assert "something broke here" in report and "ggml_abort" not in report and "\n" not in report
    assert server.stop("fake@llama.cpp") is None and not (tmp_path / "fake@llama.cpp.json").exists()
