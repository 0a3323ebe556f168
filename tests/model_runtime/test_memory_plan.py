"""The memory plan's arithmetic against values computed by hand, on the published Gemma 4 12B geometry
and on Gemma 3-style configs (sliding 5:1), and ``tilepilot serve plan`` end to end."""

from __future__ import annotations

import json

import pytest

from tests.conftest import tilepilot
from tilepilot.model_runtime import memory_plan as mp
from tilepilot.model_runtime.memory_budget import parse_size
from tilepilot.model_runtime.errors import PlanError

GiB, MiB = mp.GiB, mp.MiB


def gemma3_config(layers: int, kv_heads: int, head_dim: int, window: int) -> dict:
    types = ["full_attention" if (i + 1) % 6 == 0 else "sliding_attention" for i in range(layers)]
    return {"model_type": "gemma3", "text_config": {
        "num_hidden_layers": layers, "layer_types": types, "num_key_value_heads": kv_heads, "head_dim": head_dim,
        "sliding_window": window, "max_position_embeddings": 131072, "vocab_size": 262144, "hidden_size": 2560}}


def test_published_12b_kv_bytes_per_token_by_hand():
    g = mp.GEMMA_4_12B_GEOMETRY
    assert sum(layer.sliding for layer in g.layers) == 40 and len(g.layers) == 48
    # sliding: 2 x 8 heads x 256 x 2 bytes = 8192 B; full: 2 x 1 x 512 x 2 = 2048 B
    assert mp.untrimmed_kv_bytes(g, 1, 2.0) == 40 * 8192 + 8 * 2048 == 344064  # "about 320 KiB per token"
    llama = mp.ENGINES["llama.cpp"]
    per_token, fixed = mp.kv_per_sequence(g, llama, 131072, 2.0)
    assert per_token == 8 * 2048 == 16384
    # llama.cpp keeps window + n_ubatch = 1024 + 2048 = 3072 cells (a multiple of 256) for each sliding layer
    assert fixed == 40 * 8192 * 3072
    # vLLM keeps window - 1 + 2496 tokens in flight = 3519, in 128-token blocks (28), plus one block; and one
    # null block of 128 tokens at the widest page for each of a group's 8 layers (40 sliding, 8 full: gcd 8)
    vllm_per_token, vllm_fixed = mp.kv_per_sequence(g, mp.ENGINES["vllm"], 131072, 2.0)
    assert (vllm_per_token, vllm_fixed) == (16384, 40 * 8192 * 29 * 128 + 128 * 8192 * 8)
    # A context inside the window: nothing to trim, every layer grows with it.
    assert mp.kv_per_sequence(g, llama, 1000, 2.0) == (344064, 0)


def test_gemma3_configs_read_from_config_json():
    g = mp.KvGeometry.from_config(gemma3_config(layers=34, kv_heads=4, head_dim=256, window=1024))  # a 4B-like shape
    assert [layer.sliding for layer in g.layers].count(False) == 5 and g.sliding_window == 1024
    per_token, fixed = mp.kv_per_sequence(g, mp.ENGINES["llama.cpp"], 32768, 2.0)
    assert per_token == 5 * (2 * 4 * 256 * 2) == 20480
    assert fixed == 29 * 4096 * 3072
    small = mp.KvGeometry.from_config(gemma3_config(layers=18, kv_heads=1, head_dim=256, window=512))  # 270M-like
    per_token, fixed = mp.kv_per_sequence(small, mp.ENGINES["llama.cpp"], 8192, 2.0)
    assert per_token == 3 * 1024 and fixed == 15 * 1024 * 2560  # 512 + 2048 = 2560 cells


def test_the_geometry_twin_on_vllm_matches_vllms_own_startup_check():
    """The twin (tiny.GEOMETRIES["twin"]: 10 sliding 8x256 + 2 full 1x512 layers). vLLM 0.32's own startup
    check, refusing a 0.25 GiB pool at 32768 tokens, said "0.41 GiB KV cache is needed" and "the estimated
    maximum model length is 2944"; refusing a 306 MiB pool at 4096 tokens, it said 3584."""
    config = {"text_config": {"num_hidden_layers": 12, "num_key_value_heads": 8, "head_dim": 256, "sliding_window": 1024,
                              "layer_types": (["sliding_attention"] * 5 + ["full_attention"]) * 2,
                              "per_layer_config": {"05": {"head_dim": 512, "num_key_value_heads": 1},
                                                   "11": {"head_dim": 512, "num_key_value_heads": 1}},
                              "max_position_embeddings": 32768, "vocab_size": 8192, "hidden_size": 256}}
    g, vllm = mp.KvGeometry.from_config(config), mp.ENGINES["vllm"]
    need = sum(mp.kv_bytes(g, vllm, 32768, 1, 2.0))
    # full layers get 512-token blocks (the same page as 128 tokens of a sliding layer); one null block of 2 layers
    assert need == 10 * 8192 * 3712 + 2 * 2048 * 32768 + 128 * 8192 * 2 and round(need / GiB, 2) == 0.41
    assert sum(mp.kv_bytes(g, vllm, 2944, 1, 2.0)) <= GiB // 4 < sum(mp.kv_bytes(g, vllm, 2944 + 128, 1, 2.0))
    assert sum(mp.kv_bytes(g, vllm, 3584, 1, 2.0)) <= 306 * MiB < sum(mp.kv_bytes(g, vllm, 3584 + 128, 1, 2.0))


def test_per_layer_overrides_and_shared_kv_layers():
    config = {"text_config": {"num_hidden_layers": 4, "num_key_value_heads": 2, "head_dim": 64, "sliding_window": 128,
                              "layer_types": ["sliding_attention", "full_attention"] * 2,
                              "per_layer_config": {"1": {"head_dim": 128, "num_key_value_heads": 1}},
                              "num_kv_shared_layers": 1, "max_position_embeddings": 4096, "vocab_size": 100, "hidden_size": 64}}
    g = mp.KvGeometry.from_config(config)
    assert [(x.kv_heads, x.head_dim, x.has_cache) for x in g.layers] == [(2, 64, True), (1, 128, True), (2, 64, True), (2, 64, False)]
    assert mp.untrimmed_kv_bytes(g, 10, 2.0) == 10 * (512 + 512 + 512)


def test_largest_context_fits_and_one_more_block_does_not():
    g = mp.GEMMA_4_12B_GEOMETRY
    weights = int(12e9 * mp.BYTES_PER_PARAMETER["q4_k_m"])
    result = mp.plan(g, "llama.cpp", model="m", weights_bytes=weights, memory_bytes=9 * GiB, parallel=2)
    assert result.total_bytes <= 9 * GiB and result.max_context % 256 == 0
    assert result.engine_flags[:4] == ["-c", str(2 * result.max_context), "-np", "2"] and "--swa-full" not in result.engine_flags
    with pytest.raises(PlanError, match=f"largest that fits is {result.max_context} tokens x 2"):
        mp.plan(g, "llama.cpp", model="m", weights_bytes=weights, memory_bytes=9 * GiB, parallel=2,
                context=result.max_context + 256)
    kv = result.total_bytes - result.weights_bytes - result.overhead_bytes
    assert result.untrimmed_total_bytes - result.weights_bytes - result.overhead_bytes > 2 * kv  # the trap the plan avoids


def test_sizes_parse_and_bad_ones_are_one_line():
    assert parse_size("16GiB") == 16 * GiB and parse_size("512M") == 512 * MiB and parse_size("8 gb") == 8 * 10**9
    for bad in ("lots", "-3G", "16XB"):
        with pytest.raises(PlanError, match="not a memory size"):
            parse_size(bad)


def test_serve_plan_cli_json_and_refusal():
    proc = tilepilot("serve", "plan", "--model", "gemma-4-12b", "--engine", "llama.cpp", "--memory", "16GiB", "--json")
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    for key in ("weights_bytes", "kv_bytes_per_token", "kv_fixed_bytes", "overhead_bytes", "max_context", "parallel",
                "total_bytes", "engine_flags", "agent_settings"):
        assert key in plan
    assert plan["max_context"] == 131072 and plan["kv_bytes_per_token"] == 16384 and plan["total_bytes"] < 16 * GiB
    refused = tilepilot("serve", "plan", "--engine", "vllm", "--memory", "8GiB")
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and "does not fit" in refused.stderr
