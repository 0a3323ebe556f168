"""``tilepilot serve plan``: will this model, context and parallelism fit in this machine's memory?"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from tilepilot.agents.cli_model import JsonOption
from tilepilot.agents.errors import UsageError
from tilepilot.model_runtime import gguf, memory_plan as mp
from tilepilot.model_runtime.llama_server import LlamaModel
from tilepilot.model_runtime.memory_budget import memory_budget
from tilepilot.model_runtime.profiles import ModelProfile, get_profile

def _model_source(model: str) -> tuple[Path | None, float | None]:
    """(checkpoint folder or None, nominal parameter count or None) for ``--model``."""
    if model in ("gemma-4-12b", "google/gemma-4-12B-it"):
        return None, mp.GEMMA_4_12B_PARAMETERS
    return Path(get_profile(model).model), None

def serve_plan(
    model: Annotated[str, typer.Option("--model", "-m", help="Profile (tiny, gemma-4-12b) or checkpoint folder.")] = "gemma-4-12b",
    engine: Annotated[str, typer.Option("--engine", help="vllm or llama.cpp.")] = "llama.cpp",
    memory: Annotated[str, typer.Option("--memory", help="auto (cgroup limit, else available memory) or a size: 16GiB.")] = "auto",
    quant: Annotated[Optional[str], typer.Option("--quant", help="Weights: bf16, f16, q8_0, q4_k_m (default: bf16 on vllm, q4_k_m on llama.cpp).")] = None,
    parallel: Annotated[int, typer.Option("--parallel", min=1, help="Requests served at once (slots / sequences).")] = 1,
    context: Annotated[Optional[int], typer.Option("--context", min=256, help="Tokens per request; default: the largest that fits.")] = None,
    kv_type: Annotated[str, typer.Option("--kv-type", help="KV cache element type: f16 or q8_0.")] = "f16",
    as_json: JsonOption = False,
) -> None:
    """Plan the server's memory: weights, KV cache (trimmed sliding-window layers), runtime, headroom."""
    if engine not in mp.ENGINES:
        raise UsageError(f"--engine must be vllm or llama.cpp, got {engine!r}")
    quant = quant or ("bf16" if engine == "vllm" else "q4_k_m")
    if quant not in mp.BYTES_PER_PARAMETER:
        raise UsageError(f"--quant must be one of {', '.join(mp.BYTES_PER_PARAMETER)}, got {quant!r}")
    if kv_type not in mp.KV_ELEMENT_BYTES:
        raise UsageError(f"--kv-type must be one of {', '.join(mp.KV_ELEMENT_BYTES)}, got {kv_type!r}")
    path, parameters = _model_source(model)
    budget, source = memory_budget(memory)
    result = mp.plan(mp.geometry_of(path), engine, model=model, weights_bytes=mp.weights_bytes_of(path, parameters, quant),
                     memory_bytes=budget, memory_source=source, parallel=parallel, context=context, kv_type=kv_type)
    if as_json:
        typer.echo(result.model_dump_json())
        return
    gib = mp.GiB
    typer.echo(f"{model} on {engine} ({quant} weights, {kv_type} KV), {parallel} parallel, within {budget / gib:.1f} GiB "
              f"({source})")
    typer.echo(f"  weights        {result.weights_bytes / gib:6.2f} GiB")
    typer.echo(f"  KV cache       {(result.total_bytes - result.weights_bytes - result.overhead_bytes) / gib:6.2f} GiB  "
              f"({result.kv_fixed_bytes / mp.MiB:.0f} MiB fixed + {result.kv_bytes_per_token / 1024:.1f} KiB/token, per sequence)")
    compute = f"; compute buffers {result.compute_bytes / mp.MiB:.0f} MiB" if result.compute_bytes else ""
    typer.echo(f"  runtime        {result.overhead_bytes / gib:6.2f} GiB  ({result.overhead_source}{compute})")
    typer.echo(f"  total          {result.total_bytes / gib:6.2f} GiB  at {result.max_context} tokens x {parallel}")
    typer.echo(f"  untrimmed rule {result.untrimmed_total_bytes / gib:6.2f} GiB  (every layer charged the full context)")
    typer.echo(f"  engine flags   {' '.join(result.engine_flags)}")
    typer.echo(f"  agents         {json.dumps(result.agent_settings)}")

def planned(geometry: mp.KvGeometry, engine: str, *, model: str, weights_bytes: int, memory: str, parallel: int,
            context: int | None, longest: int, kv_type: str = "f16") -> mp.MemoryPlan:
    """The plan ``serve start`` applies: ``context``, else the largest that fits up to ``longest`` (the
    profile's own context). What cannot fit is one line naming the largest that does."""
    budget, source = memory_budget(memory)
    common = dict(model=model, weights_bytes=weights_bytes, memory_bytes=budget, memory_source=source,
                  parallel=parallel, kv_type=kv_type)
    if context is None:
        context = min(mp.plan(geometry, engine, **common).max_context, longest)  # type: ignore[arg-type]
    return mp.plan(geometry, engine, context=context, **common)  # type: ignore[arg-type]


def vllm_plan(profile: ModelProfile, memory: str, parallel: int | None, context: int | None) -> tuple[ModelProfile, mp.MemoryPlan]:
    """The profile with the plan's context, sequences, KV pool and batch, and the plan."""
    path = Path(profile.model)
    local = path.is_dir()
    result = planned(mp.geometry_of(path if local else None), "vllm", model=profile.name,
                     weights_bytes=mp.weights_bytes_of(path if local else None, None if local else mp.GEMMA_4_12B_PARAMETERS, "bf16"),
                     memory=memory, parallel=parallel or profile.max_num_seqs, context=context, longest=profile.max_model_len)
    kv = result.total_bytes - result.weights_bytes - result.overhead_bytes
    return profile.model_copy(update={"max_model_len": result.max_context, "max_num_seqs": result.parallel,
                                      "kv_cache_bytes": kv, "max_num_batched_tokens": mp.VLLM_MAX_BATCHED_TOKENS}), result


def llama_plan(llama: LlamaModel, checkpoint: Path | None, memory: str, parallel: int | None,
               context: int | None) -> mp.MemoryPlan:
    """The plan for llama-server: the geometry from the checkpoint the GGUF came from (else the 12B's)."""
    export = gguf.read_export(llama.model.parent)
    source = checkpoint or (Path(export.checkpoint) if export else None)
    geometry = mp.geometry_of(source) if source and (source / "config.json").is_file() else mp.GEMMA_4_12B_GEOMETRY
    weights = llama.model.stat().st_size + llama.mmproj.stat().st_size
    return planned(geometry, "llama.cpp", model=llama.profile.name, weights_bytes=weights, memory=memory,
                   parallel=parallel or 1, context=context, longest=llama.profile.max_model_len)


def plan_line(result: mp.MemoryPlan) -> str:
    return (f"memory plan: {result.max_context} tokens x {result.parallel} in {result.total_bytes / mp.GiB:.2f} GiB "
            f"of {result.memory_bytes / mp.GiB:.2f} GiB ({result.memory_source}); `serve plan` explains it, --no-plan skips it")


def register(serve: typer.Typer) -> None:
    serve.command("plan")(serve_plan)
