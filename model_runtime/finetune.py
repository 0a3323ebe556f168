"""Fine-tune a ``gemma4_unified`` checkpoint on a ``tilepilot export`` set, end to end (sight, sound, text).

The model is encoder-free: image patches and audio frames are projected straight into the decoder,
so one pass trains all of it. Each example is processed by the checkpoint's own processor at the
image budget the agent used (``tilepilot.image_budget``), so the model trains on the very token
grid it is served with; the loss covers only the answer (the last assistant turn and its end
marker). ``--lora`` trains low-rank adapters (PEFT) on every linear layer but the output head,
the patch and audio projections included, and merges them before saving, so the result is a plain
checkpoint that ``tilepilot serve start --model CKPT`` serves unchanged.

Runs in a child process with the serving environment (``tilepilot.model_runtime.server.serving_env``), like the
tiny-checkpoint builder: ``python -m tilepilot.model_runtime.finetune DATASET --base DIR --out DIR ...``. It
prints one JSON object per line on stdout (``start``, ``step``, ``done``) for the CLI to show, and a
one-line error on stderr (exit 2) for bad input. The output is written under a temporary name and
renamed into place, so a failed or killed run leaves no half-written checkpoint.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ValidationError

from tilepilot.model_runtime.errors import FinetuneError
from tilepilot.model_runtime.folders import check_output_folder, folder_in_place

DATA_NAME = "train.jsonl"  # what `tilepilot export` writes (agents/export/dataset.py documents the format)
PROVENANCE_NAME = "tilepilot-finetune.json"
PROBE_EXAMPLES = 16  # examples scored before and after training
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
LORA_TARGETS = r".*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj|patch_dense|embedding_projection)$"


class Part(BaseModel):
    type: str
    text: str | None = None


class Turn(BaseModel):
    role: str
    content: list[Part]


class Meta(BaseModel):
    image_budget: int | None = None
    prompt_tokens: int | None = None
    source: str = ""


class Record(BaseModel):
    """One line of train.jsonl: TRL's vision-language chat format plus tilepilot's ``tilepilot`` object."""

    messages: list[Turn]
    images: list[str] = []
    audios: list[str] = []
    tilepilot: Meta = Meta()


class FinetuneOptions(BaseModel):
    dataset: Path
    base: Path
    out: Path
    steps: int | None = None  # default: epochs x examples
    epochs: float = 3.0
    lr: float | None = None  # default_lr()
    lora: bool = False
    lora_rank: int = 16
    seed: int = 0
    force: bool = False


def default_lr(base: Path, lora: bool) -> float:
    """The tiny random-weight model learns fast at 5e-3 (tests/bench/bench_finetune.py); a real
    checkpoint's knowledge survives only small steps: the usual 2e-4 for LoRA, 1e-5 for all weights."""
    if (Path(base) / "tilepilot-manifest.json").is_file():  # the tiny recipe (tilepilot.model_runtime.tiny)
        return 5e-3
    return 2e-4 if lora else 1e-5


def load_records(dataset: Path) -> list[Record]:
    path = Path(dataset) / DATA_NAME
    if not path.is_file():
        raise FinetuneError(f"{dataset}: no {DATA_NAME}; pass a folder written by `tilepilot export`")
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            record = Record.model_validate_json(line)
        except ValidationError as err:
            raise FinetuneError(f"{path}:{number}: not a training example ({err.errors()[0]['msg']})") from None
        if not record.messages or record.messages[-1].role != "assistant":
            raise FinetuneError(f"{path}:{number}: the last message must be the assistant's answer")
        for name in record.images + record.audios:
            if not (Path(dataset) / name).is_file():
                raise FinetuneError(f"{path}:{number}: {name} is missing from the dataset folder")
        records.append(record)
    if not records:
        raise FinetuneError(f"{path}: no examples")
    return records


if TYPE_CHECKING:
    from torch import Tensor
else:
    Tensor = object  # torch is imported on first use: the field takes any object, as before


class Encoded(BaseModel):
    model_config = {"arbitrary_types_allowed": True}
    inputs: dict
    labels: Tensor
    prompt_tokens: int


def encode(processor, record: Record, dataset: Path) -> Encoded:
    """The model inputs of one example, with labels on the answer only."""
    import numpy as np
    import soundfile as sf
    import torch
    from PIL import Image

    messages = [turn.model_dump(exclude_none=True) for turn in record.messages]
    prompt_text = processor.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
    full_text = processor.apply_chat_template(messages, tokenize=False)
    kwargs: dict = {}
    if record.images:
        images = []
        for name in record.images:
            with Image.open(dataset / name) as im:
                images.append(im.convert("RGB"))
        kwargs["images"] = [images]
        kwargs["max_soft_tokens"] = record.tilepilot.image_budget or processor.image_processor.max_soft_tokens
    if record.audios:
        kwargs["audio"] = [np.asarray(sf.read(dataset / name, dtype="float32")[0]) for name in record.audios]
    prompt = processor(text=[prompt_text], return_tensors="pt", **kwargs)
    full = processor(text=[full_text], return_tensors="pt", **kwargs)
    n = prompt["input_ids"].shape[1]
    if not torch.equal(full["input_ids"][0, :n], prompt["input_ids"][0]):
        raise FinetuneError(f"{record.tilepilot.source}: the chat template does not render the prompt as a prefix "
                            "of the full conversation; this checkpoint's template is not supported")
    labels = full["input_ids"].clone()
    labels[:, :n] = -100
    # Train the answer and its end-of-turn marker, not whatever the template adds after it.
    end = processor.tokenizer.convert_tokens_to_ids("<turn|>")
    ends = (full["input_ids"][0, n:] == end).nonzero()
    if len(ends):
        labels[:, n + int(ends[0]) + 1:] = -100
    return Encoded(inputs=dict(full), labels=labels, prompt_tokens=n)


def answer_loss(model, enc: Encoded):
    """Mean cross-entropy over the answer's tokens.

    Logits only for the answer (``logits_to_keep``): the prompt's are never used, and with an
    8k-token vocabulary over a 1,400-token screenshot prompt they were most of a step's work.
    """
    import torch.nn.functional as F

    n = enc.prompt_tokens
    keep = enc.labels.shape[1] - n + 1  # from the last prompt position, which predicts the first answer token
    inputs = {k: v.to(model.device) if hasattr(v, "to") else v for k, v in enc.inputs.items()}
    logits = model(**inputs, logits_to_keep=keep).logits[:, :-1]
    labels = enc.labels[:, n:].to(model.device)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), ignore_index=-100)


def finetune(opts: FinetuneOptions, emit=lambda **event: None) -> Path:
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    records = load_records(opts.dataset)
    out = Path(opts.out)
    if out.exists() and any(out.iterdir()) and not opts.force:
        raise FinetuneError(f"--out {out}: exists and is not empty; pick a new folder or pass --force")
    check_output_folder(out, [Path(opts.base), Path(opts.dataset)], error=FinetuneError)  # before hours of training
    if not (Path(opts.base) / "config.json").is_file():
        raise FinetuneError(f"--base {opts.base}: not a checkpoint folder (no config.json)")
    torch.manual_seed(opts.seed)
    rng = random.Random(opts.seed)
    processor = AutoProcessor.from_pretrained(opts.base)
    # CPU: float32 (bf16 matmuls are slow there and the tiny model is small). GPU: bf16, so that a
    # real checkpoint fits; --lora is the practical choice for the 12B.
    gpu = torch.cuda.is_available()
    model = AutoModelForImageTextToText.from_pretrained(opts.base, dtype=torch.bfloat16 if gpu else torch.float32)
    model.to("cuda" if gpu else "cpu")  # pyright: ignore[reportArgumentType] - transformers wraps .to with functools.wraps, whose type leaves self unbound
    saved_dtype = _saved_dtype(opts.base)
    lora = _with_lora(model, opts.lora_rank) if opts.lora else None
    trained = model if lora is None else lora  # what the steps update: the model, or its LoRA wrapper
    trained.train()
    trainable = [p for p in trained.parameters() if p.requires_grad]
    total = opts.steps or max(1, math.ceil(opts.epochs * len(records)))
    lr = opts.lr if opts.lr is not None else default_lr(opts.base, opts.lora)
    opts = opts.model_copy(update={"lr": lr})
    optimizer = torch.optim.AdamW(trainable, lr=lr, weight_decay=0.0)
    warmup = max(1, total // 20)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * max(0.05, 1 - s / total))
    # A fixed sample, scored before and after: the per-step losses are of different examples.
    probe = sorted(rng.sample(range(len(records)), min(PROBE_EXAMPLES, len(records))))
    probe_before = _mean_loss(trained, processor, [records[i] for i in probe], Path(opts.dataset))
    emit(event="start", examples=len(records), steps=total, lora=opts.lora, probe_loss=round(probe_before, 4),
         trainable=sum(p.numel() for p in trainable), parameters=sum(p.numel() for p in trained.parameters()))
    order: list[int] = []
    matched = checked = 0
    started = time.monotonic()
    losses: list[float] = []
    for step in range(total):
        if not order:
            order = list(range(len(records)))
            rng.shuffle(order)
        record = records[order.pop()]
        enc = encode(processor, record, Path(opts.dataset))
        if record.tilepilot.prompt_tokens is not None:
            checked += 1
            matched += enc.prompt_tokens == record.tilepilot.prompt_tokens
        loss = answer_loss(trained, enc)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        emit(event="step", step=step + 1, steps=total, loss=round(losses[-1], 4),
             seconds=round(time.monotonic() - started, 1))
    probe_after = _mean_loss(trained, processor, [records[i] for i in probe], Path(opts.dataset))
    if lora is not None:
        model = lora.merge_and_unload()
    _save(model.to(saved_dtype), opts, out, losses)  # pyright: ignore[reportArgumentType] - transformers wraps .to with functools.wraps, whose type leaves self unbound
    emit(event="done", out=str(out), steps=len(losses), probe_examples=len(probe), probe_loss_before=round(probe_before, 4),
         probe_loss_after=round(probe_after, 4), first_loss=round(losses[0], 4),
         last_loss=round(sum(losses[-10:]) / len(losses[-10:]), 4),
         prompt_tokens_matched=matched, prompt_tokens_checked=checked, seconds=round(time.monotonic() - started, 1))
    return out


def _mean_loss(model, processor, records: list[Record], dataset: Path) -> float:
    import torch

    model.eval()
    losses = []
    with torch.no_grad():
        for record in records:
            losses.append(float(answer_loss(model, encode(processor, record, dataset))))
    model.train()
    return sum(losses) / len(losses)


def _saved_dtype(base: Path):
    import torch

    config = json.loads((Path(base) / "config.json").read_text(encoding="utf-8"))
    name = config.get("dtype") or config.get("torch_dtype") or config.get("text_config", {}).get("dtype") or "bfloat16"
    return getattr(torch, str(name), torch.bfloat16)


def _with_lora(model, rank: int):
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise FinetuneError("--lora needs PEFT: pip install 'tilepilot[finetune]'") from None
    config = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=LORA_TARGETS)
    return get_peft_model(model, config)


def _save(model, opts: FinetuneOptions, out: Path, losses: list[float]) -> None:
    """Base checkpoint's processor and tokenizer files + the new weights, then provenance; renamed into place."""
    with folder_in_place(out, [Path(opts.base), Path(opts.dataset)], error=FinetuneError) as tmp:
        for item in Path(opts.base).iterdir():
            if item.is_file() and item.name not in WEIGHT_FILES and item.name != ".complete":
                shutil.copy2(item, tmp / item.name)
        model.save_pretrained(tmp, safe_serialization=True)
        provenance = {
            "base": str(Path(opts.base).resolve()), "dataset": str(Path(opts.dataset).resolve()),
            "steps": len(losses), "lora": opts.lora, "lr": opts.lr, "seed": opts.seed,
            "first_loss": losses[0], "last_loss": losses[-1],
        }
        (tmp / PROVENANCE_NAME).write_text(json.dumps(provenance, indent=2), encoding="utf-8")
        (tmp / ".complete").write_text("ok\n")


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)  # None under python -OO
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--base", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--lora", action="store_true")
    parser.add_argument("--lora-rank", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)
    opts = FinetuneOptions(**{k.replace("-", "_"): v for k, v in vars(args).items()})

    def emit(**event: object) -> None:
        print(json.dumps(event), flush=True)

    try:
        finetune(opts, emit)
    except FinetuneError as err:
        print(str(err), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
