"""The listen graph (LangGraph): plan a batch of clips -> transcribe each (parallel) -> ... -> merge -> condense.

::

    plan_batch ─┬─ clips left ─> transcribe_clip × batch (Send, parallel) ─> plan_batch
                └─ stream done ─> merge ─┬─> condense ─> END   (summarize, ask)
                                         └─> END              (transcribe)

State holds only small values (clip spans, finished clip transcripts, the text), never samples:
the clips are cut from the stream as it decodes (:class:`ClipFeed`) and only the current batch's
samples are held, in the context. Each clip is one ``Send`` task, and LangGraph stores each
finished task's writes at once, so a killed run resumes with only the clips it had not finished:
no clip is sent twice. The runner pauses after each ``plan_batch`` (``Run.drive``) to keep only
the newest checkpoint.

The graph knows nothing of the agent: the context hands it the two model steps as functions
(:class:`ListenContext`), and :mod:`tilepilot.agents.listen.agent` builds and drives it.
"""

from __future__ import annotations

import operator
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any, TypedDict

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Send
from pydantic import BaseModel

from tilepilot.agents.errors import RunError
from tilepilot.agents.listen.merge import merge_transcripts
from tilepilot.agents.listen.stream import plan_clips
from tilepilot.agents.runs import Deadline
from tilepilot.tools.audio import SAMPLE_RATE, Clip, iter_blocks


class ClipTranscript(BaseModel):
    """What one clip cost and what the model heard in it. Times are seconds of the input."""

    index: int
    start_s: float
    end_s: float
    text: str
    prompt_tokens: int
    estimated_prompt_tokens: int | None
    completion_tokens: int
    latency_s: float


class ClipSpan(TypedDict):
    """Where one clip lies in the input (its samples stay out of the checkpoint); a ``Send`` to transcribe_clip."""

    index: int
    start_sample: int
    end_sample: int


class ListenState(TypedDict, total=False):
    source: str
    next_clip: int  # index of the first clip not yet planned into a batch
    batch: list[ClipSpan]  # the current batch
    clips: Annotated[list[dict], operator.add]  # finished ClipTranscript, in completion order
    total_samples: int
    stream_done: bool
    text: str
    output: str | None
    condense_requests: int


class ClipFeed:
    """The input's clips in order, cut once from the decoding stream; holds only the clips asked for."""

    def __init__(self, clips: Iterable[Clip]) -> None:
        self._clips = iter(clips)
        self._held: dict[int, Clip] = {}
        self._lock = threading.Lock()
        self.total_samples = 0
        self.exhausted = False

    @classmethod
    def of_file(cls, source: str, max_clip_samples: int, overlap_samples: int) -> "ClipFeed":
        return cls(plan_clips(iter_blocks(source), max_clip_samples=max_clip_samples, overlap_samples=overlap_samples))

    def take(self, first: int, count: int) -> list[Clip]:
        """Hold and return clips ``first .. first+count-1`` (fewer at the end); earlier ones are skipped."""
        return self.hold(range(first, first + count))

    def hold(self, indices: Iterable[int]) -> list[Clip]:
        wanted = sorted(set(indices))
        with self._lock:
            self._held = {i: c for i, c in self._held.items() if i in wanted}
            while wanted and not self.exhausted and max(wanted) not in self._held:
                clip = next(self._clips, None)
                if clip is None:
                    self.exhausted = True
                    break
                self.total_samples = clip.end_sample
                if clip.index in wanted:
                    self._held[clip.index] = clip
            return [self._held[i] for i in wanted if i in self._held]

    def clip(self, index: int) -> Clip:
        with self._lock:
            return self._held.pop(index)

    def finish(self) -> int:
        """Read to the end (a resumed run may have skipped it all); returns the input's length in samples."""
        with self._lock:
            for clip in self._clips:
                self.total_samples = clip.end_sample
            self.exhausted = True
            return self.total_samples


@dataclass
class ListenContext:
    """Runtime context of one input's graph run: not checkpointed.

    ``transcribe`` sends one clip to the model; ``condense`` turns the merged transcript into the summary
    or answer of ``task`` and says how many requests that took.
    """

    transcribe: Callable[[Clip], ClipTranscript]
    condense: Callable[[str], tuple[str, int]]
    feed: ClipFeed
    task: str
    batch_size: int
    deadline: Deadline = field(default_factory=Deadline)
    on_progress: Callable[[float], None] = lambda seconds: None
    # The worker count is enforced here, not with LangGraph's max_concurrency, which also sizes
    # the pool that saves finished tasks' writes (they must not queue behind running clips).
    slots: threading.BoundedSemaphore = field(default_factory=lambda: threading.BoundedSemaphore(4))


def plan_batch(state: ListenState, runtime: Runtime[ListenContext]) -> dict:
    ctx = runtime.context
    ctx.deadline.check()
    first = state.get("next_clip", 0)
    clips = ctx.feed.take(first, ctx.batch_size)
    if not clips:
        return {"batch": [], "stream_done": True, "total_samples": ctx.feed.finish()}
    spans = [ClipSpan(index=c.index, start_sample=c.start_sample, end_sample=c.end_sample) for c in clips]
    return {"batch": spans, "next_clip": clips[-1].index + 1}


def fan_out(state: ListenState) -> Any:
    if state.get("stream_done"):
        return "merge"
    done = {c["index"] for c in state.get("clips", [])}
    return [Send("transcribe_clip", span) for span in state.get("batch", []) if span["index"] not in done] or "plan_batch"


def transcribe_clip(state: ClipSpan, runtime: Runtime[ListenContext]) -> dict:
    """One clip of the batch: its input is the span that fan_out sent (LangGraph names every node's input ``state``)."""
    ctx = runtime.context
    with ctx.slots:
        ctx.deadline.check()  # unfinished clips stay pending in the checkpoint for --resume
        clip = ctx.feed.clip(state["index"])
        transcript = ctx.transcribe(clip)
    ctx.on_progress(transcript.end_s)
    return {"clips": [transcript.model_dump()]}


def merge(state: ListenState) -> dict:
    clips = sorted(state.get("clips", []), key=lambda c: c["index"])
    return {"text": merge_transcripts([c["text"] for c in clips])}


def after_merge(state: ListenState, runtime: Runtime[ListenContext]) -> str:
    return "condense" if runtime.context.task != "transcribe" else END


def condense(state: ListenState, runtime: Runtime[ListenContext]) -> dict:
    ctx = runtime.context
    text = state.get("text")
    if text is None:  # merge always writes it first: only a damaged checkpoint lacks it
        raise RunError("the run's checkpoint has no merged transcript to condense; start the run again")
    output, requests = ctx.condense(text)
    return {"output": output, "condense_requests": requests}


def build_graph(checkpointer: BaseCheckpointSaver):
    graph = StateGraph(ListenState, context_schema=ListenContext)
    graph.add_node("plan_batch", plan_batch)
    graph.add_node("transcribe_clip", transcribe_clip)
    graph.add_node("merge", merge)
    graph.add_node("condense", condense)
    graph.add_edge(START, "plan_batch")
    graph.add_conditional_edges("plan_batch", fan_out, ["transcribe_clip", "plan_batch", "merge"])
    graph.add_edge("transcribe_clip", "plan_batch")
    graph.add_conditional_edges("merge", after_merge, ["condense", END])
    graph.add_edge("condense", END)
    return graph.compile(checkpointer=checkpointer)


def duration_s(state: ListenState) -> float:
    return state.get("total_samples", 0) / SAMPLE_RATE
