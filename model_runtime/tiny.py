"""Build the tiny, random-weight ``gemma4_unified`` checkpoint used for tests and the offline demo.

The checkpoint has the real architecture (encoder-free image patches and raw 16 kHz audio frames
projected into a Gemma 4 decoder), the real processor settings of the 12B model (280 soft
tokens, 16 px patches pooled 3x3, 640 samples per audio token, at most 750 audio tokens) and a
BPE tokenizer trained here on English text shipped with the package. Its weights are noise, so
its *words* are noise; its structure, token counts and protocol are real.

Everything is built offline and deterministically from ``seed``; nothing touches a model hub.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from importlib import resources
from pathlib import Path

from tilepilot.model_runtime.errors import CheckpointBuildError
from tilepilot.model_runtime.folders import folder_in_place

# Bump when the recipe changes: it is part of the cache key.
RECIPE_VERSION = 3
DEFAULT_SEED = 0
VOCAB_SIZE = 8192  # measured ~3.6 chars/token on English prose (see tests)
MAX_MODEL_LEN = 32768

SPECIAL_TOKENS = {
    "pad_token": "<pad>",
    "eos_token": "<eos>",
    "bos_token": "<bos>",
    "unk_token": "<unk>",
    "mask_token": "<mask>",
}
# Names the Gemma 4 Unified processor reads off the tokenizer (``tokenizer.image_token`` ...).
MODEL_TOKENS = {
    "image_token": "<|image|>",
    "boi_token": "<|image>",
    "eoi_token": "<image|>",
    "audio_token": "<|audio|>",
    "boa_token": "<|audio>",
    "eoa_token": "<audio|>",
}
CHAT_TOKENS = ["<|turn>", "<turn|>", "<|channel>", "<channel|>", "<|video|>"]

# Gemma-4 style turns. Media parts become one placeholder each; vLLM expands them to
# begin-marker + N soft tokens + end-marker.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- for message in messages -%}"
    "{{ '<|turn>' + ('model' if message['role'] == 'assistant' else message['role']) + '\\n' }}"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'text' -%}{{ part['text'] }}"
    "{%- elif part['type'] == 'image' or part['type'] == 'image_url' -%}{{ '<|image|>' }}"
    "{%- elif part['type'] == 'audio' or part['type'] == 'input_audio' -%}{{ '<|audio|>' }}"
    "{%- endif -%}{%- endfor -%}{%- endif -%}"
    "{{ '<turn|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|turn>model\\n' }}{%- endif -%}"
)


def cache_root() -> Path:
    base = os.environ.get("TILEPILOT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "tilepilot"
    )
    return Path(base)


# The text model's attention geometry. "tiny" is as small as the architecture allows. "twin" has the
# real 12B's attention geometry (5 sliding : 1 full; sliding 8 KV heads x 256, window 1024; full 1 KV
# head x 512 with k_eq_v) on a small hidden size and 12 layers, so that its KV cache is big enough to
# measure here (the memory plan's test and benchmark).
GEOMETRIES: dict[str, dict] = {
    "tiny": {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 2,
             "num_key_value_heads": 1, "head_dim": 64, "global_head_dim": 128, "sliding_window": 512,
             "layer_types": ["sliding_attention", "full_attention"]},
    "twin": {"hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 12, "num_attention_heads": 8,
             "num_key_value_heads": 8, "head_dim": 256, "global_head_dim": 512, "num_global_key_value_heads": 1,
             "attention_k_eq_v": True, "sliding_window": 1024,
             "layer_types": ["full_attention" if (i + 1) % 6 == 0 else "sliding_attention" for i in range(12)]},
}


def default_checkpoint_dir(seed: int = DEFAULT_SEED, geometry: str = "tiny") -> Path:
    return cache_root() / "models" / f"{geometry}-gemma4-unified-r{RECIPE_VERSION}-s{seed}"


def is_complete(path: Path) -> bool:
    return (path / ".complete").is_file()


def build_tiny_checkpoint(out: Path | None = None, seed: int = DEFAULT_SEED, force: bool = False,
                          geometry: str = "tiny") -> Path:
    """Build (or reuse) the tiny checkpoint. Returns its folder.

    The folder is written under a temporary name and renamed into place, so a killed build never
    leaves a half-written checkpoint that a server would then try to load.
    """
    out = Path(out) if out else default_checkpoint_dir(seed, geometry)
    if is_complete(out) and not force:
        return out
    try:
        import torch  # noqa: F401  (the serve extras provide it)
        import transformers  # noqa: F401
    except ImportError as err:
        raise CheckpointBuildError(
            f"building the tiny model needs torch and transformers ({err.name} missing); "
            "install the serving extras: pip install 'tilepilot[serve-cpu]'"
        ) from None
    with folder_in_place(out, error=CheckpointBuildError) as tmp:
        _write_checkpoint(tmp, seed, geometry)
    return out


def _corpus() -> str:
    data = resources.files("tilepilot.model_runtime").joinpath("data/corpus.txt.gz").read_bytes()
    return gzip.decompress(data).decode("utf-8")


def _train_tokenizer(corpus: str):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = list(SPECIAL_TOKENS.values()) + list(MODEL_TOKENS.values()) + CHAT_TOKENS
    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus.split("\n\n"), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        model_max_length=MAX_MODEL_LEN,
        chat_template=CHAT_TEMPLATE,
        **SPECIAL_TOKENS,
        **MODEL_TOKENS,
    )


def _config(tokenizer, seed: int, geometry: str = "tiny"):
    from transformers import Gemma4UnifiedConfig, Gemma4UnifiedVisionConfig

    ids = {name: tokenizer.convert_tokens_to_ids(tok) for name, tok in MODEL_TOKENS.items()}
    shape = GEOMETRIES[geometry]
    hidden = shape["hidden_size"]
    cfg = Gemma4UnifiedConfig(
        text_config={
            "vocab_size": len(tokenizer),
            **shape,
            "max_position_embeddings": MAX_MODEL_LEN,
            "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<turn|>")],
            "bos_token_id": tokenizer.bos_token_id,
        },
        vision_config={"mm_embed_dim": hidden, "output_proj_dims": hidden, "mm_posemb_size": 1120},
        audio_config={"audio_embed_dim": 640},
        boi_token_id=ids["boi_token"],
        eoi_token_id=ids["eoi_token"],
        image_token_id=ids["image_token"],
        video_token_id=tokenizer.convert_tokens_to_ids("<|video|>"),
        boa_token_id=ids["boa_token"],
        eoa_token_index=ids["eoa_token"],
        audio_token_id=ids["audio_token"],
    )
    if not isinstance(cfg.vision_config, Gemma4UnifiedVisionConfig):  # built from the dict given, by this transformers
        raise CheckpointBuildError("this transformers' Gemma4UnifiedConfig did not build its vision config")
    # vLLM's Gemma4UnifiedProcessingInfo reads the default image budget from here.
    cfg.vision_config.num_soft_tokens = 280
    cfg.architectures = ["Gemma4UnifiedForConditionalGeneration"]
    cfg.tilepilot = {"recipe": RECIPE_VERSION, "seed": seed, "random_weights": True, "geometry": geometry}
    return cfg


def _write_checkpoint(out: Path, seed: int, geometry: str = "tiny") -> None:
    import torch
    from transformers import (
        Gemma4UnifiedAudioFeatureExtractor,
        Gemma4UnifiedForConditionalGeneration,
        Gemma4UnifiedImageProcessor,
        Gemma4UnifiedProcessor,
        Gemma4UnifiedTextConfig,
        Gemma4UnifiedVideoProcessor,
        GenerationConfig,
    )

    torch.manual_seed(seed)
    tokenizer = _train_tokenizer(_corpus())
    config = _config(tokenizer, seed, geometry)
    if not isinstance(config.text_config, Gemma4UnifiedTextConfig):  # built from the dict given, by this transformers
        raise CheckpointBuildError("this transformers' Gemma4UnifiedConfig did not build its text config")
    model = Gemma4UnifiedForConditionalGeneration(config).to(torch.bfloat16)  # pyright: ignore[reportArgumentType] - transformers wraps .to with functools.wraps, whose type leaves self unbound
    model.save_pretrained(out, safe_serialization=True)
    GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=config.text_config.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        # The real checkpoint ships sampling defaults too; vLLM applies them unless the request
        # overrides them, which is why every tilepilot request passes `temperature`.
        do_sample=True,
        temperature=1.0,
        top_k=64,
        top_p=0.95,
    ).save_pretrained(out)
    processor = Gemma4UnifiedProcessor(
        feature_extractor=Gemma4UnifiedAudioFeatureExtractor(audio_samples_per_token=640),
        image_processor=Gemma4UnifiedImageProcessor(max_soft_tokens=280, patch_size=16, pooling_kernel_size=3),
        tokenizer=tokenizer,
        video_processor=Gemma4UnifiedVideoProcessor(),
        chat_template=CHAT_TEMPLATE,
        image_seq_length=280,
        audio_seq_length=750,
        audio_ms_per_token=40,
    )
    processor.save_pretrained(out)
    manifest = {
        "recipe": RECIPE_VERSION,
        "seed": seed,
        "files": {p.name: _sha256(p) for p in sorted(out.iterdir()) if p.is_file()},
    }
    (out / "tilepilot-manifest.json").write_text(json.dumps(manifest, indent=2))
    (out / ".complete").write_text("ok\n")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def main(argv: list[str] | None = None) -> None:
    """``python -m tilepilot.model_runtime.tiny --out DIR --seed N``: run in a child with the serving env."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)  # None under python -OO
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--force", action="store_true")
    parser.add_argument("--geometry", choices=sorted(GEOMETRIES), default="tiny")
    args = parser.parse_args(argv)
    print(build_tiny_checkpoint(args.out, seed=args.seed, force=args.force, geometry=args.geometry))


if __name__ == "__main__":
    main()
