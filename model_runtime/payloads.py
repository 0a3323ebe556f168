"""Typed prompt parts, and their encoding into one OpenAI-style chat request body.

Images go as data URLs, resized once to the exact grid of the request's image budget (so the
server's own resize is a no-op). Audio goes as 16 kHz mono 16-bit WAV ``input_audio`` parts;
resampling happens on the client (``tilepilot.tools.audio``), never on the server.
"""

from __future__ import annotations

import base64
import io
import threading
import weakref
from typing import Literal, Union

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from tilepilot.model_runtime.budget import ImageGrid, audio_prompt_tokens, image_grid
from tilepilot.model_runtime.profiles import ModelProfile

ImageFormat = Literal["png", "jpeg"]


class TextPart(BaseModel):
    model_config = ConfigDict(frozen=True)
    kind: Literal["text"] = "text"
    text: str


class ImagePart(BaseModel):
    """An image at any size; it is resized to the request's budget grid when encoded."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)
    kind: Literal["image"] = "image"
    image: Image.Image
    format: ImageFormat = "jpeg"


class AudioPart(BaseModel):
    """Mono float32 samples at the profile's sample rate (16 kHz), at most one clip (30 s)."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)
    kind: Literal["audio"] = "audio"
    samples: np.ndarray


Part = Union[TextPart, ImagePart, AudioPart]


class Message(BaseModel):
    model_config = ConfigDict(frozen=True)
    role: Literal["system", "user", "assistant"]
    parts: list[Part] = Field(default_factory=list)

    @classmethod
    def text(cls, role: Literal["system", "user", "assistant"], text: str) -> "Message":
        return cls(role=role, parts=[TextPart(text=text)])


def fit_image(image: Image.Image, max_soft_tokens: int, profile: ModelProfile) -> tuple[Image.Image, ImageGrid]:
    """Resize once (if needed) to the grid the budget gives; returns the image and its grid."""
    grid = image_grid(image.width, image.height, max_soft_tokens, profile.vision)
    if image.mode != "RGB":
        image = image.convert("RGB")
    if image.size != (grid.width, grid.height):
        image = image.resize((grid.width, grid.height), Image.Resampling.BICUBIC)
    return image, grid


# Encoded bytes per image object: an agent that re-sends its last screenshots every step (or also
# saves them) encodes each one once. PIL images are unhashable, so entries are keyed by id() and
# removed by a finalizer when the image is collected, before its id can be reused.
_encoded: dict[int, dict[tuple[str, int], bytes]] = {}
_encoded_lock = threading.Lock()


def image_bytes(image: Image.Image, fmt: ImageFormat = "jpeg", quality: int = 90) -> bytes:
    """The encoded file bytes of ``image`` (cached per image object; treat images as immutable)."""
    key = (fmt, quality)
    with _encoded_lock:
        cached = _encoded.get(id(image), {}).get(key)
    if cached is not None:
        return cached
    buf = io.BytesIO()
    if fmt == "png":
        image.save(buf, format="PNG", compress_level=1)  # level 1: ~5x faster, ~15% larger
    else:
        image.save(buf, format="JPEG", quality=quality)
    data = buf.getvalue()
    with _encoded_lock:
        if id(image) not in _encoded:
            _encoded[id(image)] = {}
            weakref.finalize(image, _forget, id(image))
        _encoded[id(image)][key] = data
    return data


def _forget(image_id: int) -> None:
    with _encoded_lock:
        _encoded.pop(image_id, None)


def encode_image(image: Image.Image, fmt: ImageFormat = "jpeg", quality: int = 90) -> str:
    return f"data:image/{fmt};base64," + base64.b64encode(image_bytes(image, fmt, quality)).decode("ascii")


def encode_wav(samples: np.ndarray, sample_rate: int) -> str:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.asarray(samples, dtype=np.float32), sample_rate, format="WAV", subtype="PCM_16")
    return base64.b64encode(buf.getvalue()).decode("ascii")


class EncodedRequest(BaseModel):
    """The wire form of the messages, plus the exact media token costs worked out on the way."""

    messages: list[dict]
    placeholder_messages: list[dict]  # media replaced by their placeholder text, for /tokenize
    media_tokens: int  # prompt tokens of all media parts (markers included)
    media_count: int
    image_grids: list[ImageGrid] = Field(default_factory=list)
    audio_samples: list[int] = Field(default_factory=list)  # each clip's length: llama.cpp counts it its own way


def encode_messages(messages: list[Message], profile: ModelProfile, max_soft_tokens: int) -> EncodedRequest:
    wire: list[dict] = []
    placeholder: list[dict] = []
    media_tokens = 0
    grids: list[ImageGrid] = []
    audio_count = 0
    audio_samples: list[int] = []
    for msg in messages:
        parts, ph_parts = [], []
        for part in msg.parts:
            if isinstance(part, TextPart):
                parts.append({"type": "text", "text": part.text})
                ph_parts.append({"type": "text", "text": part.text})
            elif isinstance(part, ImagePart):
                img, grid = fit_image(part.image, max_soft_tokens, profile)
                grids.append(grid)
                media_tokens += grid.prompt_tokens
                parts.append({"type": "image_url", "image_url": {"url": encode_image(img, part.format)}})
                ph_parts.append({"type": "text", "text": profile.image_placeholder})
            else:
                n = len(part.samples)
                if n > profile.audio.max_clip_samples:
                    raise ValueError(
                        f"audio part of {n / profile.audio.sample_rate:.2f} s exceeds the "
                        f"{profile.audio.max_clip_samples / profile.audio.sample_rate:.0f} s clip limit; split it first"
                    )
                audio_count += 1
                audio_samples.append(n)
                media_tokens += audio_prompt_tokens(n, profile.audio)
                data = encode_wav(part.samples, profile.audio.sample_rate)
                parts.append({"type": "input_audio", "input_audio": {"data": data, "format": "wav"}})
                ph_parts.append({"type": "text", "text": profile.audio_placeholder})
        wire.append({"role": msg.role, "content": parts})
        placeholder.append({"role": msg.role, "content": ph_parts})
    return EncodedRequest(
        messages=wire,
        placeholder_messages=placeholder,
        media_tokens=media_tokens,
        media_count=len(grids) + audio_count,
        audio_samples=audio_samples,
        image_grids=grids,
    )
