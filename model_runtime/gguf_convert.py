"""Run llama.cpp's ``convert_hf_to_gguf.py`` with two patches for tilepilot's checkpoints.

Usage (a child process of :func:`tilepilot.model_runtime.gguf.export`)::

    python -m tilepilot.model_runtime.gguf_convert LLAMA_CPP_SOURCE CHECKPOINT [converter options]

The converter of llama-cpp-python 0.3.36 assumes Google's checkpoints in two places:

1. ``Gemma4Model.set_gguf_parameters`` requires ``expert_intermediate_size`` or
   ``moe_intermediate_size`` in the text config (it forgot ``optional=True``); a dense model such
   as tilepilot's tiny one has neither. The patch answers None for that one lookup, which the
   converter then skips, as it means to.
2. ``Gemma4Model.set_vocab`` reads only Google's sentencepiece-style BPE (byte fallback). The tiny
   recipe trains a GPT-2-style byte-level BPE; for such a tokenizer the patch writes llama.cpp's
   ``gpt2`` vocabulary with the ``gpt-2`` pre-tokenizer (the tiny tokenizer's exact split:
   ``ByteLevel(add_prefix_space=False)`` with GPT-2's regex), so llama.cpp tokenizes text as the
   Hugging Face tokenizer, and vLLM, do. Google's tokenizers take the converter's own path.
"""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path


def _byte_level(model_dir: Path) -> bool:
    tokenizer = json.loads((Path(model_dir) / "tokenizer.json").read_text())
    return tokenizer["model"]["type"] == "BPE" and (tokenizer.get("pre_tokenizer") or {}).get("type") == "ByteLevel"


def main() -> None:
    source, checkpoint, *options = sys.argv[1:]
    sys.path.insert(0, source)
    # llama.cpp's converter package, from the cached build's source: on sys.path only at run time.
    import conversion.base as base  # pyright: ignore[reportMissingImports]
    import conversion.gemma as gemma  # pyright: ignore[reportMissingImports]

    find_hparam = base.ModelBase.find_hparam

    def find_hparam_moe_optional(self, keys, optional=False):
        if "moe_intermediate_size" in keys:
            optional = True
        return find_hparam(self, keys, optional)

    own_set_vocab = gemma.Gemma4Model.set_vocab

    def set_vocab(self) -> None:
        if not _byte_level(self.dir_model):
            own_set_vocab(self)
            return
        self.get_vocab_base_pre = lambda tokenizer: "gpt-2"
        self._set_vocab_gpt2()

    base.ModelBase.find_hparam = find_hparam_moe_optional
    gemma.Gemma4Model.set_vocab = set_vocab
    sys.argv = ["convert_hf_to_gguf.py", checkpoint, *options]
    runpy.run_path(str(Path(source) / "convert_hf_to_gguf.py"), run_name="__main__")


if __name__ == "__main__":
    main()
