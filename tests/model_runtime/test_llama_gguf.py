"""tilepilot's own model on llama.cpp: the tiny checkpoint exported to GGUF, served by ``llama-server``.

One managed llama-server (``tilepilot serve start --engine llama.cpp``) serves the module; it
starts in seconds. Every count below is the server's ``usage.prompt_tokens`` against tilepilot's
prediction of llama.cpp's count (not vLLM's: llama.cpp grows small images to 70 tokens, and counts
audio one token per started 640 samples).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from tilepilot.agents.runs import read_events
from tilepilot.model_runtime.budget import image_grid
from tilepilot.model_runtime.server import free_port
from tilepilot.model_runtime.tiny import default_checkpoint_dir
from tests.conftest import REPO, tilepilot
from tests.gen.pdfs import mixed_corpus
from tests.requires import require_llama_build
from tests.x11.fixtures import xvfb  # noqa: F401  (the session's X server fixture)

pytestmark = pytest.mark.integration
RULES = str(REPO / "rules" / "examples" / "contract.md")


class Served:
    def __init__(self, url: str, env: dict[str, str], port: int) -> None:
        self.url, self.env, self.port = url, env, port


def _start(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return tilepilot("serve", "start", "--engine", "llama.cpp", *args, env=env, timeout=600)


@pytest.fixture(scope="module")
def llama_tiny(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    require_llama_build()
    env = {"TILEPILOT_STATE_DIR": str(tmp_path_factory.mktemp("llama-state"))}
    port = free_port(0)
    started = time.monotonic()
    proc = _start(env, "--model", "tiny", "--port", str(port))
    assert proc.returncode == 0, proc.stderr
    print(f"\n[llama.cpp] tiny GGUF export (cached) + llama-server start: {time.monotonic() - started:.1f} s")
    try:
        yield Served(f"http://127.0.0.1:{port}", env, port)
    finally:
        tilepilot("serve", "stop", "--engine", "llama.cpp", env=env)


def _image(path: Path, width: int, height: int) -> Path:
    y, x = np.mgrid[0:height, 0:width]
    Image.fromarray(np.stack([(x * 7) % 256, (y * 5) % 256, ((x ^ y) * 3) % 256], axis=-1).astype(np.uint8)).save(path)
    return path


def _wav(path: Path, samples: int) -> Path:
    sf.write(path, (np.random.default_rng(samples).standard_normal(samples) * 0.1).astype(np.float32), 16000)
    return path


def _ask(served: Served, *args: str) -> dict:
    proc = tilepilot("ask", "What is in it?", "--base-url", served.url, "--json", "--max-tokens", "4", *args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_gguf_export_reports_quant_fallbacks(tmp_path: Path) -> None:
    require_llama_build()
    out = tmp_path / "q4"
    proc = tilepilot("model", "gguf", "tiny", "--out", str(out), "--quant", "q4_k_m", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert (out / "model.gguf").stat().st_size > 0 and (out / "mmproj.gguf").stat().st_size > 0
    # The tiny model's rows are 128 or 256 wide; Q4_K_M's q4_K and q6_K need 256: the narrow ones fall
    # back as llama.cpp does (q5_0, q8_0).
    assert result["fallbacks"] and {f["wanted"] for f in result["fallbacks"]} <= {"q4_K", "q6_K"}
    assert all(f["got"] != f["wanted"] for f in result["fallbacks"])
    print(f"\n[llama.cpp] q4_k_m fallbacks: {len(result['fallbacks'])}, e.g. {result['fallbacks'][0]}")


def test_gguf_export_refuses_bad_checkpoints_and_writes_nothing(tmp_path: Path) -> None:
    require_llama_build()
    not_ckpt = tmp_path / "notes"
    not_ckpt.mkdir()
    (not_ckpt / "readme.txt").write_text("hello")
    half = tmp_path / "half"
    shutil.copytree(default_checkpoint_dir(), half)
    weights = half / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # a copy cut short
    for folder, says in ((not_ckpt, "not a checkpoint folder"), (half, "half-written")):
        out = tmp_path / f"out-{folder.name}"
        proc = tilepilot("model", "gguf", str(folder), "--out", str(out))
        assert proc.returncode == 4, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and says in lines[0], proc.stderr
        assert not out.exists() and not list(tmp_path.glob(f".out-{folder.name}*"))


def test_probe_finds_exact_counts_images_and_structured_output(llama_tiny: Served) -> None:
    proc = tilepilot("serve", "status", "--base-url", llama_tiny.url, "--json")
    assert proc.returncode == 0, proc.stderr
    caps = json.loads(proc.stdout)
    assert (caps["counting"], caps["exact"], caps["served_id"]) == ("llama.cpp-chat", True, "tiny")
    assert caps["images"] == "honoured"
    assert caps["structured_output"] == "json_schema"
    # serve start applied the memory plan: one slot (its default), which the agents will not exceed.
    assert (caps["server_slots"], caps["agents"]["requests_in_flight"]) == (1, 1), caps
    status = json.loads(tilepilot("serve", "status", "--engine", "llama.cpp", "--json", env=llama_tiny.env).stdout)
    assert status["healthy"] and status["base_url"] == llama_tiny.url


def test_ask_with_an_image_an_audio_clip_and_both(llama_tiny: Served, tmp_path: Path) -> None:
    page = _image(tmp_path / "page.png", 850, 1100)
    clip = _wav(tmp_path / "clip.wav", 3 * 16_000 + 100)  # n % 640 == 100: vLLM would count a token fewer
    for args in (("--image", str(page)), ("--audio", str(clip)), ("--image", str(page), "--audio", str(clip))):
        out = _ask(llama_tiny, *args)
        assert out["answer"] and out["exact"], (args, out)
        assert out["usage"]["prompt_tokens"] == out["estimated_prompt_tokens"], (args, out)


def test_counts_match_the_server_for_five_budgets_and_three_clips(llama_tiny: Served) -> None:
    from tilepilot.model_runtime.client import ChatClient
    from tilepilot.model_runtime.payloads import AudioPart, ImagePart, Message, TextPart
    from tilepilot.model_runtime.profiles import tiny_profile

    y, x = np.mgrid[0:1100, 0:850]
    page = Image.fromarray(np.stack([(x * 7) % 256, (y * 5) % 256, ((x ^ y) * 3) % 256], axis=-1).astype(np.uint8))
    table = []
    with ChatClient([llama_tiny.url], tiny_profile()) as client:
        client.check()
        for budget in (70, 140, 280, 560, 1120):
            result = client.chat([Message(role="user", parts=[ImagePart(image=page), TextPart(text="Describe.")])],
                                 max_tokens=1, image_budget=budget)
            assert result.exact and result.usage.prompt_tokens == result.estimated_prompt_tokens, (budget, result)
            grid = image_grid(850, 1100, budget)
            table.append((budget, f"{grid.width}x{grid.height}", grid.prompt_tokens, result.usage.prompt_tokens))
        # 1 s, 10 s, and 30 s less 540 samples (n % 640 == 100: vLLM would count one token fewer).
        for samples in (16_000, 160_000, 30 * 16_000 - 540):
            noise = (np.random.default_rng(samples).standard_normal(samples) * 0.1).astype(np.float32)
            result = client.chat([Message(role="user", parts=[AudioPart(samples=noise), TextPart(text="Transcribe.")])],
                                 max_tokens=1)
            assert result.exact and result.usage.prompt_tokens == result.estimated_prompt_tokens, (samples, result)
            table.append(("audio", samples, None, result.usage.prompt_tokens))
    print(f"\n[llama.cpp] budget, grid, image tokens on vLLM, prompt tokens on llama.cpp: {table}")


def _review(url: str, pdf: Path, run: Path, env: dict[str, str], *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tilepilot", "review", str(pdf), "--rules", RULES, "--budget-tokens", "2600",
         "--concurrency", "1", "--base-url", url, "--out", str(run), "--json", *extra],
        cwd=REPO, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_review_of_a_mixed_pdf_end_to_end(llama_tiny: Served, tmp_path: Path) -> None:
    pdf = tmp_path / "mixed.pdf"
    kinds = mixed_corpus(pdf, 8)
    assert {"scan", "table"} <= set(kinds), kinds
    run = tmp_path / "run"
    proc = tilepilot("review", str(pdf), "--rules", RULES, "--budget-tokens", "2600", "--base-url", llama_tiny.url,
                     "--out", str(run), "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((run / "findings.json").read_text())["documents"][0]
    assert doc["pages"] == 8 and doc["failed_pages"] == []
    probe = next(read_events(run / "events.jsonl", "server_probe"))
    assert probe["exact"] is True and probe["counting"] == "llama.cpp-chat"
    assert not list(read_events(run / "events.jsonl", "token_drift")), "a count missed the server's"
    requests = [e for e in read_events(run / "events.jsonl", "request") if e["chunk"] != "summary"]
    assert requests and all(r["counted"] == r["prompt_tokens"] for r in requests), requests  # exact before sending
    lowered = next(read_events(run / "events.jsonl", "concurrency_lowered"))  # --concurrency 2 (the default), 1 slot
    assert (lowered["wanted"], lowered["used"], lowered["server_slots"]) == (2, 1, 1), lowered


def test_projector_missing_and_foreign_gguf_are_one_line(llama_tiny: Served, tmp_path: Path) -> None:
    from tilepilot.model_runtime.llama_server import exported_dir

    export = exported_dir(default_checkpoint_dir())
    lonely = tmp_path / "no-projector"
    lonely.mkdir()
    shutil.copy(export / "model.gguf", lonely / "model.gguf")
    env = {"TILEPILOT_STATE_DIR": str(tmp_path / "state")}
    proc = _start(env, "--model", str(lonely), "--port", str(free_port(0)))
    assert proc.returncode == 4
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no projector" in lines[0], proc.stderr
    # Gemma 3 270M (another architecture, another width) beside tilepilot's projector.
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "model.gguf").symlink_to(require_llama_build() / "gemma-3-270m-q4_k_m.gguf")
    shutil.copy(export / "mmproj.gguf", foreign / "mmproj.gguf")
    proc = _start(env, "--model", str(foreign), "--port", str(free_port(0)))
    assert proc.returncode == 4
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "llama-server exited" in lines[0] and "mismatch" in lines[0], proc.stderr
    print(f"\n[llama.cpp] foreign GGUF: {lines[0]}")


def test_server_killed_mid_review_is_reported_as_crashed_and_the_review_resumes(tmp_path: Path) -> None:
    require_llama_build()
    env = {"TILEPILOT_STATE_DIR": str(tmp_path / "state")}
    port = free_port(0)
    url = f"http://127.0.0.1:{port}"
    assert _start(env, "--model", "tiny", "--port", str(port)).returncode == 0
    state = json.loads(tilepilot("serve", "status", "--engine", "llama.cpp", "--json", env=env).stdout)
    pdf = tmp_path / "doc.pdf"
    mixed_corpus(pdf, 6, plant={2: ["Contact jane.roe@example.com for notices."]})  # three chunks: killed after the first
    run = tmp_path / "run"
    try:
        review = _review(url, pdf, run, env)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and len(list(read_events(run / "events.jsonl", "chunk_done"))) < 1:
            assert review.poll() is None, review.stderr.read()[-2000:]
            time.sleep(0.02)
        # The server itself, not its supervising sh: a crash, as a segfault or the OOM killer would end it.
        children = [int(c) for c in Path(f"/proc/{state['pid']}/task/{state['pid']}/children").read_text().split()]
        os.kill(children[0], signal.SIGKILL)
        _, err = review.communicate(timeout=120)
        assert review.returncode != 0
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "crashed" in lines[0] and "SIGKILL" in lines[0] and url in lines[0], err
        assert not (run / "findings.json").exists()
        assert _start(env, "--model", "tiny", "--port", str(port)).returncode == 0
        resumed = tilepilot("review", "--resume", str(run), "--base-url", url, "--json", env=env)
        assert resumed.returncode == 0, resumed.stderr
        fresh = _review(url, pdf, tmp_path / "fresh", env)  # the same review, never interrupted
        fresh_out, fresh_err = fresh.communicate(timeout=300)
        assert fresh.returncode == 0, fresh_err
    finally:
        tilepilot("serve", "stop", "--engine", "llama.cpp", env=env)
    chunks = [e["chunk"] for e in read_events(run / "events.jsonl", "request") if e["chunk"] != "summary"]
    assert len(chunks) == len(set(chunks)), "a chunk was sent twice"
    got, want = (json.loads(out)["documents"][0] for out in (resumed.stdout, fresh_out))
    assert got["failed_pages"] == want["failed_pages"] == []
    # The rule checks match exactly; the random-weight model's own findings may differ with the server's state.
    checks = lambda doc: sorted(f["id"] for f in doc["findings"] if f["source"] == "check")  # noqa: E731
    assert checks(got) == checks(want) and checks(got), (got, want)


@pytest.mark.x11
def test_desktop_run_on_the_tk_app(llama_tiny: Served, xvfb, tmp_path: Path) -> None:  # noqa: F811
    from tests.x11.tk import launch_tk_app

    app = launch_tk_app(xvfb, tmp_path / "app.jsonl", label="Press OK", geometry="800x500+20+20")
    try:
        env = {"DISPLAY": xvfb.display, "TILEPILOT_BASE_URL": llama_tiny.url}
        proc = tilepilot("desktop", "press OK", "--max-steps", "3", "--actions", "click,move,scroll,key",
                         "--out", str(tmp_path / "run"), "--json", env=env, input="", timeout=600)
    finally:
        app.stop()
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    summary = json.loads(proc.stdout)
    steps = json.loads((Path(summary["run"]) / "trajectory.json").read_text())["steps"]
    assert steps and all(s["usage"]["images"] >= 1 for s in steps)
    # The screenshot's count on llama.cpp, predicted before sending, is the server's.
    assert all(s["usage"]["prompt_tokens"] == s["usage"]["counted_prompt_tokens"] for s in steps), steps


def test_listen_to_a_40_s_recording(llama_tiny: Served, tmp_path: Path) -> None:
    from tests.gen.audio import AudioFactory

    talk = AudioFactory(tmp_path / "audio").talk(seconds=40.0)
    proc = tilepilot("listen", str(talk.path), "--json", "--out", str(tmp_path / "run"),
                     env={"TILEPILOT_BASE_URL": llama_tiny.url})
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert len(data["clips"]) >= 2 and data["clips"][-1]["end_s"] == pytest.approx(data["duration_s"], abs=1e-3)
    assert all(clip["prompt_tokens"] > 250 for clip in data["clips"])  # each clip's audio reached the model


def test_the_gguf_reads_text_as_the_checkpoint_on_vllm_does(llama_tiny: Served, vllm_server) -> None:
    """The same chat costs the same prompt tokens on both engines: the exported vocabulary and chat
    template are the checkpoint's. Greedy answers agree for the first tokens and then part: the
    random model's near-tied logits fall differently between bf16 on vLLM and f16 on llama.cpp."""
    import httpx

    prompts = ["Review the contract and list the parties.", "Wie spät ist es? 12:45, ça va — naïve café.",
               "def f(x):\n    return x ** 2  # square"]
    for prompt in prompts:
        answers = []
        for url in (vllm_server.base_url, llama_tiny.url):
            body = {"model": "tiny", "messages": [{"role": "user", "content": prompt}], "max_tokens": 16, "temperature": 0}
            data = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=120).json()
            answers.append((data["usage"]["prompt_tokens"], data["choices"][0]["message"]["content"]))
        assert answers[0][0] == answers[1][0], (prompt, answers)
        print(f"\n[llama.cpp] greedy, vLLM vs llama.cpp: {answers}")
