"""Exact prompt-token counts, computed before a request is sent.

The server is the truth; these functions mirror what vLLM 0.32's ``gemma4_unified`` processing
does, and the integration tests compare every estimate with ``usage.prompt_tokens``.

Images. The Gemma 4 Unified processor resizes every image to the largest size, at the same
aspect ratio, whose sides are multiples of 48 px (16 px patches merged 3x3) and that holds at
most ``max_soft_tokens * 9`` patches. It *upscales* small images too (a 1920x1056 screenshot at
1120 becomes 2160x1152 = 1080 soft tokens, not 880). :func:`image_grid` returns a size that is a
fixed point of that resize, so rendering or resizing to it on the client makes the server's
resize a no-op, and the soft-token count is simply ``(W/48) * (H/48)``. The prompt then holds
``N + 2`` tokens per image (begin and end markers).

Audio. The unified model turns every 640 samples (40 ms at 16 kHz) into one soft token, but
vLLM sizes the placeholder with the conformer arithmetic inherited from Gemma 4
(:func:`audio_soft_tokens`), which is one token short of ``ceil(n / 640)`` when ``n % 640`` is
1..160, and it silently drops everything past 750 tokens (30 s). Clips that are a multiple of
640 samples and at most 30 s long avoid both traps; :func:`clip_lengths` plans such clips.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, ConfigDict

from tilepilot.model_runtime.profiles import AudioSpec, VisionSpec

MEDIA_MARKERS = 2  # begin + end marker around every image or audio clip


class ImageGrid(BaseModel):
    """Pixel size to send an image at, and what it costs."""

    model_config = ConfigDict(frozen=True)
    width: int
    height: int
    max_soft_tokens: int
    soft_tokens: int

    @property
    def prompt_tokens(self) -> int:
        return self.soft_tokens + MEDIA_MARKERS


def _processor_resize(height: int, width: int, max_soft_tokens: int, spec: VisionSpec) -> tuple[int, int]:
    """transformers' ``get_aspect_ratio_preserving_size`` for gemma4_unified, as (height, width)."""
    max_patches = max_soft_tokens * spec.pooling_kernel_size**2
    target_px = max_patches * spec.patch_size**2
    factor = math.sqrt(target_px / (height * width))
    cell = spec.cell
    h = int(math.floor(factor * height / cell)) * cell
    w = int(math.floor(factor * width / cell)) * cell
    if h == 0 and w == 0:
        raise ValueError(f"image {width}x{height} cannot be resized to a {cell} px grid")
    max_side = (max_patches // spec.pooling_kernel_size**2) * cell
    if h == 0:
        h, w = cell, min(int(math.floor(width / height)) * cell, max_side)
    elif w == 0:
        w, h = cell, min(int(math.floor(height / width)) * cell, max_side)
    return h, w


def server_soft_tokens(width: int, height: int, max_soft_tokens: int, spec: VisionSpec = VisionSpec()) -> int:
    """vLLM's own placeholder count for an image of this size (``_compute_num_soft_tokens``)."""
    cell, p = spec.cell, spec.patch_size
    max_patches = max_soft_tokens * spec.pooling_kernel_size**2
    scale = math.sqrt(max_patches / ((height / p) * (width / p)))
    h = max(cell, int(math.floor(height * scale / cell)) * cell)
    w = max(cell, int(math.floor(width * scale / cell)) * cell)
    return min((h // p) * (w // p) // spec.pooling_kernel_size**2, max_soft_tokens)


def image_grid(width: int, height: int, max_soft_tokens: int = 280, spec: VisionSpec = VisionSpec()) -> ImageGrid:
    """The size to render/resize an image of ``width`` x ``height`` to, for one image budget."""
    if max_soft_tokens not in spec.budgets:
        raise ValueError(f"image budget must be one of {spec.budgets}, got {max_soft_tokens}")
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    h, w = _processor_resize(height, width, max_soft_tokens, spec)
    # The resize of a grid size can land on a (slightly larger) grid size; iterate to the fixed
    # point so that the server's resize of what we send is the identity. Sizes only grow and the
    # budget caps them, so this ends: usually after one step, for extreme strips after hundreds.
    for _ in range(max_soft_tokens + 2):
        h2, w2 = _processor_resize(h, w, max_soft_tokens, spec)
        if (h2, w2) == (h, w):
            break
        h, w = h2, w2
    return ImageGrid(
        width=w, height=h, max_soft_tokens=max_soft_tokens, soft_tokens=server_soft_tokens(w, h, max_soft_tokens, spec)
    )


def native_budget(width: int, height: int, spec: VisionSpec = VisionSpec()) -> int:
    """The smallest image budget whose grid does not shrink a ``width`` x ``height`` image.

    The screen's own pixels then all reach the model at the fewest tokens (1280x800: 560, not
    1120's upscale to 2016x1248). A screen that every budget shrinks gets the largest budget.
    """
    for budget in sorted(spec.budgets):
        grid = image_grid(width, height, budget, spec)
        if grid.width >= width and grid.height >= height:
            return budget
    return max(spec.budgets)


def image_prompt_tokens(width: int, height: int, max_soft_tokens: int = 280, spec: VisionSpec = VisionSpec()) -> int:
    """Prompt tokens for an image sent at exactly ``width`` x ``height``."""
    return server_soft_tokens(width, height, max_soft_tokens, spec) + MEDIA_MARKERS


def audio_soft_tokens(num_samples: int, spec: AudioSpec = AudioSpec()) -> int:
    """vLLM's audio placeholder count (mel framing + two stride-2 convolutions), capped."""
    frame = int(round(spec.sample_rate * 0.020))
    hop = int(round(spec.sample_rate * 0.010))
    frames = (num_samples + frame // 2 - (frame + 1)) // hop + 1
    if frames <= 0:
        return 0
    for _ in range(2):
        frames = (frames - 1) // 2 + 1
    return min(frames, spec.max_tokens)


def audio_prompt_tokens(num_samples: int, spec: AudioSpec = AudioSpec()) -> int:
    return audio_soft_tokens(num_samples, spec) + MEDIA_MARKERS


def clip_lengths(num_samples: int, spec: AudioSpec = AudioSpec()) -> list[int]:
    """Split ``num_samples`` into back-to-back clip lengths that each count exactly.

    Every clip is at most 30 s and a multiple of 640 samples, except that the last is padded up
    to one (the caller pads with silence), so no sample is dropped and no count is off by one.
    """
    if num_samples <= 0:
        return []
    step = spec.samples_per_token
    padded = -(-num_samples // step) * step
    n_clips = -(-padded // spec.max_clip_samples)
    tokens_total = padded // step
    base, extra = divmod(tokens_total, n_clips)
    return [(base + (1 if i < extra else 0)) * step for i in range(n_clips)]


# -- llama.cpp (llama-server's mtmd) ---------------------------------------------------------------
#
# mtmd sizes a gemma4uv image per server, not per request: ``--image-min-tokens`` and
# ``--image-max-tokens`` (70 and 1120 for Gemma 4 Unified unless set). Its resize
# (``calc_size_preserved_ratio`` in tools/mtmd/mtmd-image.cpp, 48 px alignment) rounds each side to
# 48 px, shrinks what exceeds the maximum, and *grows what falls below the minimum* (which vLLM
# does not do): a US-letter page at budget 70 (336x432, 63 tokens) becomes 384x480 = 80 tokens.
# Audio is one token per started 640 samples, with no 30 s cap (vLLM: one fewer when n % 640 is
# 1..160, and nothing past 750 tokens). The arithmetic below is mtmd's, in single precision as there.

LLAMA_CPP_IMAGE_TOKENS = (70, 1120)


def llama_cpp_image_soft_tokens(width: int, height: int, min_tokens: int = LLAMA_CPP_IMAGE_TOKENS[0],
                                max_tokens: int = LLAMA_CPP_IMAGE_TOKENS[1], spec: VisionSpec = VisionSpec()) -> int:
    """llama-server's soft tokens for an image sent at ``width`` x ``height``."""
    f32 = np.float32
    cell = spec.cell
    area = cell * cell
    min_px, max_px = min_tokens * area, max_tokens * area
    w = max(cell, int(np.floor(f32(width) / f32(cell) + f32(0.5))) * cell)  # std::round: halves away from 0
    h = max(cell, int(np.floor(f32(height) / f32(cell) + f32(0.5))) * cell)
    if w * h > max_px:
        beta = np.sqrt(f32(height) * f32(width) / f32(max_px), dtype=f32)
        h = max(cell, int(np.floor(f32(height) / beta / f32(cell))) * cell)
        w = max(cell, int(np.floor(f32(width) / beta / f32(cell))) * cell)
    elif w * h < min_px:
        beta = np.sqrt(f32(min_px) / (f32(height) * f32(width)), dtype=f32)
        h = int(np.ceil(f32(height) * beta / f32(cell))) * cell
        w = int(np.ceil(f32(width) * beta / f32(cell))) * cell
    return (w // cell) * (h // cell)


def llama_cpp_audio_soft_tokens(num_samples: int, spec: AudioSpec = AudioSpec()) -> int:
    return -(-num_samples // spec.samples_per_token)
