"""Training examples from a listen run: the clips whose transcript a person corrected.

The correction goes into the run's ``transcript.json`` (one per input: the run folder, or its
``<n>-<stem>/`` subfolders), as a ``"corrected"`` text on the clip::

    {"source": ..., "clips": [{"index": 0, "start_s": 0.0, "end_s": 4.2, "text": "<what the model heard>",
                               "corrected": "<what was said>", ...}, ...], ...}

A clip without ``corrected`` is left out. The request is rebuilt with the listen agent's own
functions: the clips are cut again from the source file with the sizes of the run's model profile
(:func:`tilepilot.agents.listen.agent.clip_sizes`, :class:`tilepilot.agents.listen.graph.ClipFeed`), so each carries
the very samples that were sent (checked against the recorded bounds), with the rules prompt
logged in the ``run_started`` / ``run_resumed`` event before that clip's ``clip`` event, which
also gives the server's prompt-token count. The target is the text the agent keeps of an answer
(whitespace collapsed), with the corrected words: the agent asks for plain text, not JSON.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from tilepilot.agents.export.dataset import Example, ExportError, SourceSummary
from tilepilot.agents.listen.agent import ClipTranscript, clip_messages, clip_sizes
from tilepilot.agents.listen.outputs import ListenOptions, output_folders
from tilepilot.agents.listen.graph import ClipFeed
from tilepilot.agents.errors import RunError
from tilepilot.agents.export.review import run_options
from tilepilot.agents.runs import EVENTS_NAME, RUN_RESUMED, RUN_STARTED, read_events, read_model_file
from tilepilot.model_runtime.profiles import get_profile
from tilepilot.tools.audio import SAMPLE_RATE, Clip
from tilepilot.tools.errors import ToolError

TRANSCRIPT_NAME = "transcript.json"


class CorrectedClip(ClipTranscript):
    corrected: str | None = None  # what was said, written by a person; None: not corrected


class TranscriptFile(BaseModel):
    """The part of ``transcript.json`` export reads (the rest is the listen agent's own)."""

    source: Path
    clips: list[CorrectedClip]


class ClipRequest(BaseModel):
    """A clip request as the events recorded it: the rules prompt then in force and the server's count."""

    system_prompt: str | None
    prompt_tokens: int


def listen_examples(run: Path) -> tuple[list[Example], SourceSummary]:
    run = Path(run)
    try:
        options = run_options(run, ListenOptions)
        transcripts = [(folder, read_model_file(folder / TRANSCRIPT_NAME, TranscriptFile))
                       for folder in output_folders(run, [Path(f) for f in options.files]) if (folder / TRANSCRIPT_NAME).is_file()]
    except RunError as err:
        raise ExportError(str(err)) from None
    wanted = [(folder, t) for folder, t in transcripts if any(c.corrected is not None for c in t.clips)]
    clips = sum(len(t.clips) for _, t in transcripts)
    if not wanted:
        return [], SourceSummary(run=str(run), agent="listen", examples=0, note=f"no corrected clip (of {clips})")
    max_clip, overlap = clip_sizes(get_profile(options.model).audio)
    requests = clip_requests(run)
    examples = [example for folder, transcript in wanted
                for example in _examples(run, folder, transcript, max_clip, overlap, requests)]
    return examples, SourceSummary(run=str(run), agent="listen", examples=len(examples),
                                   note=f"{len(examples)} of {clips} clip(s) corrected")


def _key(index: int, start_s: float, end_s: float, latency_s: float) -> tuple:
    """Which clip request an event and a transcript entry both describe (inputs of one run share indexes)."""
    return index, start_s, end_s, latency_s


def clip_requests(run: Path) -> dict[tuple, ClipRequest]:
    prompt: str | None = None
    found: dict[tuple, ClipRequest] = {}
    for event in read_events(run / EVENTS_NAME):
        if event.get("kind") in (RUN_STARTED, RUN_RESUMED):
            prompt = event.get("system_prompt")
        elif event.get("kind") == "clip":
            found[_key(event["index"], event["start_s"], event["end_s"], event["latency_s"])] = ClipRequest(
                system_prompt=prompt, prompt_tokens=event["prompt_tokens"])
    return found


def _examples(run: Path, folder: Path, transcript: TranscriptFile, max_clip: int, overlap: int,
              requests: dict[tuple, ClipRequest]) -> list[Example]:
    corrected = [c for c in transcript.clips if c.corrected is not None]
    if not transcript.source.is_file():
        raise ExportError(f"{folder / TRANSCRIPT_NAME}: its audio {transcript.source} is gone; "
                          "the clips cannot be rebuilt")
    try:
        cut = {clip.index: clip for clip in ClipFeed.of_file(str(transcript.source), max_clip, overlap).hold(c.index for c in corrected)}
    except ToolError as err:
        raise ExportError(f"{transcript.source}: {err}") from None
    examples = []
    for entry in corrected:
        clip = cut.get(entry.index)
        if clip is None or not _same_bounds(clip, entry):
            raise ExportError(f"{transcript.source}: changed since the run (clip {entry.index} no longer spans "
                              f"{entry.start_s:.3f}-{entry.end_s:.3f} s); its clips cannot be rebuilt")
        request = requests.get(_key(entry.index, entry.start_s, entry.end_s, entry.latency_s))
        if request is None or request.system_prompt is None:
            raise ExportError(f"{run}: recorded by a tilepilot that did not log the rules prompt of clip {entry.index}; "
                              "its request cannot be rebuilt exactly (listen to the file again)")
        examples.append(Example(agent="listen", source=f"{folder}#clip={entry.index}",
                                messages=clip_messages(request.system_prompt, clip),
                                target=" ".join((entry.corrected or "").split()), prompt_tokens=request.prompt_tokens))
    return examples


def _same_bounds(clip: Clip, entry: CorrectedClip) -> bool:
    return round(entry.start_s * SAMPLE_RATE) == clip.start_sample and round(entry.end_s * SAMPLE_RATE) == clip.end_sample
