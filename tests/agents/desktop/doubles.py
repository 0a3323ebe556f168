"""A scripted stand-in for ChatClient (a ChatModel): deterministic answers, real prompt sizes, recorded requests.

Each script entry turns the geometry of the screenshot it is shown (image size, screen area)
into one action, so a test can aim at a widget's *screen* rectangle and the double answers in
*image* pixels, exactly like a model that looked at the screenshot would.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tilepilot.model_runtime.budget import image_prompt_tokens
from tilepilot.model_runtime.client import ChatResult, Usage
from tilepilot.model_runtime.payloads import ImagePart, Message, TextPart, fit_image
from tilepilot.model_runtime.profiles import ModelProfile, tiny_profile
from tilepilot.tools.actions import Action, Click
from tilepilot.tools.screen import Geometry

ScriptStep = Callable[[Geometry], Action]


def click_screen(x: int, y: int) -> ScriptStep:
    """Click the screen pixel (x, y): answer with the image pixel that shows it."""

    def step(g: Geometry) -> Action:
        u, v = g.to_image(x, y)
        return Click(x=round(u), y=round(v))

    return step


def fixed(action: Action) -> ScriptStep:
    return lambda g: action


@dataclass
class ScriptedChat:
    """Answers the script in order; after the end it keeps answering the last entry."""

    script: Sequence[ScriptStep]
    screen: tuple[int, int, int, int]  # left, top, width, height of the captured monitor
    profile: ModelProfile = field(default_factory=tiny_profile)
    requests: list[list[Message]] = field(default_factory=list)

    def count_prompt_tokens(self, messages: list[Message], image_budget: int | None = None) -> int:
        budget = image_budget or self.profile.vision.default_max_soft_tokens
        total = 0
        for message in messages:
            for part in message.parts:
                if isinstance(part, ImagePart):
                    image, grid = fit_image(part.image, budget, self.profile)
                    total += image_prompt_tokens(image.width, image.height, budget)
                elif isinstance(part, TextPart):
                    total += len(part.text) // 4 + 1
        return total + 4 * len(messages)

    def chat(self, messages: list[Message], *, schema=None, image_budget=None, **_: object) -> ChatResult:
        self.requests.append(messages)
        image = [p for p in messages[-1].parts if isinstance(p, ImagePart)][-1].image
        left, top, width, height = self.screen
        geometry = Geometry(left=left, top=top, width=width, height=height,
                            image_width=image.width, image_height=image.height)
        entry = self.script[min(len(self.requests) - 1, len(self.script) - 1)]
        action = entry(geometry)
        text = json.dumps({"thought": f"scripted step {len(self.requests) - 1}",
                           "action": action.model_dump(mode="json")}, ensure_ascii=False)
        tokens = self.count_prompt_tokens(messages, image_budget)
        result = ChatResult(text=text, usage=Usage(prompt_tokens=tokens, completion_tokens=len(text) // 4),
                            estimated_prompt_tokens=None, latency_s=0.0, base_url="scripted")
        result.parsed = schema.model_validate_json(text) if schema is not None else None
        return result

    def close(self) -> None:
        """Nothing to release (the ChatModel protocol asks for it)."""

    def images_per_request(self) -> list[int]:
        return [sum(isinstance(p, ImagePart) for m in msgs for p in m.parts) for msgs in self.requests]
