"""Export a gemma4_unified checkpoint to GGUF for llama.cpp: ``model.gguf`` and ``mmproj.gguf``.

llama.cpp's own ``convert_hf_to_gguf.py`` (from the build that .ci/setup-env.sh caches as
``TILEPILOT_LLAMA``) writes the text model and the multimodal projector (``gemma4uv`` for images,
``gemma4ua`` for audio); ``llama-quantize`` then quantizes the text model. Both run as child
processes in the serving environment (the converter needs torch and transformers). The export is
built in a temporary folder and renamed into place, so a failed export leaves nothing behind.

Two things the converter of llama-cpp-python 0.3.36 does not handle for tilepilot's checkpoints are
patched in its process by :mod:`tilepilot.model_runtime.gguf_convert` (see there).
"""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

from pydantic import BaseModel

from tilepilot.model_runtime.errors import ModelRuntimeError
from tilepilot.model_runtime.folders import check_output_folder, folder_in_place

QUANTS: dict[str, str] = {"f16": "F16", "q8_0": "Q8_0", "q4_k_m": "Q4_K_M"}
ARCHITECTURE = "Gemma4UnifiedForConditionalGeneration"
MANIFEST = "tilepilot-gguf.json"


class GgufError(ModelRuntimeError):
    """A checkpoint that cannot be exported, or a llama.cpp build that is missing."""


class Fallback(BaseModel):
    """One tensor that could not take the requested type (llama-quantize's own fallback)."""

    tensor: str
    wanted: str
    got: str


class GgufExport(BaseModel):
    """What ``tilepilot model gguf`` wrote (also saved as ``tilepilot-gguf.json`` in the folder)."""

    checkpoint: str
    quant: str
    model: str
    mmproj: str
    fallbacks: list[Fallback]
    tiny_like: bool  # from tilepilot's tiny recipe: serve it with the tiny profile's limits


def llama_build() -> Path:
    """The cached llama.cpp build (``TILEPILOT_LLAMA``), or one line saying how to get it."""
    build = Path(os.environ.get("TILEPILOT_LLAMA") or "/nonexistent")
    if not (build / "bin" / "llama-server").is_file() or not (build / "llama.cpp" / "convert_hf_to_gguf.py").is_file():
        raise GgufError("llama.cpp is not built here: `source .ci/setup-env.sh` builds it and sets TILEPILOT_LLAMA")
    return build


def check_checkpoint(ckpt: Path) -> None:
    """One line for a folder that is not a whole gemma4_unified checkpoint; nothing is written then."""
    config_path = ckpt / "config.json"
    if not ckpt.is_dir() or not config_path.is_file():
        raise GgufError(f"{ckpt}: not a checkpoint folder (no config.json)")
    try:
        config = json.loads(config_path.read_text())
    except (OSError, ValueError):
        raise GgufError(f"{config_path}: not readable JSON (a half-written checkpoint?)") from None
    archs = config.get("architectures") or []
    if ARCHITECTURE not in archs:
        raise GgufError(f"{ckpt}: architecture {', '.join(archs) or 'unknown'}, not {ARCHITECTURE}")
    if not (ckpt / "tokenizer.json").is_file():
        raise GgufError(f"{ckpt}: no tokenizer.json (a half-written checkpoint?)")
    weights = sorted(ckpt.glob("*.safetensors"))
    if not weights:
        raise GgufError(f"{ckpt}: no *.safetensors weights (a half-written checkpoint?)")
    for path in weights:
        _check_safetensors(path)


def _check_safetensors(path: Path) -> None:
    """The header parses and every tensor's bytes are in the file (a truncated copy fails here)."""
    size = path.stat().st_size
    try:
        with open(path, "rb") as fh:
            (header_len,) = struct.unpack("<Q", fh.read(8))
            if header_len > size - 8:
                raise ValueError
            header = json.loads(fh.read(header_len))
        end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    except (OSError, ValueError, struct.error, KeyError, TypeError):
        raise GgufError(f"{path}: unreadable safetensors header (a half-written checkpoint?)") from None
    if 8 + header_len + end > size:
        raise GgufError(f"{path}: {size} bytes, its header needs {8 + header_len + end} (a half-written checkpoint?)")


_FALLBACK = re.compile(r"warning: (\S+)\s+- ncols\s+\d+ not divisible by\s+\d+ \(required for type\s+(\S+)\).*?"
                       r"-> falling back to\s+(\S+)")


def parse_fallbacks(log: str) -> list[Fallback]:
    return [Fallback(tensor=m[1], wanted=m[2], got=m[3]) for m in _FALLBACK.finditer(log)]


def _run(cmd: list[str], env: dict[str, str], what: str) -> str:
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
        raise GgufError(f"{what} failed: {(lines or ['no output'])[-1][:300]}")
    return output


def export(ckpt: Path, out: Path, quant: str = "f16", env: dict[str, str] | None = None) -> GgufExport:
    """Write ``out/model.gguf`` and ``out/mmproj.gguf`` (and the manifest), whole or not at all."""
    if quant not in QUANTS:
        raise GgufError(f"--quant must be one of {', '.join(QUANTS)}, got {quant}")
    ckpt = Path(ckpt).expanduser().resolve()
    check_checkpoint(ckpt)
    check_output_folder(Path(out), [ckpt], error=GgufError)  # before the build is looked for: one line, nothing written
    build = llama_build()
    source = build / "llama.cpp"
    from tilepilot.model_runtime.server import serving_env

    child_env = serving_env(env)
    child_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(source / "gguf-py"), child_env.get("PYTHONPATH", "")) if p)
    convert = [sys.executable, "-m", "tilepilot.model_runtime.gguf_convert", str(source), str(ckpt)]
    out = Path(out).expanduser()
    with folder_in_place(out, [ckpt], error=GgufError) as tmp:
        f16 = tmp / ("model.gguf" if quant == "f16" else "model-f16.gguf")
        _run([*convert, "--outfile", str(f16), "--outtype", "f16"], child_env, "converting the text model")
        # The projector stays f16 whatever --quant says, as llama.cpp's own releases ship it.
        _run([*convert, "--outfile", str(tmp / "mmproj.gguf"), "--outtype", "f16", "--mmproj"], child_env,
             "converting the projector")
        fallbacks: list[Fallback] = []
        if quant != "f16":
            log = _run([str(build / "bin" / "llama-quantize"), str(f16), str(tmp / "model.gguf"), QUANTS[quant]],
                       child_env, "llama-quantize")
            fallbacks = parse_fallbacks(log)
            f16.unlink()
        result = GgufExport(checkpoint=str(ckpt), quant=quant, model=str(out / "model.gguf"),
                            mmproj=str(out / "mmproj.gguf"), fallbacks=fallbacks,
                            tiny_like=(ckpt / "tilepilot-manifest.json").is_file())
        (tmp / MANIFEST).write_text(result.model_dump_json(indent=2))
    return result


def read_export(folder: Path) -> GgufExport | None:
    try:
        return GgufExport.model_validate_json((Path(folder) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
