"""How much memory a server needs for a model, a context and a number of parallel requests.

The context-window trap on a laptop is the KV cache: it grows with context x parallel requests, and
for Gemma-style models most layers are sliding-window layers whose cache an engine may or may not
trim to the window. The plan is arithmetic over the checkpoint's own attention geometry and the
engine's known behaviour, never a guess from the parameter count:

    KV bytes per token, one layer = 2 (K and V) x KV heads x head_dim x bytes per element

Both engines store V even where ``attention_k_eq_v`` makes it equal to K (llama.cpp's gemma4 graph
copies K into V; vLLM allocates V), so k_eq_v saves weights, not cache. A layer that shares another
layer's KV (``num_kv_shared_layers``) has no cache of its own.

The plan answers with bytes (``MemoryPlan``); the engine flags and the agents' settings follow from it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from tilepilot.model_runtime.errors import PlanError
from tilepilot.model_runtime.llama_server import MICRO_BATCH
from tilepilot.model_runtime.memory_budget import GiB, MiB

EngineName = Literal["vllm", "llama.cpp"]
Quant = Literal["bf16", "f16", "q8_0", "q4_k_m"]


class LayerKv(BaseModel):
    sliding: bool
    kv_heads: int
    head_dim: int
    has_cache: bool = True  # False for a layer that reuses an earlier layer's KV

    def bytes_per_token(self, element_bytes: float) -> float:
        return 2 * self.kv_heads * self.head_dim * element_bytes if self.has_cache else 0.0


class KvGeometry(BaseModel):
    layers: list[LayerKv]
    sliding_window: int
    max_positions: int
    vocab_size: int
    hidden_size: int
    intermediate_size: int = 0  # the FFN's width; with attention_width, sizes llama.cpp's compute buffer
    attention_width: int = 0  # query heads x the widest head_dim

    @classmethod
    def from_config(cls, config: dict) -> "KvGeometry":
        """From a Hugging Face ``config.json`` (a multimodal one keeps the text model in ``text_config``)."""
        text = config.get("text_config") or config
        try:
            n = int(text["num_hidden_layers"])
            types = text.get("layer_types") or ["full_attention"] * n
            per_layer = {int(k): v for k, v in (text.get("per_layer_config") or {}).items()}
            shared = int(text.get("num_kv_shared_layers") or 0)
            layers = []
            for i, kind in enumerate(types):
                override = per_layer.get(i, {})
                layers.append(LayerKv(
                    sliding=kind == "sliding_attention",
                    kv_heads=int(override.get("num_key_value_heads", text["num_key_value_heads"])),
                    head_dim=int(override.get("head_dim", text["head_dim"])),
                    has_cache=i < n - shared,
                ))
            return cls(layers=layers, sliding_window=int(text.get("sliding_window") or 0),
                       max_positions=int(text["max_position_embeddings"]), vocab_size=int(text["vocab_size"]),
                       hidden_size=int(text["hidden_size"]), intermediate_size=int(text.get("intermediate_size") or 0),
                       attention_width=int(text.get("num_attention_heads") or 0) * max(x.head_dim for x in layers))
        except (KeyError, TypeError, ValueError) as err:
            raise PlanError(f"cannot read the attention geometry from the model's config ({err})") from None


# Gemma 4 12B Unified's published geometry: 48 layers, every 6th full attention (1 KV head x 512, k_eq_v),
# the others sliding-window (8 KV heads x 256, window 1024); 131072 positions; hidden 3840, vocab 262144.
GEMMA_4_12B_GEOMETRY = KvGeometry(
    layers=[LayerKv(sliding=(i + 1) % 6 != 0, kv_heads=8 if (i + 1) % 6 else 1, head_dim=256 if (i + 1) % 6 else 512)
            for i in range(48)],
    sliding_window=1024, max_positions=131072, vocab_size=262144, hidden_size=3840,
    # Not in the published geometry: Gemma 3 12B's FFN width and 16 query heads, assumed the same.
    intermediate_size=15360, attention_width=16 * 512,
)
# Nominal: the published size class. A local checkpoint or GGUF is measured from its files instead.
GEMMA_4_12B_PARAMETERS = 12.0e9


class EngineModel(BaseModel):
    """What an engine does with memory, as far as the plan needs it (read from each engine's source)."""

    name: EngineName
    block_tokens: int  # cache sizes are rounded up to this
    base_overhead_bytes: int  # the server process(es) with a tiny model: runtime, buffers, tokenizer
    overhead_source: str

    def sliding_cells(self, context: int, window: int, parallel: int, block: int | None = None) -> int:
        """Cells a trimmed sliding-window layer keeps for ``parallel`` sequences of ``context`` tokens."""
        if self.name == "llama.cpp":
            # llama-kv-cache-iswa.cpp: min(size, n_swa * n_seq + n_ubatch), padded to 256 cells; shared by the
            # slots (unified KV).
            return _pad(min(context * parallel, window * parallel + LLAMA_UBATCH), 256)
        # vLLM's SlidingWindowSpec.max_admission_blocks_per_request: the last window - 1 tokens plus the
        # tokens in flight (one batch of max_num_batched_tokens), plus one block: the window need not start
        # on a block boundary.
        block = block or self.block_tokens
        held = min(window - 1 + VLLM_MAX_BATCHED_TOKENS, context)
        return parallel * (math.ceil(held / block) + 1) * block

    def full_cells(self, context: int, parallel: int, block: int | None = None) -> int:
        return parallel * _pad(context, block or self.block_tokens)


# tilepilot runs llama-server with n_ubatch 2048, so that the largest image or clip fits one micro-batch.
LLAMA_UBATCH = MICRO_BATCH
# vLLM raises max_num_batched_tokens from 2048 to 2496 for gemma4_unified (room for a video input in one
# prefix-LM batch), as its log says; serve start passes it explicitly so that the plan's arithmetic holds.
VLLM_MAX_BATCHED_TOKENS = 2496

ENGINES: dict[EngineName, EngineModel] = {
    "llama.cpp": EngineModel(
        name="llama.cpp", block_tokens=256, base_overhead_bytes=128 * MiB,
        overhead_source="measured here: llama-server's VmHWM on the twin with its projector, after an image and a "
                        "full-context request, less its GGUFs, KV cache and compute buffer (127 and 128 MiB at 4096 "
                        "and 8192 tokens)",
    ),
    "vllm": EngineModel(
        name="vllm", block_tokens=128, base_overhead_bytes=int(2.6 * GiB),
        overhead_source="measured here: the vLLM CPU server's three processes (API, engine core, worker) on the "
                        "tiny model, VmHWM summed, less its KV pool",
    ),
}

# Weight bytes per parameter by quantization (llama.cpp's averages: Q4_K_M keeps some tensors at Q6_K).
BYTES_PER_PARAMETER: dict[str, float] = {"bf16": 2.0, "f16": 2.0, "q8_0": 8.5 / 8, "q4_k_m": 4.85 / 8}
KV_ELEMENT_BYTES: dict[str, float] = {"f16": 2.0, "q8_0": 8.5 / 8}


class MemoryPlan(BaseModel):
    engine: EngineName
    model: str
    memory_bytes: int  # what the server may use: the limit less headroom for the OS and the agent
    memory_source: str
    weights_bytes: int
    kv_bytes_per_token: float  # one sequence, over the layers whose cache grows with the context
    kv_fixed_bytes: int  # one sequence, context-independent (trimmed sliding layers)
    overhead_bytes: int  # the runtime, compute buffers included
    compute_bytes: int  # of which llama.cpp's compute buffer (it grows with the context)
    overhead_source: str
    kv_type: str
    max_context: int
    parallel: int
    total_bytes: int
    engine_flags: list[str]
    agent_settings: dict[str, int]
    untrimmed_total_bytes: int  # the same load on an engine that charges the full context to every layer


def kv_bytes(geometry: KvGeometry, engine: EngineModel, context: int, parallel: int, element_bytes: float) -> tuple[int, int]:
    """(bytes that grow with the context, bytes that do not) of the whole KV cache for ``parallel`` sequences.

    vLLM gives every layer's block the same page size (its hybrid allocator shares one pool), so a layer
    with fewer bytes per token gets proportionally more tokens per block, and it keeps one null block.
    """
    growing = fixed = 0.0
    window = geometry.sliding_window
    widest = max(layer.bytes_per_token(element_bytes) for layer in geometry.layers)
    for layer in geometry.layers:
        b = layer.bytes_per_token(element_bytes)
        block = int(engine.block_tokens * widest // b) if engine.name == "vllm" and b else None
        if not (layer.sliding and window):
            growing += b * engine.full_cells(context, parallel, block)
            continue
        cells = engine.sliding_cells(context, window, parallel, block)
        # Past the window (plus what is in flight) the trimmed cache stops growing with the context.
        if cells == engine.sliding_cells(context + window + 2 * VLLM_MAX_BATCHED_TOKENS, window, parallel, block):
            fixed += b * cells
        else:
            growing += b * cells
    if engine.name == "vllm":
        fixed += engine.block_tokens * widest * _vllm_group_size(geometry)  # the null block
    return int(growing), int(fixed)


def llama_compute_bytes(geometry: KvGeometry, context: int, parallel: int) -> int:
    """llama.cpp's compute buffer, reserved at start for one micro-batch of ``LLAMA_UBATCH`` tokens.

    Activations of the widest steps, f32 per micro-batch token: the FFN's gate, up and product (3 x its
    width), attention's queries and output (2 x the query width) and the residual (the hidden size). Then
    the f16 attention masks, one column per cache cell: one over the full-attention cache, one over the
    sliding one. Within 5% of llama.cpp's own estimator (``llama-fit-params --fit-print``) on the twin and
    on a shape-only GGUF of the 12B's geometry (tests/model_runtime/test_memory_plan_llama.py).
    """
    if not geometry.intermediate_size or not geometry.attention_width:
        raise PlanError("the model's config gives no intermediate_size or num_attention_heads: "
                        "llama.cpp's compute buffer cannot be sized")
    width = 3 * geometry.intermediate_size + 2 * geometry.attention_width + geometry.hidden_size
    llama = ENGINES["llama.cpp"]
    cells = 0
    if any(not layer.sliding for layer in geometry.layers) or not geometry.sliding_window:
        cells += llama.full_cells(context, parallel)
    if geometry.sliding_window and any(layer.sliding for layer in geometry.layers):
        cells += llama.sliding_cells(context, geometry.sliding_window, parallel)
    return 4 * width * LLAMA_UBATCH + 2 * LLAMA_UBATCH * cells


def _vllm_group_size(geometry: KvGeometry) -> int:
    """Layers per KV cache group: vLLM groups layers of each attention type in equal-sized groups."""
    kinds = [sum(1 for x in geometry.layers if x.sliding and x.has_cache),
             sum(1 for x in geometry.layers if not x.sliding and x.has_cache)]
    return math.gcd(*kinds) if all(kinds) else max(kinds)


def kv_per_sequence(geometry: KvGeometry, engine: EngineModel, context: int, element_bytes: float) -> tuple[float, int]:
    """(bytes per token of context, fixed bytes) for one sequence: the plan's two reported figures."""
    growing, fixed = kv_bytes(geometry, engine, context, 1, element_bytes)
    per_token = sum(layer.bytes_per_token(element_bytes) for layer in geometry.layers) if fixed == 0 else \
        sum(layer.bytes_per_token(element_bytes) for layer in geometry.layers if not layer.sliding)
    return per_token, fixed


def untrimmed_kv_bytes(geometry: KvGeometry, context: int, element_bytes: float) -> int:
    """Every layer charged the full context: Ollama's rule for these models (ollama/ollama#16617)."""
    return int(sum(layer.bytes_per_token(element_bytes) for layer in geometry.layers) * context)


def _pad(tokens: int, pad: int) -> int:
    return int(math.ceil(tokens / pad) * pad) if pad > 1 else tokens


def weights_bytes_of(model_path: Path | None, parameters: float | None, quant: str) -> int:
    """The weights' size: the GGUF or safetensors files where they are local, else parameters x quant."""
    if model_path is not None:
        if model_path.is_file():
            return model_path.stat().st_size
        files = [*model_path.glob("*.safetensors"), *model_path.glob("*.gguf")]
        if files:
            size = sum(f.stat().st_size for f in files)
            stored = "bf16"  # checkpoints are written in bf16; a requested quant rescales them
            return int(size * BYTES_PER_PARAMETER[quant] / BYTES_PER_PARAMETER[stored]) if quant != stored else size
    if parameters is None:
        raise PlanError("the model's weights are not local and its parameter count is unknown")
    return int(parameters * BYTES_PER_PARAMETER[quant])


def geometry_of(model_path: Path | None) -> KvGeometry:
    if model_path is None:
        return GEMMA_4_12B_GEOMETRY
    config = model_path / "config.json" if model_path.is_dir() else None
    if config is None or not config.is_file():
        raise PlanError(f"{model_path}: no config.json to read the attention geometry from")
    return KvGeometry.from_config(json.loads(config.read_text()))


def plan(geometry: KvGeometry, engine_name: EngineName, *, model: str, weights_bytes: int, memory_bytes: int,
         memory_source: str = "given", parallel: int = 1, context: int | None = None, kv_type: str = "f16") -> MemoryPlan:
    """The largest context (or the given one) that fits ``parallel`` sequences in ``memory_bytes``."""
    engine = ENGINES[engine_name]
    element = KV_ELEMENT_BYTES[kv_type]
    overhead = engine.base_overhead_bytes
    free = memory_bytes - weights_bytes - overhead
    if parallel < 1:
        raise PlanError("--parallel must be at least 1")

    def compute(ctx: int) -> int:  # vLLM's activations are in its measured runtime figure
        return llama_compute_bytes(geometry, ctx, parallel) if engine_name == "llama.cpp" else 0

    def need(ctx: int) -> int:
        return sum(kv_bytes(geometry, engine, ctx, parallel, element)) + compute(ctx)

    largest = _largest_context(need, free, geometry.max_positions, engine.block_tokens)
    if context is None:
        if largest < 1024:
            raise PlanError(f"{model} does not fit in {memory_bytes / GiB:.1f} GiB on {engine_name} with {parallel} "
                            f"parallel: weights {weights_bytes / GiB:.1f} GiB + runtime {overhead / GiB:.1f} GiB + a "
                            f"1024-token KV cache with its compute buffers {need(1024) / GiB:.2f} GiB")
        context = largest
    elif context > largest:
        raise PlanError(f"{context} tokens x {parallel} parallel do not fit in {memory_bytes / GiB:.1f} GiB on "
                        f"{engine_name}; the largest that fits is {largest} tokens x {parallel}")
    per_token, fixed = kv_per_sequence(geometry, engine, context, element)
    kv = sum(kv_bytes(geometry, engine, context, parallel, element))
    runtime = overhead + compute(context)
    return MemoryPlan(
        engine=engine_name, model=model, memory_bytes=memory_bytes, memory_source=memory_source,
        weights_bytes=weights_bytes, kv_bytes_per_token=per_token, kv_fixed_bytes=fixed, overhead_bytes=runtime,
        compute_bytes=compute(context), overhead_source=engine.overhead_source, kv_type=kv_type, max_context=context,
        parallel=parallel, total_bytes=weights_bytes + runtime + kv,
        engine_flags=engine_flags(engine_name, context, parallel, kv_type, kv),
        agent_settings=agent_settings(context, parallel),
        untrimmed_total_bytes=weights_bytes + runtime + parallel * untrimmed_kv_bytes(geometry, context, element),
    )


def _largest_context(need, free: int, max_positions: int, pad: int) -> int:
    """Binary search: the KV need grows monotonically with the context."""
    lo, hi = 0, max_positions
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if need(mid) <= free:
            lo = mid
        else:
            hi = mid - 1
    return lo - lo % pad if pad > 1 and lo >= pad else lo


def engine_flags(engine: EngineName, context: int, parallel: int, kv_type: str, kv_bytes: int) -> list[str]:
    if engine == "vllm":
        return ["--max-model-len", str(context), "--max-num-seqs", str(parallel), "--kv-cache-memory-bytes", str(kv_bytes),
                "--max-num-batched-tokens", str(VLLM_MAX_BATCHED_TOKENS)]
    # llama.cpp: one unified cache of -c cells shared by the slots, each slot held to the planned context;
    # the SWA cache stays trimmed (no --swa-full), and --fit off: the plan decides, not a silent shrink.
    # llama-server's defaults keep copies of the cache beside it, which no plan can bound: a prompt cache of
    # up to 8 GiB of finished slots' states (--cache-ram) and up to 32 context checkpoints per slot, each a
    # copy of the sliding-window cache (0.94 GiB for the 12B). Measured on the twin: +265 MiB after two requests.
    return ["-c", str(context * parallel), "-np", str(parallel), "--kv-unified", "--kv-unified-per-slot", str(context),
            "-b", str(LLAMA_UBATCH), "-ub", str(LLAMA_UBATCH), "-ctk", kv_type, "-ctv", kv_type, "--fit", "off",
            "--cache-ram", "0", "--ctx-checkpoints", "0"]


def agent_settings(context: int, parallel: int) -> dict[str, int]:
    """What the agents may put in flight: never more than the KV cache holds."""
    return {"review_budget_tokens": min(8000, context * 3 // 4), "review_concurrency": parallel,
            "listen_clips_in_flight": parallel, "desktop_max_context": context}
