"""What a listen run keeps: its options (the manifest) and, per input, transcript.txt and transcript.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from pydantic import BaseModel

from tilepilot.agents.listen.agent import DEFAULT_WORKERS, ListenResult, Task
from tilepilot.agents.runs import write_atomic


def write_outputs(result: ListenResult, folder: Path, model: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    body = result.text + "\n"
    if result.summary is not None:
        body += f"\n## Summary\n\n{result.summary}\n"
    if result.answer is not None:
        body += f"\n## Question\n\n{result.question}\n\n## Answer\n\n{result.answer}\n"
    write_atomic(folder / "transcript.txt", body)
    payload = {"source": str(result.source), "model": model, **result.model_dump(mode="json", exclude={"source"})}
    write_atomic(folder / "transcript.json", json.dumps(payload, indent=2, ensure_ascii=False) + "\n")


def output_folders(run_dir: Path, sources: list[Path]) -> list[Path]:
    if len(sources) == 1:
        return [run_dir]
    return [run_dir / f"{i + 1}-{src.stem}" for i, src in enumerate(sources)]


class ListenOptions(BaseModel):
    """What a listen run was started with (its manifest; ``--resume`` reads it back)."""

    files: list[str]
    task: Task = "transcribe"
    question: Optional[str] = None
    rules: list[str] = []
    workers: int = DEFAULT_WORKERS
    model: str = "tiny"
    max_runtime_s: Optional[float] = None
