"""The listen agent: audio -> clips of <= 30 s cut at silences -> model -> transcript, summary or answer.

The model hears raw 16 kHz samples (one token per 640), at most 750 tokens per clip. The file is
streamed (:func:`tilepilot.tools.audio.iter_blocks`) and cut into overlapping clips as it decodes
(:func:`tilepilot.agents.listen.stream.plan_clips`), so an hour of audio never sits in memory. Clips go to
the server in parallel, a bounded number in flight; their transcripts are joined with the overlap
said once (:mod:`tilepilot.agents.listen.merge`). Summaries and answers are one more text request over the
transcript, or a map-reduce over parts of it when it does not fit the prompt budget.

The steps run as a LangGraph graph (:mod:`tilepilot.agents.listen.graph`) checkpointed into the run folder
(:class:`tilepilot.agents.runs.Run`), like every tilepilot agent: a killed run resumes without sending any
finished clip again. That graph is the agent's one pipeline; it gets the model steps below as functions.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal, TypeGuard

from pydantic import BaseModel

from tilepilot.agents.errors import RunError, UsageError
from tilepilot.agents.listen.graph import ClipFeed, ClipTranscript, ListenContext, build_graph, duration_s
from tilepilot.agents.rules import Policy
from tilepilot.agents.runs import Deadline, EventLog, ProbedModel, Run
from tilepilot.model_runtime.chat_model import ChatModel
from tilepilot.model_runtime.payloads import AudioPart, Message, TextPart
from tilepilot.model_runtime.probe import requests_in_flight
from tilepilot.model_runtime.profiles import AudioSpec
from tilepilot.tools.audio import SAMPLE_RATE, Clip

__all__ = ["ClipTranscript", "ListenAgent", "ListenResult", "clip_messages", "clip_sizes"]

Task = Literal["transcribe", "summarize", "ask"]
TASKS: tuple[str, ...] = ("transcribe", "summarize", "ask")


def is_task(name: str) -> TypeGuard[Task]:
    return name in TASKS

TRANSCRIPT_TOKENS_PER_S = 9
OVERLAP_S = 1.0  # enough to hold a word cut at the seam; each is transcribed twice, then merged once
DEFAULT_WORKERS = 4
MAX_REDUCE_LEVELS = 6
FINAL_MAX_TOKENS = 512

TRANSCRIBE_INSTRUCTION = "Transcribe this audio clip. Write only the words that are spoken, in order, with no commentary."
SUMMARY_INSTRUCTION = ("Summarize this transcript of a recording in a few sentences. Keep names, numbers, decisions "
                       "and action items.")
PART_SUMMARY_INSTRUCTION = ("This is part {part} of {parts} of a transcript of one recording. Summarize this part in "
                            "a few sentences. Keep names, numbers, decisions and action items.")
ASK_INSTRUCTION = "Answer the question using only this transcript of a recording. If it does not say, answer so."
PART_ASK_INSTRUCTION = ("This is part {part} of {parts} of a transcript of one recording. Write down everything in "
                        "this part that helps answer the question, or 'nothing relevant'.")


def clip_sizes(spec: AudioSpec, overlap_s: float = OVERLAP_S) -> tuple[int, int]:
    """(longest clip, overlap) in samples for a model's audio spec; the overlap is whole tokens."""
    return spec.max_clip_samples, round(overlap_s * SAMPLE_RATE / spec.samples_per_token) * spec.samples_per_token


def with_system(rules_prompt: str, parts: list) -> list[Message]:
    """A request: the rules' prose as the system message (when there is any), then ``parts`` as the user turn."""
    user = Message(role="user", parts=parts)
    return [Message.text("system", rules_prompt), user] if rules_prompt.strip() else [user]


def clip_messages(rules_prompt: str, clip: Clip) -> list[Message]:
    """The transcription request of one clip (the same for every --task: clips are always transcribed)."""
    return with_system(rules_prompt, [AudioPart(samples=clip.samples), TextPart(text=TRANSCRIBE_INSTRUCTION)])


class ListenResult(BaseModel):
    source: Path
    task: str
    question: str | None = None
    duration_s: float
    clips: list[ClipTranscript]
    text: str
    summary: str | None = None
    answer: str | None = None
    condense_requests: int = 0  # text requests for summary/answer (1 unless it went hierarchical)


ProgressFn = Callable[[float], None]  # called with the seconds of audio transcribed so far


class ListenAgent:
    """Transcribes, summarises or answers questions about audio files with one model server."""

    def __init__(self, client: ChatModel, policy: Policy, *, workers: int = DEFAULT_WORKERS,
                 overlap_s: float = OVERLAP_S, events: EventLog | None = None, deadline: Deadline | None = None) -> None:
        if workers < 1:
            raise UsageError(f"--workers must be at least 1, got {workers}")
        self.client = client
        self.policy = policy
        self.max_clip_samples, self.overlap_samples = clip_sizes(client.profile.audio, overlap_s)
        self.events = events
        limit = policy.limit("max_prompt_tokens")
        # The prompt budget of text requests; audio clips cost a fixed ~780 tokens at most.
        self.text_budget = int(min(client.profile.input_budget, limit or client.profile.input_budget))
        # Never more clips in flight than the server holds requests at once (its slots or KV pool).
        caps = client.capabilities if isinstance(client, ProbedModel) else None
        held = requests_in_flight(caps, self.text_budget) if caps is not None else None
        self.workers_wanted, self.workers = workers, min(workers, held or workers)
        self.deadline = deadline or Deadline.of(None, policy.limit("max_runtime_s"))

    # -- public ---------------------------------------------------------------------------------

    def run(self, source: Path, run: Run | Path, task: Task = "transcribe", question: str | None = None,
            on_progress: ProgressFn | None = None, thread_id: str = "0") -> ListenResult:
        """Transcribe ``source`` (and summarise or answer) as a checkpointed LangGraph run.

        ``run`` is the :class:`Run` (whose deadline then applies), or a folder to checkpoint into.
        A thread that a killed run left unfinished is continued, never restarted.
        """
        if task not in TASKS:
            raise UsageError(f"--task must be one of {', '.join(TASKS)}, got {task!r}")
        if (task == "ask") != bool(question):
            raise UsageError("--task ask needs a question (--question TEXT), and only ask takes one")
        own = not isinstance(run, Run)
        if own:  # a bare folder: a run with no manifest and no lifecycle events of its own
            Path(run).mkdir(parents=True, exist_ok=True)
            run = Run("listen", Path(run), resumed=False, deadline=self.deadline, progress=None)
        run.attach_client(self.client)
        if self.workers < self.workers_wanted:
            run.emit("concurrency_lowered", wanted=self.workers_wanted, used=self.workers,
                     budget_tokens=self.text_budget)
        events = self.events
        self.events = events or run.events
        try:
            app = build_graph(run.checkpointer())
            config = run.thread(thread_id, max_concurrency=2 * self.workers + 4)
            feed = ClipFeed.of_file(str(source), self.max_clip_samples, self.overlap_samples)
            snapshot = app.get_state(config)
            if snapshot.values:  # resumed: cut the unfinished clips of the batch in flight again
                finished = {c["index"] for c in snapshot.values.get("clips", [])}
                feed.hold(span["index"] for span in snapshot.values.get("batch", []) if span["index"] not in finished)
            ctx = ListenContext(transcribe=self.transcribe_clip, condense=lambda text: self.condense(text, task, question),
                                feed=feed, task=task, batch_size=2 * self.workers,
                                deadline=run.deadline, on_progress=on_progress or (lambda seconds: None),
                                slots=threading.BoundedSemaphore(self.workers))
            final = run.drive(app, None if snapshot.values else {"source": str(source)}, config, context=ctx,
                              pause_after=["plan_batch"]).values
        finally:
            self.events = events
            if own:
                run.close()
        output = final.get("output")
        clips = sorted((ClipTranscript(**c) for c in final.get("clips", [])), key=lambda c: c.index)
        return ListenResult(
            source=source, task=task, question=question, duration_s=duration_s(final), clips=clips,
            text=final.get("text", ""),
            summary=output if task == "summarize" else None, answer=output if task == "ask" else None,
            condense_requests=final.get("condense_requests", 0),
        )

    def transcribe_clip(self, clip: Clip) -> ClipTranscript:
        messages = clip_messages(self.policy.prompt, clip)
        # Room for fast speech (~3 words/s, ~1.5 tokens/word) and no more: a model that rambles
        # on a silent clip should not cost a full answer's worth of tokens.
        # Room for 300 words a minute in the densest tokenizer seen (the eval's listen suite
        # filled the old 6 tokens/s cap on a 260 wpm clip and lost its last word).
        max_tokens = int(len(clip.samples) / SAMPLE_RATE * TRANSCRIPT_TOKENS_PER_S) + 32
        result = self.client.chat(messages, max_tokens=max_tokens)
        out = ClipTranscript(
            index=clip.index, start_s=clip.start_s, end_s=clip.end_s, text=" ".join(result.text.split()),
            prompt_tokens=result.usage.prompt_tokens, estimated_prompt_tokens=result.estimated_prompt_tokens,
            completion_tokens=result.usage.completion_tokens, latency_s=round(result.latency_s, 3),
        )
        self._emit("clip", **out.model_dump(exclude={"text"}))
        return out

    def condense(self, transcript: str, task: Task, question: str | None) -> tuple[str, int]:
        """The summary or answer over ``transcript``, hierarchical when it exceeds the text budget.

        Returns the output and the number of requests it took.
        """
        requests = 0
        for level in range(MAX_REDUCE_LEVELS + 1):
            self.deadline.check()
            final = self._text_request(task, question, transcript)
            tokens = self.client.count_prompt_tokens(final)
            if tokens <= self.text_budget:
                result = self.client.chat(final, max_tokens=FINAL_MAX_TOKENS)
                self._emit(task, level=level, prompt_tokens=result.usage.prompt_tokens,
                           completion_tokens=result.usage.completion_tokens)
                return result.text.strip(), requests + 1
            notes = self._part_notes(transcript, task, question, tokens)
            self._emit("reduce", level=level, prompt_tokens=tokens, budget=self.text_budget, parts=len(notes))
            requests += len(notes)
            transcript = "\n\n".join(notes)
        raise RunError(f"the transcript did not fit {self.text_budget} prompt tokens after {MAX_REDUCE_LEVELS} "
                       "levels of summaries; raise max_prompt_tokens in your rules")

    # -- internals ------------------------------------------------------------------------------

    def _part_notes(self, transcript: str, task: Task, question: str | None, tokens: int) -> list[str]:
        """Split ``transcript`` into parts that each fit the budget and condense each (in parallel)."""
        overhead = self.client.count_prompt_tokens(self._text_request(task, question, "", part=(1, 1)))
        room = self.text_budget - overhead
        # Notes must be clearly shorter than the parts they replace, or the reduction never ends.
        note_tokens = min(256, room // 3)
        if note_tokens < 16:
            raise UsageError(f"max_prompt_tokens {self.text_budget} leaves no room for the transcript next to the "
                             f"{overhead}-token instructions; raise it in your rules")
        words = transcript.split()
        per_word = max(tokens - overhead, 1) / max(len(words), 1)
        size = max(1, int(room * 0.9 / per_word))
        parts = [words[i : i + size] for i in range(0, len(words), size)]
        fitted: list[list[str]] = []
        while parts:  # the per-word estimate is an average: halve any part that still overflows
            part = parts.pop(0)
            count = self.client.count_prompt_tokens(self._text_request(task, question, " ".join(part), part=(1, 1)))
            if count <= self.text_budget or len(part) == 1:
                fitted.append(part)
            else:
                parts[:0] = [part[: len(part) // 2], part[len(part) // 2 :]]
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="listen-reduce") as pool:
            futures = [pool.submit(self.client.chat, self._text_request(task, question, " ".join(p), part=(i + 1, len(fitted))),
                                   max_tokens=note_tokens) for i, p in enumerate(fitted)]
            return [" ".join(f.result().text.split()) for f in futures]

    def _text_request(self, task: Task, question: str | None, transcript: str,
                      part: tuple[int, int] | None = None) -> list[Message]:
        if task == "ask":
            instruction = PART_ASK_INSTRUCTION if part else ASK_INSTRUCTION
            instruction += f"\n\nQuestion: {question}"
        else:
            instruction = PART_SUMMARY_INSTRUCTION if part else SUMMARY_INSTRUCTION
        if part:
            instruction = instruction.format(part=part[0], parts=part[1])
        return self._with_system([TextPart(text=f"{instruction}\n\nTranscript:\n{transcript}")])

    def _with_system(self, parts: list) -> list[Message]:
        return with_system(self.policy.prompt, parts)

    def _emit(self, kind: str, **fields: object) -> None:
        if self.events is not None:
            self.events.emit(kind, **fields)
