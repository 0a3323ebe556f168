"""A GGUF with a model's shapes and no weights: a sparse file, so llama.cpp's own estimator
(``llama-fit-params --fit-print``) sizes a model that is not here, such as the 12B.

Metadata and tokenizer are copied from a real export (the twin's); the hyperparameters and every
tensor's shape follow ``geometry``. The tensor data is a hole: the file takes a few hundred KiB on
disk whatever its length, and the estimator never reads it. Do not start llama-server on it: the
loader reads the whole length (20 GB of zeros for the 12B) into memory.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from tilepilot.model_runtime.memory_plan import KvGeometry


def write_shape_gguf(template: Path, geometry: KvGeometry, out: Path, llama_source: Path, vocab: int = 8192) -> Path:
    sys.path.insert(0, str(llama_source / "gguf-py"))
    import gguf  # llama.cpp's own writer, from the source the binaries were built from

    src = gguf.GGUFReader(str(template))
    writer = gguf.GGUFWriter(str(out), "gemma4")
    for key, field in src.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        value, kind = field.contents(), field.types[0]
        if key == "tokenizer.ggml.tokens":
            value = value + [f"<filler{i}>" for i in range(vocab - len(value))]
        elif key == "tokenizer.ggml.token_type":
            value = value + [1] * (vocab - len(value))
        writer.add_key_value(key, value, kind, sub_type=field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None)
    full = [not layer.sliding for layer in geometry.layers]
    heads = geometry.attention_width // max(layer.head_dim for layer in geometry.layers)
    u32, array, boolean = gguf.GGUFValueType.UINT32, gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.BOOL
    for key, value, kind, sub in (
        ("gemma4.block_count", len(full), u32, None), ("gemma4.embedding_length", geometry.hidden_size, u32, None),
        ("gemma4.feed_forward_length", geometry.intermediate_size, u32, None), ("gemma4.attention.head_count", heads, u32, None),
        ("gemma4.context_length", geometry.max_positions, u32, None),
        ("gemma4.attention.head_count_kv", [layer.kv_heads for layer in geometry.layers], array, u32),
        ("gemma4.attention.sliding_window", geometry.sliding_window, u32, None),
        ("gemma4.attention.sliding_window_pattern", [not f for f in full], array, boolean),
    ):
        writer.kv_data[0][key] = gguf.GGUFValue(value=value, type=kind, sub_type=sub)

    def tensor(name: str, shape: list[int], f32: bool = False) -> None:
        kind = gguf.GGMLQuantizationType.F32 if f32 else gguf.GGMLQuantizationType.F16
        writer.add_tensor_info(name, shape, np.float32 if f32 else np.float16, int(np.prod(shape)) * (4 if f32 else 2),
                               raw_dtype=kind)

    hidden, ffn = geometry.hidden_size, geometry.intermediate_size
    tensor("rope_freqs.weight", [max(layer.head_dim for layer in geometry.layers) // 2], f32=True)
    tensor("token_embd.weight", [vocab, hidden])
    for i, layer in enumerate(geometry.layers):
        p, width, kv = f"blk.{i}.", heads * layer.head_dim, layer.kv_heads * layer.head_dim
        for norm in ("attn_norm", "post_attention_norm", "post_ffw_norm", "ffn_norm"):
            tensor(p + norm + ".weight", [hidden], f32=True)
        tensor(p + "layer_output_scale.weight", [1], f32=True)
        tensor(p + "ffn_down.weight", [hidden, ffn])
        tensor(p + "ffn_gate.weight", [ffn, hidden])
        tensor(p + "ffn_up.weight", [ffn, hidden])
        tensor(p + "attn_k_norm.weight", [layer.head_dim], f32=True)
        tensor(p + "attn_q_norm.weight", [layer.head_dim], f32=True)
        tensor(p + "attn_q.weight", [width, hidden])
        tensor(p + "attn_k.weight", [kv, hidden])
        if layer.sliding:  # full-attention layers have k_eq_v: no V projection
            tensor(p + "attn_v.weight", [kv, hidden])
        tensor(p + "attn_output.weight", [hidden, width])
    tensor("output_norm.weight", [hidden], f32=True)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    handle = writer.fout[0]
    header_end = handle.tell()
    handle.close()
    align = 32
    data = sum(-(-t.nbytes // align) * align for t in writer.tensors[0].values())
    os.truncate(out, -(-header_end // align) * align + data)  # the weights: one hole
    return out
