"""The desktop agent's LangGraph graph: observe -> decide -> guard -> (confirm) -> act -> record.

::

    observe ─> decide ─> guard ─┬─ allow ───────────────> act ─> record ─┬─> observe
                                ├─ confirm ─> confirm ─┬─> act           └─> END (status set)
                                │   (interrupt)        └─ not approved ─> record
                                └─ deny / invalid / done / fail ───────> record

A denied or invalid action is not executed; ``record`` stores it and its reason becomes the
outcome line the model reads next step. Confirmation is a LangGraph ``interrupt``: the runner
resumes it with the human's answer (``--yes``, a TTY prompt, or False when nobody can answer).

The nodes are module-level functions of the typed state (:class:`DesktopState`) and the run's
context (:class:`DesktopContext`, never checkpointed), as in the review graph, so each can be
imported and tested on its own.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import interrupt
from PIL import Image

from tilepilot.agents.desktop.actions import check_model_action, reply_schema, to_screen
from tilepilot.agents.desktop.history import build_messages, fit_messages, system_prompt, window_start
from tilepilot.agents.desktop.screen_texts import ScreenTextProvider
from tilepilot.agents.desktop.secrets import mask_record, what_it_sends
from tilepilot.agents.desktop.state import (
    ConfirmRequest, DesktopOptions, DesktopState, GuardRecord, StepRecord, Timings, Usage,
)
from tilepilot.agents.desktop.trajectory import TrajectoryWriter
from tilepilot.agents.desktop.verify import compare, stuck_reason, thumbnail
from tilepilot.agents.rules import AuditLog, GuardContext, Policy, ScreenBounds, guard
from tilepilot.agents.rules.guard import types_secret
from tilepilot.agents.runs import Deadline
from tilepilot.model_runtime.budget import image_grid, native_budget
from tilepilot.model_runtime.chat_model import ChatModel
from tilepilot.model_runtime.errors import InvalidOutputError
from tilepilot.model_runtime.payloads import Message
from tilepilot.tools.actions import Click, Done, Fail, Type
from tilepilot.tools.errors import FailSafeTriggered, UIActionError
from tilepilot.tools.screen import Capture
from tilepilot.tools.ui import ActionRecord


class CaptureSource(Protocol):
    def capture_monitor(self, index: int = 1) -> Capture: ...


class ActionExecutor(Protocol):
    def execute(self, action: Any) -> ActionRecord: ...


@dataclass
class DesktopContext:
    """The live objects a run needs; never checkpointed."""

    client: ChatModel
    policy: Policy
    options: DesktopOptions
    screen: CaptureSource
    executor: ActionExecutor
    texts: ScreenTextProvider
    writer: TrajectoryWriter
    audit: AuditLog
    max_steps: int
    deadline: Deadline = field(default_factory=Deadline)
    # Text typed into a password field, by step: only here, never in the checkpointed state.
    secrets: dict[int, str] = field(default_factory=dict)
    images: dict[int, Image.Image] = field(default_factory=dict)
    thumbs: dict[int, Image.Image] = field(default_factory=dict)  # tilepilot.agents.desktop.verify's copies
    sleep: Callable[[float], None] = time.sleep

    def image(self, step: int) -> Image.Image:
        """The screenshot of ``step`` as sent before (same pixels -> same bytes -> cache hit)."""
        if step not in self.images:  # a resumed run: earlier steps' screenshots come from the run folder
            with Image.open(self.writer.run_dir / self.writer.screenshot_name(step)) as im:
                self.images[step] = im.convert("RGB")
        return self.images[step]

    def thumb(self, step: int) -> Image.Image:
        if step not in self.thumbs:
            self.thumbs[step] = thumbnail(self.image(step))
        return self.thumbs[step]

    def forget_images_before(self, step: int) -> None:
        for old in [s for s in self.images if s < step]:
            del self.images[old]
        for old in [s for s in self.thumbs if s < step - 1]:  # the previous step's copy is compared next
            del self.thumbs[old]


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 2)


def _with(record: StepRecord, **changes: Any) -> StepRecord:
    return record.model_copy(update=changes)


def observe(state: DesktopState, runtime: Runtime[DesktopContext]) -> dict:
    ctx, opts = runtime.context, runtime.context.options
    if ctx.deadline.expired():
        return {"status": "deadline", "stop_reason": ctx.deadline.message()}
    started = time.perf_counter()
    capture = ctx.screen.capture_monitor(opts.monitor)
    vision = ctx.client.profile.vision
    budget = native_budget(*capture.image.size, vision) if opts.budget == "auto" else opts.budget
    grid = image_grid(capture.image.width, capture.image.height, budget, vision)
    capture = capture.resized_to(grid.width, grid.height)
    update: dict[str, Any] = verify_previous(state, ctx, thumbnail(capture.image))
    if update.get("status"):
        return update
    ctx.images[state.step] = capture.image
    ctx.forget_images_before(window_start(state.step + 1, opts.history_images, opts.eviction_block))
    info = ctx.texts.read()
    capture_ms = _ms(started)
    name = ctx.writer.save_screenshot(state.step, capture.image)
    current = StepRecord(
        step=state.step, started_at=time.time(), screenshot=name, geometry=capture.geometry, budget=budget,
        coordinates=ctx.client.profile.coordinates,
        window_title=info.window_title, screen_texts=info.texts, timings=Timings(capture_ms=capture_ms),
    )
    return {**update, "current": current}


def verify_previous(state: DesktopState, ctx: DesktopContext, thumb: Image.Image) -> dict[str, Any]:
    """Compare the new screenshot with the one the last executed action was decided on.

    Marks that step ``screen_changed`` (its outcome line then tells the model), and stops the
    run as ``stuck`` after the same action changed nothing several times in a row. A step
    already marked (a resumed run) is left alone, so a human's resume gets a fresh try.
    """
    ctx.thumbs[state.step] = thumb
    last = state.steps[-1] if state.steps else None
    if last is None or not last.executed or last.screen_changed is not None or last.step != state.step - 1:
        return {}
    change = compare(ctx.thumb(last.step), thumb)
    last = _with(last, screen_changed=change.changed)
    steps = [*state.steps[:-1], last]
    ctx.writer.verified(last, change.model_dump())
    reason = stuck_reason(steps)
    return {"steps": steps, **({"status": "stuck", "stop_reason": reason} if reason else {})}


def decide(state: DesktopState, runtime: Runtime[DesktopContext]) -> dict:
    ctx, opts = runtime.context, runtime.context.options
    cur = state.current
    assert cur is not None
    started = time.perf_counter()
    budget, profile = cur.budget, ctx.client.profile
    frame = cur.frame
    system = system_prompt(ctx.policy.prompt, frame, opts.kinds)

    def build(start: int) -> list[Message]:
        images = {s: ctx.image(s) for s in range(start, cur.step)}
        return build_messages(system, state.task, state.steps, images, ctx.image(cur.step), start)

    messages, counted, start = fit_messages(  # StepTooLargeError (a UsageError) when one screenshot is too much
        build, lambda m: ctx.client.count_prompt_tokens(m, image_budget=budget), cur.step + 1,
        opts.history_images, opts.eviction_block, profile.input_budget,
    )
    schema = reply_schema(frame, opts.kinds)
    model_started = time.perf_counter()
    try:
        result = ctx.client.chat(
            messages, schema=schema, temperature=opts.temperature, max_tokens=opts.max_tokens,
            image_budget=budget, estimate=False,
        )
        reply = result.parsed
        if reply is None:  # chat() with a schema parses the answer or raises: a client that did neither
            raise InvalidOutputError("the client returned no parsed answer")
    except InvalidOutputError as err:
        timings = cur.timings.model_copy(update={"decide_ms": _ms(started), "model_ms": _ms(model_started)})
        return {"current": _with(cur, invalid=f"the answer did not match the action schema ({err})", timings=timings)}
    usage = Usage(
        prompt_tokens=result.usage.prompt_tokens, completion_tokens=result.usage.completion_tokens,
        counted_prompt_tokens=counted, input_budget=profile.input_budget,
        images=cur.step + 1 - start, attempts=result.attempts,
    )
    action = reply.action
    invalid = check_model_action(action, frame, opts.kinds)
    update: dict[str, Any] = {
        "thought": reply.thought, "raw_output": result.text, "action": action, "usage": usage,
        "model_xy": action.points(), "invalid": invalid,
    }
    if invalid is None:
        screen_action = to_screen(action, frame)
        update.update(screen_action=screen_action, screen_xy=screen_action.points())
        if types_secret(screen_action, guard_context(state, cur)):
            assert isinstance(screen_action, Type)
            ctx.secrets[cur.step] = screen_action.text
            update = mask_record(update, screen_action.text) | {"secret": True}
    update["timings"] = cur.timings.model_copy(update={"decide_ms": _ms(started), "model_ms": _ms(model_started)})
    return {"current": _with(cur, **update)}


def check(state: DesktopState, runtime: Runtime[DesktopContext]) -> dict:
    """The guard node: the rules decide allow, confirm or deny, and the audit log says why."""
    ctx = runtime.context
    cur = state.current
    assert cur is not None
    if cur.invalid or cur.screen_action is None:
        return {}
    started = time.perf_counter()
    decision = guard(cur.screen_action, guard_context(state, cur), ctx.policy)
    ctx.audit.record(cur.screen_action, decision, cur.step)
    record = GuardRecord(
        verdict=decision.verdict, reason=decision.reason, rule_file=decision.rule_file,
        rule_key=decision.rule_key, rule_line=decision.rule_line, widget=decision.widget, widget_box=decision.widget_box,
    )
    update: dict[str, Any] = {"current": _with(cur, guard=record, timings=cur.timings.model_copy(update={"guard_ms": _ms(started)}))}
    if isinstance(cur.screen_action, (Done, Fail)):
        reason = cur.screen_action.result if isinstance(cur.screen_action, Done) else cur.screen_action.reason
        update.update(status=cur.screen_action.kind, stop_reason=reason)
    return update


def guard_context(state: DesktopState, cur: StepRecord) -> GuardContext:
    geo = cur.geometry
    return GuardContext(
        agent="desktop",
        screen=ScreenBounds(left=geo.left, top=geo.top, width=geo.width, height=geo.height),
        screen_texts=cur.screen_texts, window_title=cur.window_title,
        focus_point=state.focus_point, step=cur.step,
    )


def confirm(state: DesktopState, runtime: Runtime[DesktopContext]) -> dict:
    cur = state.current
    assert cur is not None and cur.guard is not None and cur.screen_action is not None and cur.action is not None
    if runtime.context.options.dry_run:  # nothing will execute, so there is nothing to approve
        return {"current": _with(cur, guard=cur.guard.model_copy(update={"approved": None}))}
    request = ConfirmRequest(
        step=cur.step, action=cur.screen_action, model_action=cur.action, reason=cur.guard.reason,
        rule_file=cur.guard.rule_file, screenshot=cur.screenshot, sends=what_it_sends(cur.screen_action),
    )
    approved = bool(interrupt(request.model_dump(mode="json")))
    update: dict[str, Any] = {"current": _with(cur, guard=cur.guard.model_copy(update={"approved": approved}))}
    if not approved:
        update.update(status="denied", stop_reason=f"step {cur.step} needs confirmation ({cur.guard.reason}) and was not approved")
    return update


def act(state: DesktopState, runtime: Runtime[DesktopContext]) -> dict:
    ctx = runtime.context
    cur = state.current
    assert cur is not None and cur.screen_action is not None
    started = time.perf_counter()
    update: dict[str, Any] = {}
    action = cur.screen_action
    if cur.secret:  # the record holds the masked text; the real one lives only in this run's memory
        real = ctx.secrets.pop(cur.step, None)
        if real is None:
            result = "error: the text for the password field was not kept across the resume: ask for it again"
            return {"current": _with(cur, executed=False, result=result)}
        action = Type(text=real)
    try:
        done = ctx.executor.execute(action)
        executed, result = not done.dry_run, done.detail
        if done.closed_popups:  # an auto-complete list would have taken this click (tilepilot.tools.popups)
            ctx.writer.emit("popup_closed", step=cur.step, before=cur.screen_action.kind, boxes=done.closed_popups)
    except FailSafeTriggered as err:
        executed, result = False, str(err)
        update.update(status="stopped", stop_reason=str(err))
    except UIActionError as err:
        executed, result = False, f"error: {err}"
    if executed and ctx.options.settle_ms:  # settle_ms=0 turns all settling off (scripted screens in tests)
        ctx.sleep(ctx.options.settle_ms / 1000)
        wait_until_settled(ctx)
    if isinstance(cur.screen_action, Click) and not update.get("status"):
        update["focus_point"] = (cur.screen_action.x, cur.screen_action.y)
    timings = cur.timings.model_copy(update={"act_ms": _ms(started)})
    update["current"] = _with(cur, executed=executed, result=result, timings=timings)
    return update


SETTLE_POLL_MS = 120


def wait_until_settled(ctx: DesktopContext) -> None:
    """Poll the screen until two captures SETTLE_POLL_MS apart look the same (by the verify
    thumbnails), for at most ``settle_max_ms``: the next screenshot then shows the action's effect,
    not a frame of a redraw or of work still going on. Bounded, so an animation never stalls a run."""
    limit = ctx.options.settle_max_ms / 1000
    if limit <= 0:
        return
    deadline = time.monotonic() + limit
    before = thumbnail(ctx.screen.capture_monitor(ctx.options.monitor).image)
    while time.monotonic() < deadline:
        ctx.sleep(SETTLE_POLL_MS / 1000)
        after = thumbnail(ctx.screen.capture_monitor(ctx.options.monitor).image)
        if not compare(before, after).changed:
            return
        before = after


def record(state: DesktopState, runtime: Runtime[DesktopContext]) -> dict:
    ctx = runtime.context
    cur = state.current
    assert cur is not None
    total = round((time.time() - cur.started_at) * 1000, 2)
    cur = _with(cur, timings=cur.timings.model_copy(update={"total_ms": total}))
    ctx.writer.add_step(cur)
    update: dict[str, Any] = {"steps": [*state.steps, cur], "current": None, "step": cur.step + 1}
    if state.status is None and cur.step + 1 >= ctx.max_steps:
        update.update(status="max_steps", stop_reason=f"reached the step limit ({ctx.max_steps})")
    return update


def after_observe(state: DesktopState) -> str:
    return END if state.status else "decide"


def after_guard(state: DesktopState) -> str:
    cur = state.current
    if cur is None or cur.guard is None or state.status:
        return "record"
    return {"allow": "act", "confirm": "confirm", "deny": "record"}[cur.guard.verdict]


def after_confirm(state: DesktopState) -> str:
    return "record" if state.status else "act"


def after_record(state: DesktopState) -> str:
    return END if state.status else "observe"


def build_graph() -> StateGraph[DesktopState, DesktopContext, DesktopState, DesktopState]:
    graph = StateGraph(DesktopState, context_schema=DesktopContext)
    for name, node in (("observe", observe), ("decide", decide), ("guard", check), ("confirm", confirm), ("act", act),
                       ("record", record)):
        graph.add_node(name, node)
    graph.add_edge(START, "observe")
    graph.add_conditional_edges("observe", after_observe, ["decide", END])
    graph.add_edge("decide", "guard")
    graph.add_conditional_edges("guard", after_guard, ["act", "confirm", "record"])
    graph.add_conditional_edges("confirm", after_confirm, ["act", "record"])
    graph.add_edge("act", "record")
    graph.add_conditional_edges("record", after_record, ["observe", END])
    return graph
