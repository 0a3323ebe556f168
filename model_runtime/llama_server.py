"""The managed llama.cpp server: ``llama-server`` with the model's projector, for a GGUF export.

``tilepilot serve start --engine llama.cpp --model tiny|CKPT|GGUF`` lands here. A checkpoint (the
tiny one included) is exported once to GGUF (:mod:`tilepilot.model_runtime.gguf`) into the cache
and reused; a folder that ``tilepilot model gguf`` wrote, or a ``.gguf`` file with ``mmproj.gguf``
beside it, is served as it is. The server runs under the same rules as vLLM (loopback unless an
API key is set, given in its environment; one state file, ``serve stop`` / ``status``) and serves the profile's name, so the
agents and ``--model`` work unchanged.

Two llama.cpp facts shape the command line:

- Gemma 4 Unified attends to an image's (or clip's) tokens non-causally, which llama.cpp can only do
  inside one micro-batch: with the default ``-ub 512`` a page at budget 560 or 1120 aborts the
  server (``GGML_ASSERT ... non-causal attention requires n_ubatch >= n_tokens``). ``-b``/``-ub``
  are set above the largest image (1120 + 2 tokens) and the longest clip (750 + 2).
- llama-server sizes images per server (``--image-min-tokens``, ``--image-max-tokens``; for Gemma 4
  Unified 70 and 1120 by default), not per request. tilepilot resizes every image on the client to
  a grid that neither limit changes except the minimum (see :func:`tilepilot.model_runtime.budget.
  llama_cpp_image_soft_tokens`), so per-request budgets still hold, and the count is predicted
  exactly. The defaults are kept so that tilepilot predicts any llama-server alike.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from pydantic import BaseModel

from tilepilot.model_runtime import gguf
from tilepilot.model_runtime.errors import ServeError
from tilepilot.model_runtime.profiles import GEMMA_4_12B, ModelProfile, tiny_profile
from tilepilot.model_runtime.server import ServerState, check_exposure, launch, serving_env
from tilepilot.model_runtime.tiny import cache_root

MICRO_BATCH = 2048  # > the largest image (1122 tokens) and clip (752): see the module docstring


class LlamaModel(BaseModel):
    """What llama-server is started with, and the profile the agents size their requests by."""

    model: Path
    mmproj: Path
    profile: ModelProfile


def _from_export(folder: Path, profile: ModelProfile | None, name: str) -> LlamaModel:
    model, mmproj = folder / "model.gguf", folder / "mmproj.gguf"
    if not model.is_file():
        raise ServeError(f"{folder}: no model.gguf; write one with `tilepilot model gguf CKPT --out {folder}`")
    if not mmproj.is_file():
        raise ServeError(f"{folder}: no projector (mmproj.gguf) beside model.gguf; images and audio need it: "
                         "export again with `tilepilot model gguf`")
    if profile is None:
        export = gguf.read_export(folder)
        tiny_like = export.tiny_like if export else False
        base = tiny_profile() if tiny_like else GEMMA_4_12B.model_copy(update={"requires_gpu": False})
        profile = base.model_copy(update={"name": name, "served_name": name, "model": str(model)})
    return LlamaModel(model=model, mmproj=mmproj, profile=profile)


def exported_dir(checkpoint: Path) -> Path:
    """Where the f16 export of a checkpoint is cached (one per checkpoint folder and its weights)."""
    checkpoint = checkpoint.resolve()
    stamp = "|".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in sorted(checkpoint.glob("*.safetensors")))
    key = hashlib.sha256(f"{checkpoint}|{stamp}".encode()).hexdigest()[:12]
    return cache_root() / "gguf" / f"{checkpoint.name}-{key}-f16"


def resolve(model: str, checkpoint_profile: ModelProfile) -> LlamaModel:
    """``--model`` for llama.cpp: ``tiny`` or a checkpoint (exported once, cached), an export folder, or a GGUF file.

    ``checkpoint_profile`` is ``get_profile(model)`` for a profile name or checkpoint folder; the
    caller has built the tiny checkpoint already.
    """
    path = Path(model).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return _from_export(path.parent, None, path.stem) if path.name == "model.gguf" else _single_file(path)
    if path.is_dir() and (path / "model.gguf").exists():
        return _from_export(path, None, path.name)
    checkpoint = Path(checkpoint_profile.model)
    out = exported_dir(checkpoint)
    if gguf.read_export(out) is None:
        gguf.export(checkpoint, out, "f16")
    return _from_export(out, checkpoint_profile, checkpoint_profile.name)


def _single_file(path: Path) -> LlamaModel:
    mmproj = path.with_name("mmproj.gguf")
    if not mmproj.is_file():
        raise ServeError(f"{path}: no projector (mmproj.gguf) beside it; images and audio need it")
    profile = GEMMA_4_12B.model_copy(update={"requires_gpu": False, "name": path.stem, "served_name": path.stem,
                                             "model": str(path)})
    return LlamaModel(model=path, mmproj=mmproj, profile=profile)


def server_command(llama: LlamaModel, host: str, port: int, sizing: list[str] | None = None) -> list[str]:
    """``sizing``: a memory plan's flags (context, slots, batches, KV type); without one, the profile's
    context and llama-server's own defaults for the rest. An API key goes in the environment
    (``LLAMA_API_KEY``, see :func:`~tilepilot.model_runtime.server.launch`), never here."""
    profile = llama.profile
    sizing = sizing or ["-c", str(profile.max_model_len), "-b", str(MICRO_BATCH), "-ub", str(MICRO_BATCH)]
    return [
        str(gguf.llama_build() / "bin" / "llama-server"),
        "-m", str(llama.model), "--mmproj", str(llama.mmproj),
        "--host", host, "--port", str(port),
        "--alias", profile.served_name,
        *sizing,
        "--no-webui",
    ]


def start(llama: LlamaModel, *, host: str = "127.0.0.1", port: int | None = None, api_key: str | None = None,
          timeout_s: float = 300.0, on_wait=None, sizing: list[str] | None = None) -> ServerState:
    """Start llama-server for ``llama`` (or return the running one) and wait until it serves."""
    check_exposure(host, api_key)
    gguf.llama_build()
    return launch(llama.profile, "llama.cpp", lambda p: server_command(llama, host, p, sizing),
                  allocator_env(serving_env()), host=host, port=port, api_key=api_key, timeout_s=timeout_s,
                  on_wait=on_wait)


# glibc's malloc keeps what llama-server frees: each request's decoded and preprocessed images (tens of MiB
# each) raise its dynamic mmap threshold, so later ones come from heaps that are never returned, one per
# thread. On the geometry twin, seven desktop runs took the server's VmHWM from 521 to 837 MiB, 200 MiB over
# the plan; with these settings it stayed at 609 (the plan: 635). Set them yourself to override them.
ALLOCATOR_ENV = {"MALLOC_ARENA_MAX": "1", "MALLOC_MMAP_THRESHOLD_": "262144", "MALLOC_TRIM_THRESHOLD_": "262144"}


def allocator_env(env: dict[str, str]) -> dict[str, str]:
    return {**ALLOCATOR_ENV, **env}
