"""What the grounding and desktop suites' reference answerer shares: reading a desktop request, and frames.

The answerer sees only the ``/v1/chat/completions`` body the desktop agent sent. From it, it reads
the task line, the step number of the current screenshot and the screenshot itself (the last image),
and recognises the screen by a small grey thumbnail (its *fingerprint*) compared with those the
suite registered when it captured the screen. It answers in the frame of the image it was sent:
a screen point is mapped into that image the way the resize maps pixels (image pixel ``u`` shows
screen pixels ``[u*s, (u+1)*s)`` with ``s = screen / image``), independently of the agent's own
mapping, so a drifting mapping in tilepilot shows up as misses instead of cancelling out.
"""

from __future__ import annotations

import base64
import io
import math
import re
import threading
from pathlib import Path

from PIL import Image
from pydantic import BaseModel

from tilepilot.agents.eval.rigs.oracle import OracleReply
from tilepilot.tools.actions import Action, Point

FINGERPRINT_SIZE = (48, 30)
# Mean absolute grey difference (0..255) of two fingerprints below which they show the same screen.
# Measured: the same screen sent at any budget (JPEG, resized down to 70 tokens) <= 0.37; a 380x170
# dialog missing from a 1280x800 screen 1.06; two different grounding scenes >= 5.7.
SAME_SCREEN = 0.8

_TASK = re.compile(r"^Task: (.+)$", re.M)
_CAPTION = re.compile(r"Screenshot of step (\d+)\.")
# The agent's system prompt names the frame it wants; a 0..N normalised one maps 0 to the first
# pixel and N to the last (tilepilot.agents.desktop.frame), which the answerer computes on its own.
_NORMALIZED = re.compile(r"normalised to 0\.\.(\d+)")


def fingerprint(image: Image.Image) -> list[int]:
    """A 48x30 grey thumbnail: stable across the budgets' resizes and JPEG, different between screens."""
    return list(image.convert("L").resize(FINGERPRINT_SIZE, Image.Resampling.BOX).tobytes())


def distance(a: list[int], b: list[int]) -> float:
    return sum(abs(x - y) for x, y in zip(a, b)) / len(a)


class DesktopRequest(BaseModel):
    """What the answerer reads from one desktop request."""

    task: str
    step: int  # the number in the current screenshot's caption
    image_width: int
    image_height: int
    fingerprint: list[int]
    budget: int | None = None
    normalized_max: int | None = None  # the agent asked for 0..N normalised coordinates, not image pixels

    def in_model_frame(self, action: Action) -> Action:
        """An action in image pixels, in the frame the agent asked for."""
        if self.normalized_max is None:
            return action
        return action.map_points(self.point_in_model_frame)

    def point_in_model_frame(self, u: float, v: float) -> Point:
        """An image pixel, in the frame the agent asked for."""
        n = self.normalized_max
        if n is None:
            return round(u), round(v)
        return round(u * n / max(1, self.image_width - 1)), round(v * n / max(1, self.image_height - 1))


def _texts(message: dict) -> list[str]:
    content = message.get("content")
    if isinstance(content, str):
        return [content]
    return [p.get("text", "") for p in content or [] if p.get("type") == "text"]


def read_request(body: dict) -> DesktopRequest | None:
    """The task, step and current screenshot of a desktop request; None when it is not one."""
    messages = body.get("messages") or []
    texts = [t for m in messages if m.get("role") == "user" for t in _texts(m)]
    task = next((m.group(1).strip() for t in texts if (m := _TASK.search(t))), None)
    steps = [int(m.group(1)) for t in texts for m in _CAPTION.finditer(t)]
    images = [p["image_url"]["url"] for m in messages if isinstance(m.get("content"), list)
              for p in m["content"] if p.get("type") == "image_url"]
    if task is None or not steps or not images:
        return None
    data = base64.b64decode(images[-1].split(",", 1)[1])
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        size, print_ = image.size, fingerprint(image)
    budget = (body.get("mm_processor_kwargs") or {}).get("max_soft_tokens")
    system = " ".join(t for m in messages if m.get("role") == "system" for t in _texts(m))
    normalized = _NORMALIZED.search(system)
    return DesktopRequest(task=task, step=max(steps), image_width=size[0], image_height=size[1],
                          fingerprint=print_, budget=int(budget) if budget else None,
                          normalized_max=int(normalized.group(1)) if normalized else None)


def to_image_frame(x: float, y: float, screen: tuple[int, int], image: tuple[int, int]) -> tuple[int, int]:
    """A continuous screen point (pixel i spans [i, i + 1)) -> the image pixel that shows it."""
    def axis(v: float, size: int, image_size: int) -> int:
        u = math.floor(v * image_size / size)
        return min(max(u, 0), image_size - 1)

    return axis(x, screen[0], image[0]), axis(y, screen[1], image[1])


def action_in_image(action: Action, screen: tuple[int, int], image: tuple[int, int]) -> Action:
    """A screen-pixel action (its points at pixel centres) in the image's frame."""
    return action.map_points(lambda x, y: to_image_frame(x + 0.5, y + 0.5, screen, image))


def reply(action: Action, thought: str) -> dict:
    """The answer object in the agent's reply schema: ``{"thought", "action"}`` with every field set."""
    return {"thought": thought, "action": action.model_dump(mode="json")}


class ScreenRegistry:
    """Labelled screens the suite wrote as JSON files into one folder; reread when a screen is unknown."""

    def __init__(self, folder: Path, model: type[BaseModel]) -> None:
        self.folder, self.model = Path(folder), model
        self.entries: dict[str, BaseModel] = {}

    def path(self, key: str) -> Path:
        return self.folder / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', key)}.json"

    def add(self, key: str, entry: BaseModel) -> None:
        from tilepilot.agents.runs import write_atomic

        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.path(key)
        write_atomic(path, entry.model_dump_json())
        self.entries[path.stem] = entry

    def reload(self) -> None:
        for path in sorted(self.folder.glob("*.json")):
            if path.stem not in self.entries:
                self.entries[path.stem] = self.model.model_validate_json(path.read_text(encoding="utf-8"))


class RegistryAnswerer:
    """An answerer over a :class:`ScreenRegistry`: read the request, find its labels (rereading the folder
    once when they are unknown: the suite's worker adds screens as it captures them), answer."""

    def __init__(self, folder: Path, model: type[BaseModel]) -> None:
        self.registry = ScreenRegistry(folder, model)
        self._lock = threading.Lock()

    def find(self, request: DesktopRequest) -> BaseModel | None:
        raise NotImplementedError

    def answer(self, request: DesktopRequest, labels: BaseModel) -> OracleReply | None:
        raise NotImplementedError

    def __call__(self, body: dict) -> OracleReply | None:
        request = read_request(body)
        if request is None:
            return None
        with self._lock:
            labels = self.find(request)
            if labels is None:
                self.registry.reload()
                labels = self.find(request)
        return None if labels is None else self.answer(request, labels)
