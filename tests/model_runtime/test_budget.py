"""Budget math against the reference implementations (transformers' processor, vLLM's counts).

The references are imported in a child process with the serving environment, because on the
CPU build their imports need model_runtime's start-up shim.
"""

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from tilepilot.model_runtime.budget import (
    _processor_resize,
    audio_soft_tokens,
    clip_lengths,
    image_grid,
    server_soft_tokens,
)
from tilepilot.model_runtime.profiles import IMAGE_BUDGETS, AudioSpec, VisionSpec
from tilepilot.model_runtime.server import serving_env

SPEC = VisionSpec()


def _sizes() -> list[tuple[int, int, int]]:
    rng = random.Random(7)
    fixed = [(612, 792), (1000, 60), (60, 1000), (4000, 3000), (1920, 1080), (1280, 800), (48, 48), (1, 1),
             (5120, 2880), (800, 600), (3, 900), (900, 3), (2550, 3300), (17, 4001)]
    sizes = fixed + [(rng.randint(20, 6000), rng.randint(20, 6000)) for _ in range(150)]
    return [(w, h, b) for (w, h) in sizes for b in IMAGE_BUDGETS]


@pytest.fixture(scope="module")
def reference():
    images = _sizes()
    rng = random.Random(3)
    audio = sorted({*range(0, 1300), *(rng.randint(1, 1_000_000) for _ in range(400)), 479_999, 480_000, 480_640, 720_000})
    grids = [image_grid(w, h, b) for (w, h, b) in images]
    grid_sizes = [(g.width, g.height, g.max_soft_tokens) for g in grids]
    payload = json.dumps({"images": images + grid_sizes, "audio": audio})
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("reference_counts.py"))],
        input=payload, capture_output=True, text=True, env=serving_env(), timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    ref = json.loads(proc.stdout)
    return images, grids, audio, ref


def test_processor_resize_matches_transformers(reference):
    images, _, _, ref = reference
    for (w, h, b), r in zip(images, ref["images"][: len(images)]):
        try:
            ours = _processor_resize(h, w, b, SPEC)
        except ValueError:
            continue  # both raise for degenerate sizes; transformers' result is then absent
        assert [ours[1], ours[0]] == r["resized"], (w, h, b)


def test_server_count_matches_vllm(reference):
    images, _, _, ref = reference
    for (w, h, b), r in zip(images, ref["images"][: len(images)]):
        assert server_soft_tokens(w, h, b) == r["vllm_soft_tokens"], (w, h, b)


def test_grid_is_a_fixed_point_and_counts_agree(reference):
    images, grids, _, ref = reference
    for g, r in zip(grids, ref["images"][len(images):]):
        # Sending the grid size makes the server's resize the identity ...
        assert r["resized"] == [g.width, g.height]
        # ... and vLLM's placeholder count equals the patches the processor produces.
        assert g.soft_tokens == r["vllm_soft_tokens"] == (g.width // 48) * (g.height // 48)
        assert g.soft_tokens <= g.max_soft_tokens
        assert g.width % 48 == 0 and g.height % 48 == 0


def test_audio_count_matches_vllm(reference):
    _, _, audio, ref = reference
    for n, k in zip(audio, ref["audio"]):
        assert audio_soft_tokens(n) == k, n


def test_audio_formula_from_the_issue():
    for n in range(1, 500_000, 37):
        expected = min(-(-((n - 1) // 160) // 4), 750)
        assert audio_soft_tokens(n) == expected, n


def test_known_examples():
    letter = image_grid(612, 792, 280)
    assert (letter.width, letter.height, letter.soft_tokens, letter.prompt_tokens) == (672, 912, 266, 268)
    # The processor upscales: a 1920x1056 screenshot at 1120 costs 1080 soft tokens, not 880.
    assert image_grid(1920, 1056, 1120).soft_tokens == 1080
    with pytest.raises(ValueError, match="budget"):
        image_grid(100, 100, 300)


@pytest.mark.parametrize("seconds", [0.5, 1, 3.005, 10, 29.99, 30, 45, 61.7, 3600])
def test_clip_lengths_cover_everything_exactly(seconds):
    spec = AudioSpec()
    n = round(seconds * spec.sample_rate)
    clips = clip_lengths(n, spec)
    assert sum(clips) >= n and sum(clips) - n < spec.samples_per_token
    assert all(c % spec.samples_per_token == 0 and 0 < c <= spec.max_clip_samples for c in clips)
    # a multiple of 640 counts exactly n/640 tokens: no off-by-one, nothing dropped
    assert all(audio_soft_tokens(c) == c // spec.samples_per_token for c in clips)
    assert len(clips) == -(-sum(clips) // spec.max_clip_samples)
