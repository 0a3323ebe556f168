"""Model profiles: everything the token budget, the payload builder and the launcher need.

Two profiles ship: ``gemma-4-12b`` (the real model, for GPU machines or a remote server) and
``tiny`` (the locally built random-weight checkpoint, for tests and the offline demo). A profile
can also be derived from a checkpoint folder (``--model /path/to/checkpoint``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tilepilot.model_runtime.errors import NoBackendError

# How a model writes screen coordinates: "pixels" of the screenshot it was shown, or
# "normalized" 0..1000 on both axes (several grounding models).
CoordinateConvention = Literal["pixels", "normalized"]

ImageBudget = Literal[70, 140, 280, 560, 1120]  # soft tokens per image the vision tower is trained for
IMAGE_BUDGETS: tuple[ImageBudget, ...] = (70, 140, 280, 560, 1120)


class VisionSpec(BaseModel):
    model_config = ConfigDict(frozen=True)
    patch_size: int = 16
    pooling_kernel_size: int = 3
    default_max_soft_tokens: int = 280
    budgets: tuple[int, ...] = IMAGE_BUDGETS

    @property
    def cell(self) -> int:
        """Side of one soft token in pixels (16 px patches merged 3x3 = 48 px)."""
        return self.patch_size * self.pooling_kernel_size


class AudioSpec(BaseModel):
    model_config = ConfigDict(frozen=True)
    sample_rate: int = 16_000
    samples_per_token: int = 640  # 40 ms
    max_tokens: int = 750  # 30 s per clip; vLLM silently drops the rest

    @property
    def max_clip_samples(self) -> int:
        return self.max_tokens * self.samples_per_token


class ModelProfile(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    model: str  # HF id or local checkpoint folder given to `vllm serve`
    served_name: str
    max_model_len: int
    output_reserve: int = 1024  # tokens kept free for the answer in every request
    vision: VisionSpec = VisionSpec()
    audio: AudioSpec = AudioSpec()
    limit_mm_per_prompt: dict[str, int] = Field(default_factory=lambda: {"image": 8, "audio": 2})
    structured_outputs_backend: str = "xgrammar"
    # A random-weight model happily emits whitespace forever between JSON tokens; forbidding
    # free whitespace makes constrained output terminate. Harmless for the real model.
    disable_any_whitespace: bool = True
    prefix_caching: bool = True
    tool_call_parser: str | None = "gemma4"
    # vllm-project/vllm#39130: the gemma4 reasoning parser bypassed the grammar on v0.19. Off
    # unless a profile opts in; action and finding steps never ask for thinking.
    reasoning_parser: str | None = None
    requires_gpu: bool = False
    is_random_weights: bool = False
    kv_cache_bytes: int | None = None  # CPU: explicit, small; GPU: let vLLM size it
    max_num_seqs: int = 8
    max_num_batched_tokens: int | None = None  # None: vLLM's own (a memory plan sets it, its arithmetic needs it)
    dtype: str = "auto"
    # Bounds of the review agent's answer schema. A real model must never be capped below what a
    # careful reviewer reports (the eval's reference answerer measures it); the tiny random-weight
    # model keeps tight bounds so that its noise terminates quickly.
    max_findings_per_chunk: int = 40
    max_quote_chars: int = 300
    max_rationale_chars: int = 600
    coordinates: CoordinateConvention = "pixels"  # tilepilot.agents.desktop.frame maps both onto the screen
    image_placeholder: str = "<|image|>"
    audio_placeholder: str = "<|audio|>"

    @property
    def input_budget(self) -> int:
        """Prompt tokens one request may use."""
        return self.max_model_len - self.output_reserve


GEMMA_4_12B = ModelProfile(
    name="gemma-4-12b",
    model="google/gemma-4-12B-it",
    served_name="gemma-4-12b",
    max_model_len=32_768,
    output_reserve=2048,
    requires_gpu=True,
    max_num_seqs=32,
    dtype="bfloat16",
)


def tiny_profile(checkpoint: Path | None = None) -> ModelProfile:
    from tilepilot.model_runtime.tiny import MAX_MODEL_LEN, default_checkpoint_dir

    return ModelProfile(
        name="tiny",
        model=str(checkpoint or default_checkpoint_dir()),
        served_name="tiny",
        max_model_len=MAX_MODEL_LEN,
        output_reserve=1024,
        is_random_weights=True,
        kv_cache_bytes=256 * 1024 * 1024,
        dtype="bfloat16",
        max_findings_per_chunk=4,
        max_quote_chars=100,
        max_rationale_chars=100,
    )


PROFILE_NAMES = ("tiny", "gemma-4-12b")


def get_profile(name_or_path: str) -> ModelProfile:
    """Resolve ``--model``: a profile name, or a checkpoint folder served under its folder name."""
    if name_or_path == "tiny":
        return tiny_profile()
    if name_or_path in ("gemma-4-12b", GEMMA_4_12B.model):
        return GEMMA_4_12B
    path = Path(name_or_path).expanduser()
    if path.is_dir() and (path / "config.json").is_file():
        tiny_like = (path / "tilepilot-manifest.json").is_file()
        base = tiny_profile(path) if tiny_like else GEMMA_4_12B
        return base.model_copy(update={"name": path.name, "model": str(path.resolve()), "served_name": path.name})
    raise NoBackendError(
        f"unknown model {name_or_path!r}: use a profile ({', '.join(PROFILE_NAMES)}) or a checkpoint folder"
    )
