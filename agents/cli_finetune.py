"""``tilepilot model finetune DATASET --base tiny|PATH --out CKPT [--lora] [--steps N]``.

The training runs in a child process with the serving environment (model code needs it, see
``tilepilot.model_runtime.server.serving_env``) and with the hub switched off: nothing is downloaded. The child
reports JSON lines (``tilepilot.model_runtime.finetune``); here they become a progress bar with the loss.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from tilepilot.agents.backend import ensure_tiny_checkpoint
from tilepilot.agents.progress import ConsoleProgress
from tilepilot.model_runtime import server
from tilepilot.model_runtime.errors import FinetuneError

err = Console(stderr=True)


def resolve_base(base: str) -> Path:
    if base == "tiny":
        return ensure_tiny_checkpoint()
    path = Path(base).expanduser()
    if not (path / "config.json").is_file():
        raise FinetuneError(f"--base {base}: not a checkpoint folder (no config.json); give tiny or a local folder "
                            "(weights are never downloaded)")
    return path


def finetune_command(
    dataset: Annotated[Path, typer.Argument(help="A folder written by `tilepilot export`.")],
    out: Annotated[Path, typer.Option("--out", help="The checkpoint folder to write (new or empty).")],
    base: Annotated[str, typer.Option("--base", help="tiny, or a local gemma4_unified checkpoint folder.")] = "tiny",
    lora: Annotated[bool, typer.Option("--lora", help="Train LoRA adapters (PEFT) and merge them; needs tilepilot\\[finetune].")] = False,
    steps: Annotated[Optional[int], typer.Option("--steps", min=1, help="Optimizer steps, one example each (default: --epochs passes).")] = None,
    epochs: Annotated[float, typer.Option("--epochs", min=0.01, help="Passes over the set when --steps is not given.")] = 3.0,
    lr: Annotated[Optional[float], typer.Option(
        "--lr", min=0.0, help="Peak learning rate (AdamW, warm-up then linear decay). Default: 5e-3 for the tiny model "
        "(measured: bench_finetune), 2e-4 with --lora and 1e-5 without for a real checkpoint.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Example order and LoRA initialisation.")] = 0,
    force: Annotated[bool, typer.Option("--force", help="Replace a non-empty --out folder.")] = False,
) -> None:
    """Fine-tune the unified model end to end on exported runs; the result serves with `tilepilot serve start --model CKPT`."""
    cmd = [sys.executable, "-m", "tilepilot.model_runtime.finetune", str(dataset), "--base", str(resolve_base(base)),
           "--out", str(out), "--epochs", str(epochs), "--seed", str(seed)]
    cmd += ["--steps", str(steps)] if steps else []
    cmd += ["--lr", str(lr)] if lr is not None else []
    cmd += (["--lora"] if lora else []) + (["--force"] if force else [])
    env = server.serving_env()
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TRANSFORMERS_VERBOSITY="error", TQDM_DISABLE="1")
    done = _run(cmd, env)
    typer.echo(f"{done['out']}: {done['steps']} steps in {done['seconds']} s; loss on {done['probe_examples']} fixed examples "
               f"{done['probe_loss_before']} -> {done['probe_loss_after']}; prompt tokens equal to the recorded requests "
               f"in {done['prompt_tokens_matched']}/{done['prompt_tokens_checked']} examples")


def _run(cmd: list[str], env: dict[str, str]) -> dict:
    # stderr to a file, not a pipe: warnings must never fill a pipe nobody reads while stdout streams.
    with tempfile.TemporaryFile("w+") as stderr:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True)
        done = _follow(proc)
        stderr.seek(0)
        if proc.wait() != 0 or not done:
            last = (stderr.read().strip().splitlines() or [f"the trainer exited with {proc.returncode}"])[-1]
            raise FinetuneError(f"fine-tuning failed: {last}")
    return done


def _follow(proc: subprocess.Popen) -> dict:
    """Show the child's events; returns its ``done`` event (empty if it never came)."""
    assert proc.stdout is not None
    done: dict = {}
    progress = ConsoleProgress(err)
    try:
        for line in proc.stdout:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if event.get("event") == "start":
                err.print(f"{event['examples']} examples, {event['trainable']:,} of {event['parameters']:,} parameters "
                          f"trained{' (LoRA)' if event['lora'] else ''}; loss on fixed examples {event['probe_loss']}")
                progress.start("fine-tuning", event["steps"], "steps")
            elif event.get("event") == "step":
                progress.relabel(f"fine-tuning, loss {event['loss']:.3f}")
                progress.update(event["step"])
            elif event.get("event") == "done":
                done = event
    finally:
        progress.close(ok=bool(done))
    return done
