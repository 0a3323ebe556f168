"""The prompt of one step: system rules, the task, older steps as text, recent steps as images.

Layout (roles strictly alternate, as Gemma's chat template wants)::

    system     policy prompt + how to answer (image size, coordinates)
    user       task, one text line per evicted step, screenshot of the first kept step
    assistant  that step's answer (JSON)
    user       that step's outcome, next screenshot            ... repeated ...
    user       last outcome, the current screenshot, "your next action?"

Screenshots older than the last ``K`` become one-line text, and they are evicted in blocks of
``B``: the window start only moves to multiples of ``B``, so for ``B`` steps in a row every
request extends the previous one and vLLM's prefix cache reuses everything up to the new
screenshot. Each request is counted exactly before it is sent and the window shrinks further
(block by block) until it fits the profile's input budget.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence

from PIL import Image

from tilepilot.agents.desktop.frame import ModelFrame
from tilepilot.agents.desktop.state import NO_CHANGE, StepRecord
from tilepilot.agents.errors import UsageError
from tilepilot.model_runtime.payloads import ImagePart, Message, TextPart

LINE_LIMIT = 200  # characters per history line


class StepTooLargeError(UsageError):
    """Even the current screenshot alone, with the rules and the task, is over the model's input budget."""


def window_start(n_screens: int, keep: int, block: int) -> int:
    """First step whose screenshot is still sent, for ``n_screens`` screenshots (steps 0..n-1).

    The smallest multiple of ``block`` that leaves at most ``keep`` screenshots.
    """
    if n_screens <= keep:
        return 0
    excess = n_screens - keep
    return -(-excess // block) * block


# What each action's fields mean; the prompt lists the offered ones (the schema only bounds them).
ACTION_FIELDS: dict[str, str] = {
    "click": "click {x, y, button: left|right|middle, count: 1 (2 = double click)}: at the point",
    "move": "move {x, y}: move the pointer there without clicking (hover)",
    "drag": "drag {path: [[x, y], ...] 2 to 8 points, button}: press at the first point, move through the others, "
            "release at the last",
    "scroll": "scroll {x, y, dx, dy}: wheel clicks with the pointer at (x, y), -20..20; dy > 0 scrolls up (towards "
              "the top of the page), dy < 0 scrolls down; dx > 0 scrolls right, dx < 0 left",
    "type": "type {text}: types the text where the keyboard focus is (click the field first)",
    "hotkey": "hotkey {keys: [...]}: presses the keys together, e.g. [\"ctrl\", \"s\"]",
    "key": "key {key}: presses one key; names: enter, tab, escape, backspace, delete, space, up, down, left, right, "
           "home, end, pageup, pagedown, f1..f12, ctrl, alt, shift, win, or one character",
    "wait": "wait {ms}: wait up to 5000 ms for the screen to settle",
    "done": "done {result}: the task is finished; say what you did",
    "fail": "fail {reason}: the task cannot be done; say why",
}


def instructions(frame: ModelFrame, kinds: Sequence[str]) -> str:
    fields = "\n".join(f"- {ACTION_FIELDS[k]}" for k in kinds if k in ACTION_FIELDS)
    return (
        "You control a computer through its screen. Each turn you get a screenshot and answer with "
        "exactly one action as JSON: {\"thought\": short reason, \"action\": {\"kind\": ..., fields}}.\n"
        f"{frame.explain()} Point at the centre of the element you mean.\n"
        f"Actions:\n{fields}\n"
        "An action the guard denies is not executed; you get the reason and must choose another way. "
        f"An outcome that says \"{NO_CHANGE}\" means the action had no effect: do not repeat it unchanged."
    )


def system_prompt(policy_prompt: str, frame: ModelFrame, kinds: Sequence[str]) -> str:
    """The system message of every step: the rules' guidance, then how to answer."""
    return "\n\n".join(p for p in (policy_prompt.strip(), instructions(frame, kinds)) if p)


def short_action(step: StepRecord) -> str:
    if step.action is None:
        return "(no usable answer)"
    data = step.action.model_dump(mode="json", exclude_defaults=True)
    data["kind"] = step.action.kind
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def history_line(step: StepRecord) -> str:
    line = f"step {step.step}: {short_action(step)} -> {step.outcome()}"
    return line if len(line) <= LINE_LIMIT else line[: LINE_LIMIT - 3] + "..."


def _screenshot_caption(step: int) -> str:
    # Identical when the step is current and later in the history: the prompt prefix stays put.
    return f"Screenshot of step {step}. Your next action?"


def build_messages(
    system_prompt: str,
    task: str,
    steps: Sequence[StepRecord],
    images: Mapping[int, Image.Image],
    current_image: Image.Image,
    start: int,
) -> list[Message]:
    """Messages for the current step; ``steps`` are the finished steps, ``start`` the window start."""
    current_step = len(steps)
    head = [f"Task: {task}"]
    old = [s for s in steps if s.step < start]
    if old:
        head.append("Earlier steps (screenshots dropped):")
        head.extend(history_line(s) for s in old)
    messages = [Message.text("system", system_prompt)]
    pending: list = [TextPart(text="\n".join(head))]
    for s in steps[start:] if start < current_step else []:
        pending += [ImagePart(image=images[s.step]), TextPart(text=_screenshot_caption(s.step))]
        messages.append(Message(role="user", parts=pending))
        messages.append(Message.text("assistant", s.raw_output or short_action(s)))
        pending = [TextPart(text=f"Outcome of step {s.step}: {s.outcome()}")]
    pending += [
        ImagePart(image=current_image),
        TextPart(text=_screenshot_caption(current_step)),
    ]
    messages.append(Message(role="user", parts=pending))
    return messages


def fit_messages(
    build: Callable[[int], list[Message]],
    count: Callable[[list[Message]], int],
    n_screens: int,
    keep: int,
    block: int,
    input_budget: int,
) -> tuple[list[Message], int, int]:
    """Build with the block-evicted window, shrinking it until the exact count fits.

    Returns (messages, prompt tokens, window start). Raises :class:`StepTooLargeError` when even the
    current screenshot alone does not fit.
    """
    start = window_start(n_screens, keep, block)
    while True:
        messages = build(start)
        tokens = count(messages)
        if tokens <= input_budget:
            return messages, tokens, start
        if start >= n_screens - 1:
            raise StepTooLargeError(
                f"one step needs {tokens} prompt tokens but the model allows {input_budget}: "
                "use a smaller --budget or shorter rules"
            )
        start = min(start + block, n_screens - 1)
