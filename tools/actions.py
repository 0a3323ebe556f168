"""The one action vocabulary shared by the model, the guard and the UI executor.

An :data:`Action` is a pydantic discriminated union on ``kind``. The same models carry
coordinates in *image* space (what the model saw) or *screen* space (what the executor
clicks); ``Action.map_points`` converts one into the other, so the mapping lives in exactly one
place (the caller supplies the function, usually ``tilepilot.tools.screen.Geometry.to_screen``).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Callable, Literal, Self, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


class ActionKind(StrEnum):
    CLICK = "click"
    MOVE = "move"
    DRAG = "drag"
    SCROLL = "scroll"
    TYPE = "type"
    HOTKEY = "hotkey"
    KEY = "key"
    WAIT = "wait"
    DONE = "done"
    FAIL = "fail"


Point = tuple[int, int]
PointMapper = Callable[[float, float], tuple[int, int]]


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def points(self) -> list[Point]:
        """Every coordinate this action touches (empty for keyboard/terminal actions)."""
        return []

    def map_points(self, fn: PointMapper) -> Self:
        return self  # no coordinates


class Click(_Base):
    kind: Literal["click"] = "click"
    x: int
    y: int
    button: Literal["left", "right", "middle"] = "left"
    count: int = Field(default=1, ge=1, le=3)

    def points(self) -> list[Point]:
        return [(self.x, self.y)]

    def map_points(self, fn: PointMapper) -> "Click":
        x, y = fn(self.x, self.y)
        return self.model_copy(update={"x": x, "y": y})


class Move(_Base):
    kind: Literal["move"] = "move"
    x: int
    y: int

    def points(self) -> list[Point]:
        return [(self.x, self.y)]

    def map_points(self, fn: PointMapper) -> "Move":
        x, y = fn(self.x, self.y)
        return self.model_copy(update={"x": x, "y": y})


class Drag(_Base):
    kind: Literal["drag"] = "drag"
    path: list[Point] = Field(min_length=2, max_length=64)
    button: Literal["left", "right", "middle"] = "left"

    def points(self) -> list[Point]:
        return list(self.path)

    def map_points(self, fn: PointMapper) -> "Drag":
        return self.model_copy(update={"path": [fn(x, y) for x, y in self.path]})


class Scroll(_Base):
    kind: Literal["scroll"] = "scroll"
    x: int
    y: int
    dx: int = 0
    dy: int = 0  # positive = scroll up / away from the user, as pyautogui

    def points(self) -> list[Point]:
        return [(self.x, self.y)]

    def map_points(self, fn: PointMapper) -> "Scroll":
        x, y = fn(self.x, self.y)
        return self.model_copy(update={"x": x, "y": y})


class Type(_Base):
    kind: Literal["type"] = "type"
    text: str = Field(max_length=2000)


class Hotkey(_Base):
    kind: Literal["hotkey"] = "hotkey"
    keys: list[str] = Field(min_length=1, max_length=5)


class Key(_Base):
    kind: Literal["key"] = "key"
    key: str


class Wait(_Base):
    kind: Literal["wait"] = "wait"
    ms: int = Field(ge=0, le=60_000)


class Done(_Base):
    kind: Literal["done"] = "done"
    result: str = ""


class Fail(_Base):
    kind: Literal["fail"] = "fail"
    reason: str = ""


Action = Annotated[
    Union[Click, Move, Drag, Scroll, Type, Hotkey, Key, Wait, Done, Fail],
    Field(discriminator="kind"),
]
ACTION_ADAPTER: TypeAdapter[Action] = TypeAdapter(Action)


def parse_action(data: object) -> Action:
    return ACTION_ADAPTER.validate_python(data)
