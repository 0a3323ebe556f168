"""Against the real CPU vLLM server (tiny gemma4_unified): every estimate equals the server's count."""

import json
from typing import Annotated

import numpy as np
import pytest
from PIL import Image
from pydantic import BaseModel, Field

from tilepilot.model_runtime.budget import clip_lengths, image_grid
from tilepilot.model_runtime.payloads import AudioPart, ImagePart, Message, TextPart
from tilepilot.model_runtime.profiles import IMAGE_BUDGETS
from tests.gen.audio import tone_samples
from tests.conftest import tilepilot

pytestmark = pytest.mark.integration


def _noise_image(w: int, h: int) -> Image.Image:
    rng = np.random.default_rng(w * 7 + h)
    return Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))


def _tone(seconds: float, rate: int = 16_000) -> np.ndarray:
    return tone_samples(seconds, rate, amplitude=0.3)[:, 0]


def _ask(client, parts, budget=280, max_tokens=4):
    res = client.chat([Message(role="user", parts=parts)], max_tokens=max_tokens, image_budget=budget)
    assert res.usage.prompt_tokens == res.estimated_prompt_tokens, (res.usage, res.estimated_prompt_tokens)
    return res


def test_text(chat_client):
    res = _ask(chat_client, [TextPart(text="Summarise the indemnification clause in one sentence.")])
    assert res.usage.completion_tokens == 4


@pytest.mark.parametrize("size", [(612, 792), (1000, 60), (60, 1000), (4000, 3000)])
@pytest.mark.parametrize("budget", IMAGE_BUDGETS)
def test_images_at_every_budget(chat_client, size, budget):
    res = _ask(chat_client, [ImagePart(image=_noise_image(*size)), TextPart(text="Describe.")], budget)
    grid = image_grid(*size, budget)
    assert grid.soft_tokens <= budget
    text_only = chat_client.count_prompt_tokens([Message(role="user", parts=[TextPart(text="Describe.")])])
    assert res.usage.prompt_tokens == text_only + grid.prompt_tokens


@pytest.mark.parametrize("seconds", [0.5, 1, 3.005, 10, 29.99, 30])
def test_audio_clip(chat_client, seconds):
    _ask(chat_client, [AudioPart(samples=_tone(seconds)), TextPart(text="Transcribe.")])


def test_45_s_audio_is_split_and_nothing_is_cut(chat_client):
    samples = _tone(45)
    lengths = clip_lengths(len(samples), chat_client.profile.audio)
    assert len(lengths) == 2 and sum(lengths) >= len(samples)
    padded = np.pad(samples, (0, sum(lengths) - len(samples)))
    parts, start = [], 0
    for n in lengths:
        parts.append(AudioPart(samples=padded[start:start + n]))
        start += n
    res = _ask(chat_client, [*parts, TextPart(text="Transcribe.")])
    # every 40 ms frame of the 45 s is in the prompt: 1125 soft tokens + 2 markers per clip
    assert res.estimated_prompt_tokens - chat_client.count_prompt_tokens(
        [Message(role="user", parts=[TextPart(text="Transcribe.")])]) == sum(lengths) // 640 + 2 * 2


def test_image_and_audio_together(chat_client):
    _ask(chat_client, [ImagePart(image=_noise_image(800, 600)), AudioPart(samples=_tone(2.0)),
                       TextPart(text="What do you see and hear?")], budget=560)


class Verdict(BaseModel):
    label: str = Field(max_length=40)
    score: int = Field(ge=0, le=100)  # unbounded integers let a random model write digits forever
    tags: list[Annotated[str, Field(max_length=20)]] = Field(max_length=3)


def test_json_schema_output_parses(chat_client):
    res = chat_client.chat([Message.text("user", "Classify this page.")], schema=Verdict, max_tokens=200)
    assert isinstance(res.parsed, Verdict)
    assert Verdict.model_validate_json(res.text) == res.parsed


def test_parallel_requests(chat_client):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: _ask(chat_client, [TextPart(text=f"request {i}")]), range(4)))
    assert len({r.usage.prompt_tokens for r in results}) >= 1


def test_ask_cli_with_pdf_page_and_audio(tmp_path, server_env):
    import pymupdf
    import soundfile as sf

    pdf = tmp_path / "doc.pdf"
    doc = pymupdf.open()
    page = doc.new_page(width=612, height=792)
    page.insert_text((72, 72), "Governing law: the laws of Delaware.")
    doc.save(pdf)
    wav = tmp_path / "clip.wav"
    sf.write(wav, _tone(3.005, 44_100), 44_100)
    proc = tilepilot("ask", "What does the page say?", "--pdf", str(pdf), "--page", "1",
                     "--audio", str(wav), "--json", env=server_env, check=True)
    out = json.loads(proc.stdout)
    assert set(out) == {"answer", "usage", "estimated_prompt_tokens", "exact"} and out["exact"] is True
    assert out["usage"]["prompt_tokens"] == out["estimated_prompt_tokens"]
    bad = tilepilot("ask", "x", "--pdf", str(pdf), "--page", "3", env=server_env)
    assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1 and "page" in bad.stderr


def test_ask_cli_unreachable_server_is_one_line():
    proc = tilepilot("ask", "hi", "--base-url", "http://127.0.0.1:9")
    assert proc.returncode == 4
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "127.0.0.1:9" in lines[0] and "tilepilot serve start" in lines[0]


HELD_OUT_PROSE = """\
This Agreement is entered into by and between the Supplier and the Customer as of the Effective Date.
The Supplier shall deliver the goods described in Schedule A no later than thirty days after receiving a
purchase order, and shall notify the Customer promptly of any expected delay. Title and risk of loss pass
to the Customer upon delivery to the designated warehouse. The Customer shall pay each undisputed invoice
within forty-five days of receipt; late payments bear interest at one percent per month. Either party may
terminate this Agreement for convenience by giving ninety days' written notice to the other party. Each
party shall keep confidential all non-public information disclosed by the other party and shall use it
only for the purposes of this Agreement. Neither party shall be liable for indirect or consequential
damages, except in cases of gross negligence or wilful misconduct. This Agreement shall be governed by
the laws of the State of New York, without regard to its conflict of laws principles. Any notice under
this Agreement must be in writing and delivered by hand, by courier, or by registered mail.
"""


def test_tokenizer_is_realistic(chat_client):
    """The tiny tokenizer was not trained on this text; a real model gets ~4 characters per token."""
    empty = chat_client.count_prompt_tokens([Message.text("user", "")])
    n = chat_client.count_prompt_tokens([Message.text("user", HELD_OUT_PROSE)]) - empty
    chars_per_token = len(HELD_OUT_PROSE) / n
    print(f"\ntiny tokenizer: {chars_per_token:.2f} characters per token on held-out English")
    assert 3.0 <= chars_per_token <= 4.5
