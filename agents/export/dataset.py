"""A fine-tuning set on disk: the JSONL that TRL's vision-language SFT reads, its media, its card.

::

    DIR/
      train.jsonl     one example per line (below)
      images/         the screenshots and pages, the very bytes the agent sent (or re-encoded as it did)
      audio/          16 kHz mono 16-bit WAV clips, as the agent sent them
      README.md       the dataset card: sources, counts, licence

One line::

    {"messages": [{"role": "system", "content": [{"type": "text", "text": ...}]},
                  {"role": "user", "content": [{"type": "text", ...}, {"type": "image"}, ...]},
                  ...,
                  {"role": "assistant", "content": [{"type": "text", "text": "<the answer JSON>"}]}],
     "images": ["images/000000-0.jpg"], "audios": [],
     "tilepilot": {"agent": "desktop", "source": "RUN#step=0", "image_budget": 1120, "prompt_tokens": 1387}}

The last assistant message is the target; everything before it is the prompt exactly as the agent
sent it (history turns included). ``{"type": "image"}`` / ``{"type": "audio"}`` parts pair in order
with ``images`` / ``audios``. ``tilepilot.image_budget`` is the soft-token budget the images were
sized for (the trainer must process them at it, or the model trains on another grid than it sees);
``tilepilot.prompt_tokens`` is the server's count of the original request.

The folder is written under a temporary name and renamed into place: an export that fails half way
leaves nothing behind.
"""

from __future__ import annotations

import base64
import json
import shutil
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Literal

from PIL import Image
from pydantic import BaseModel, ConfigDict

from tilepilot.agents.errors import RunError
from tilepilot.model_runtime.folders import folder_in_place
from tilepilot.model_runtime.payloads import AudioPart, ImagePart, Message, TextPart, encode_wav, image_bytes

DATA_NAME = "train.jsonl"
CARD_NAME = "README.md"
AgentName = Literal["desktop", "review", "listen"]
SAMPLE_RATE = 16_000


class ExportError(RunError):
    """A run folder cannot be exported (missing screenshots, corrupt findings, nothing selected)."""


class Example(BaseModel):
    """One training example: a request exactly as an agent sent it, and the answer to learn."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    agent: AgentName
    source: str  # "<run folder>#step=3", "#chunk=2", "#clip=0"
    messages: list[Message]  # the prompt, ending with the user turn the answer replies to
    target: str  # the answer, as the agent parses it (JSON text)
    image_budget: int | None = None
    prompt_tokens: int | None = None  # the server's count of the original request, where recorded
    # n-th image part -> the file in the run folder holding the very bytes that were sent; copied
    # as is (re-encoding a JPEG would change its pixels). Images without one are encoded as sent.
    image_files: dict[int, Path] = {}


class SourceSummary(BaseModel):
    run: str
    agent: str
    examples: int
    note: str = ""  # why steps were left out, the eval verdict, ...


class DatasetSummary(BaseModel):
    path: str
    examples: int
    images: int
    audios: int
    by_agent: dict[str, int]
    sources: list[SourceSummary]


def write_dataset(batches: Iterable[tuple[list[Example], SourceSummary]], out: Path, *, license: str,
                  force: bool = False, inputs: Sequence[Path] = ()) -> DatasetSummary:
    """Write each run's examples (one batch per run) into a dataset folder at ``out``, atomically.

    Batches are written as they come and then dropped, so an export of thousands of screenshots
    holds one run's images at a time, never all of them.
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise ExportError(f"--to {out}: exists and is not empty; pick a new folder or pass --force")
    with folder_in_place(out, inputs, option="--to", error=ExportError) as tmp:
        (tmp / "images").mkdir()
        (tmp / "audio").mkdir()
        n, n_images, n_audio, by_agent, sources = 0, 0, 0, Counter(), []
        with open(tmp / DATA_NAME, "w", encoding="utf-8") as lines:
            for examples, source in batches:
                sources.append(source)
                for example in examples:
                    record = _record(example, n, tmp)
                    lines.write(json.dumps(record, ensure_ascii=False) + "\n")
                    n, n_images, n_audio = n + 1, n_images + len(record["images"]), n_audio + len(record["audios"])
                    by_agent[example.agent] += 1
        if not n:
            raise ExportError("nothing to export: no accepted finding, successful desktop step or corrected clip "
                              "in the given runs")
        summary = DatasetSummary(path=str(out), examples=n, images=n_images, audios=n_audio, by_agent=dict(by_agent),
                                 sources=sources)
        (tmp / CARD_NAME).write_text(dataset_card(summary, license), encoding="utf-8")
    return summary


def answer_text(target: str) -> str:
    """A JSON answer as a constrained server emits it: compact, no free whitespace (the profiles'
    ``disable_any_whitespace``). Trained on spaced JSON, a model fights the grammar at every comma."""
    try:
        value = json.loads(target, strict=False)  # a control character inside a string is still the answer
    except ValueError:
        return target
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")) if isinstance(value, (dict, list)) else target


def _record(example: Example, n: int, folder: Path) -> dict:
    messages, images, audios = [], [], []
    for msg in [*example.messages, Message.text("assistant", answer_text(example.target))]:
        content = []
        for part in msg.parts:
            if isinstance(part, TextPart):
                content.append({"type": "text", "text": part.text})
            elif isinstance(part, ImagePart):
                images.append(_write_image(example, part, len(images), n, folder))
                content.append({"type": "image"})
            elif isinstance(part, AudioPart):
                name = f"audio/{n:06d}-{len(audios)}.wav"
                (folder / name).write_bytes(base64.b64decode(encode_wav(part.samples, SAMPLE_RATE)))
                audios.append(name)
                content.append({"type": "audio"})
        messages.append({"role": msg.role, "content": content})
    meta = {"agent": example.agent, "source": example.source, "image_budget": example.image_budget,
            "prompt_tokens": example.prompt_tokens}
    return {"messages": messages, "images": images, "audios": audios, "tilepilot": meta}


def _write_image(example: Example, part: ImagePart, index: int, n: int, folder: Path) -> str:
    source = example.image_files.get(index)
    suffix = source.suffix.lower() if source is not None else (".png" if part.format == "png" else ".jpg")
    name = f"images/{n:06d}-{index}{suffix}"
    if source is not None:
        shutil.copyfile(source, folder / name)
    else:
        (folder / name).write_bytes(image_bytes(part.image, part.format))
    return name


def dataset_card(summary: DatasetSummary, license: str) -> str:
    """A Hugging Face style card: YAML front matter, then what is in the set and where it came from."""
    rows = "\n".join(f"| `{s.run}` | {s.agent} | {s.examples} | {s.note} |" for s in summary.sources)
    agents = ", ".join(f"{k}: {v}" for k, v in sorted(summary.by_agent.items()))
    return f"""---
license: {license}
task_categories:
- image-text-to-text
configs:
- config_name: default
  data_files:
  - split: train
    path: {DATA_NAME}
tags:
- tilepilot
- gemma4_unified
---

# tilepilot fine-tuning set

Exported by `tilepilot export` from {len(summary.sources)} run folder(s): {summary.examples} examples
({agents}), {summary.images} images, {summary.audios} audio clips.

Each line of `{DATA_NAME}` is one model request exactly as the agent sent it (same image sizes,
same audio clip bounds, history turns included) and, as the last assistant message, the answer to
learn. `tilepilot.image_budget` is the image budget the request used; train at that budget.

## Licence

`{license}`. The screenshots, pages and recordings are the user's own material: whoever shares this
set must hold the rights to every source below.

## Sources

| run | agent | examples | note |
|---|---|---|---|
{rows}
"""


# -- reading back ----------------------------------------------------------------------------------


class LoadedExample(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    messages: list[Message]  # the prompt
    target: str
    meta: dict


def load_dataset(folder: Path) -> Iterator[LoadedExample]:
    """The examples of a dataset folder as typed messages (images and clips loaded from their files)."""
    import soundfile as sf

    folder = Path(folder)
    path = folder / DATA_NAME
    if not path.is_file():
        raise ExportError(f"{folder}: no {DATA_NAME}; pass a folder written by `tilepilot export`")
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        images, audios = iter(record["images"]), iter(record["audios"])
        messages = []
        for msg in record["messages"]:
            parts: list = []
            for part in msg["content"]:
                if part["type"] == "text":
                    parts.append(TextPart(text=part["text"]))
                elif part["type"] == "image":
                    with Image.open(folder / next(images)) as im:
                        parts.append(ImagePart(image=im.convert("RGB")))
                else:
                    samples, _ = sf.read(folder / next(audios), dtype="float32")
                    parts.append(AudioPart(samples=samples))
            messages.append(Message(role=msg["role"], parts=parts))
        target = messages.pop()
        yield LoadedExample(messages=messages, target="".join(p.text for p in target.parts if isinstance(p, TextPart)),
                            meta=record["tilepilot"])
