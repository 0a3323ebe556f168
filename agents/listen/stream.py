"""Plan model clips from a stream of audio blocks, holding at most one clip's worth of samples.

:func:`tilepilot.tools.audio.split_clips` needs the whole signal in memory; an hour of 16 kHz float32 is
230 MB, plus the decoder's copy at the source rate. :func:`plan_clips` gives exactly the same clips
(same cuts, same padding) while holding only ``max_clip_samples`` plus one decoder block: it calls
``split_clips`` on a sliding buffer, and only commits to a cut once the buffer reaches past
everything ``split_clips`` looks at to choose it (the limit plus the energy context).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from tilepilot.tools.audio import SAMPLE_RATE, Clip, split_clips

CONTEXT_GRANULES = 4  # split_clips' default; the look-ahead below depends on it


def plan_clips(
    blocks: Iterable[np.ndarray],
    *,
    max_clip_samples: int,
    overlap_samples: int,
    granule: int = 640,
    search_samples: int = 8 * SAMPLE_RATE,
) -> Iterator[Clip]:
    """Yield the clips ``split_clips(concatenate(blocks), ...)`` would return, one by one.

    ``start_sample``/``end_sample`` are positions in the whole stream. Yields nothing for an
    empty stream.
    """
    options = dict(max_clip_samples=max_clip_samples, overlap_samples=overlap_samples, granule=granule,
                   search_samples=search_samples, context_granules=CONTEXT_GRANULES)
    # A cut before `limit` is chosen from energy up to `limit + context` granules: once the buffer
    # holds that much, the first clip of the buffer is the first clip of the whole stream.
    lookahead = max_clip_samples + CONTEXT_GRANULES * granule
    pending: list[np.ndarray] = []
    held = 0
    offset = 0  # stream position of the buffer's first sample; always a multiple of granule
    index = 0
    for block in blocks:
        pending.append(np.asarray(block, dtype=np.float32))
        held += len(block)
        if held < lookahead:
            continue
        buffer = np.concatenate(pending)
        while len(buffer) >= lookahead:
            first = split_clips(buffer[: lookahead], **options)[0]
            yield _shifted(first, offset, index)
            index += 1
            advance = first.end_sample - overlap_samples
            buffer = buffer[advance:].copy()  # copy: let the consumed head be freed
            offset += advance
        pending, held = [buffer], len(buffer)
    if held:
        for clip in split_clips(np.concatenate(pending), **options):
            yield _shifted(clip, offset, index)
            index += 1


def _shifted(clip: Clip, offset: int, index: int) -> Clip:
    return Clip(index=index, start_sample=offset + clip.start_sample, end_sample=offset + clip.end_sample,
                samples=clip.samples)
