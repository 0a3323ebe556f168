"""Audio input: decode any common file to 16 kHz mono float32, stream long files, split into clips.

The model hears raw 16 kHz mono samples, one token per ``granule`` (640) samples, and a clip of at
most 30 s. This module knows nothing about the model: callers pass those sizes in.

Decoding goes through libsndfile (``soundfile``: WAV, FLAC, OGG/Vorbis, MP3 on recent builds) and
falls back to FFmpeg (PyAV) for everything else. Resampling is soxr (band-limited, VHQ-grade), never
naive interpolation, because aliasing is audible to an ASR model.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
from pydantic import BaseModel, ConfigDict

from tilepilot.tools.errors import AudioError, EmptyAudioError, UnreadableAudioError
from tilepilot.tools.extras import require

SAMPLE_RATE = 16_000
"""Every array this module returns is mono float32 at this rate."""

_RESAMPLE_QUALITY = "HQ"
_SOUNDFILE_BLOCK_FRAMES = 65_536


class AudioInfo(BaseModel):
    """What the source file was, before it was converted to 16 kHz mono."""

    model_config = ConfigDict(frozen=True)

    path: Path
    source_rate: int
    channels: int
    source_frames: int
    num_samples: int  # after resampling to SAMPLE_RATE

    @property
    def duration_s(self) -> float:
        return self.source_frames / self.source_rate


class Clip(BaseModel):
    """One piece of the input, ready for the model.

    ``samples`` covers ``[start_sample, end_sample)`` of the 16 kHz signal, followed by zero padding
    so its length is a multiple of the token granule; ``end_sample`` is the true (unpadded) end.
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    index: int
    start_sample: int
    end_sample: int
    samples: np.ndarray

    @property
    def start_s(self) -> float:
        return self.start_sample / SAMPLE_RATE

    @property
    def end_s(self) -> float:
        return self.end_sample / SAMPLE_RATE

    @property
    def padding(self) -> int:
        return len(self.samples) - (self.end_sample - self.start_sample)


# --------------------------------------------------------------------------------------------
# decoding


def _to_mono(block: np.ndarray) -> np.ndarray:
    """(frames, channels) -> (frames,) float32, averaging channels (keeps level of in-phase content)."""
    if block.shape[1] == 1:
        return np.ascontiguousarray(block[:, 0], dtype=np.float32)
    return block.mean(axis=1, dtype=np.float32)


@dataclass
class _Source:
    """A decoded stream of mono float32 blocks at the file's own rate, from soundfile or PyAV."""

    path: Path
    rate: int
    channels: int
    frames: int | None  # None: the decoder cannot say without decoding
    blocks: Generator[np.ndarray, None, None]  # closed early when only the header was wanted


def _soundfile() -> ModuleType:
    # Imported on first use, like soxr and av: the core install (no audio extra) never reaches them.
    return require("soundfile", "reading audio")


def _open_soundfile(path: Path, block_frames: int) -> _Source:
    sf = _soundfile()
    handle = sf.SoundFile(str(path))  # raises sf.LibsndfileError / RuntimeError on unknown formats

    def blocks() -> Generator[np.ndarray, None, None]:
        with handle:
            while True:
                data = handle.read(block_frames, dtype="float32", always_2d=True)
                if len(data) == 0:
                    return
                yield _to_mono(data)

    # MP3 frame counts from libsndfile are estimates, so they are only used by probe().
    return _Source(path, handle.samplerate, handle.channels, handle.frames, blocks())


def _open_av(path: Path) -> _Source:
    av = require("av", "reading this audio format")  # only needed for formats libsndfile cannot read

    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, UnicodeDecodeError) as err:
        raise UnreadableAudioError(f"{path}: not a readable audio file ({_reason(err)}); convert it to WAV or FLAC") from err
    if not container.streams.audio:
        container.close()
        raise UnreadableAudioError(f"{path}: contains no audio stream; pass an audio file (wav, flac, ogg, mp3)")
    stream = container.streams.audio[0]
    rate, channels = stream.rate or stream.codec_context.sample_rate, stream.codec_context.channels
    # Planar float keeps the rate and layout but makes every codec's output the same dtype/shape.
    resampler = av.AudioResampler(format="fltp")

    def blocks() -> Generator[np.ndarray, None, None]:
        try:
            for frame in container.decode(stream):
                for converted in resampler.resample(frame):
                    yield _to_mono(converted.to_ndarray().T)
        except av.FFmpegError as err:
            raise UnreadableAudioError(f"{path}: audio data is corrupt ({_reason(err)}); re-export the file") from err
        finally:
            container.close()

    return _Source(path, rate, channels, None, blocks())


def _reason(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def _open(path: str | Path, block_frames: int = _SOUNDFILE_BLOCK_FRAMES) -> _Source:
    sf = _soundfile()  # a missing audio extra is named first, whatever the file
    path = Path(path)
    if not path.is_file():
        raise UnreadableAudioError(f"{path}: no such audio file; check the path")
    if path.stat().st_size == 0:
        raise EmptyAudioError(f"{path}: file is empty (0 bytes); pass a recording with sound in it")
    try:
        return _open_soundfile(path, block_frames)
    except (sf.LibsndfileError, RuntimeError):
        return _open_av(path)


def _guarded(source: _Source) -> Iterator[np.ndarray]:
    """Re-raise decoder failures in the middle of a file as one-line AudioErrors."""
    sf = _soundfile()
    try:
        yield from source.blocks
    except AudioError:
        raise
    except (sf.LibsndfileError, RuntimeError, ValueError) as err:
        raise UnreadableAudioError(f"{source.path}: audio data is corrupt ({_reason(err)}); re-export the file") from err


def _empty_error(path: Path) -> EmptyAudioError:
    return EmptyAudioError(f"{path}: contains no audio samples; pass a recording with sound in it")


# --------------------------------------------------------------------------------------------
# public API: probe, load, iter_blocks


def probe(path: str | Path) -> AudioInfo:
    """Read the header only. ``source_frames`` is the container's claim (exact for PCM, FLAC, OGG)."""
    source = _open(path)
    frames = source.frames
    if frames is None:  # PyAV has no exact count up front: decode and count, in bounded memory
        frames = sum(len(block) for block in _guarded(source))
    else:
        source.blocks.close()
    if frames <= 0:
        raise _empty_error(source.path)
    return AudioInfo(
        path=source.path, source_rate=source.rate, channels=source.channels,
        source_frames=frames, num_samples=_resampled_length(frames, source.rate),
    )


def _resampled_length(frames: int, rate: int) -> int:
    return round(frames * SAMPLE_RATE / rate)


def load(path: str | Path) -> tuple[np.ndarray, AudioInfo]:
    """Decode the whole file to 16 kHz mono float32. For hours of audio prefer :func:`iter_blocks`."""
    source = _open(path)
    blocks = list(_guarded(source))
    mono = np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)
    del blocks
    if mono.size == 0:
        raise _empty_error(source.path)
    if source.rate == SAMPLE_RATE:
        samples = mono
    else:
        samples = require("soxr", "resampling audio").resample(mono, source.rate, SAMPLE_RATE, quality=_RESAMPLE_QUALITY)
    info = AudioInfo(
        path=source.path, source_rate=source.rate, channels=source.channels,
        source_frames=len(mono), num_samples=len(samples),
    )
    return np.ascontiguousarray(samples, dtype=np.float32), info


def iter_blocks(path: str | Path, block_s: float = 10.0) -> Iterator[np.ndarray]:
    """Yield the file as consecutive 16 kHz mono float32 blocks, decoding and resampling as it goes.

    Memory stays bounded by a few blocks whatever the file's length. Block sizes vary a little
    (the resampler holds back a filter's worth of samples); the concatenation equals :func:`load`
    up to float rounding. Raises EmptyAudioError if the file decodes to nothing.
    """
    if block_s <= 0:
        raise ValueError(f"block_s must be positive, got {block_s}")
    source = _open(path)
    source_block = max(1, round(block_s * source.rate))
    resampler = None if source.rate == SAMPLE_RATE else require("soxr", "resampling audio").ResampleStream(
        source.rate, SAMPLE_RATE, 1, dtype="float32", quality=_RESAMPLE_QUALITY
    )
    produced = 0
    for out in _rechunk(_guarded(source), source_block):
        if resampler is not None:
            out = resampler.resample_chunk(out, last=False)
        if len(out):
            produced += len(out)
            yield out
    if resampler is not None:
        tail = resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
        if len(tail):
            produced += len(tail)
            yield tail
    if produced == 0:
        raise _empty_error(source.path)


def _rechunk(blocks: Iterator[np.ndarray], size: int) -> Iterator[np.ndarray]:
    """Regroup decoder output (whatever its frame size) into blocks of ``size`` samples."""
    pending: list[np.ndarray] = []
    held = 0
    for block in blocks:
        pending.append(block)
        held += len(block)
        while held >= size:
            joined = np.concatenate(pending)
            yield joined[:size]
            rest = joined[size:]
            pending, held = ([rest] if len(rest) else []), len(rest)
    if held:
        yield np.concatenate(pending)


# --------------------------------------------------------------------------------------------
# splitting into clips


def split_clips(
    samples: np.ndarray,
    *,
    max_clip_samples: int,
    overlap_samples: int,
    granule: int = 640,
    search_samples: int = 8 * SAMPLE_RATE,
    context_granules: int = 4,
) -> list[Clip]:
    """Cut a 16 kHz signal into clips the model accepts, at the quietest moment before each limit.

    Every clip holds at most ``max_clip_samples`` samples and a multiple of ``granule`` (the last one
    is zero-padded, its ``end_sample`` is the true end). Each cut is the granule boundary within
    the last ``search_samples`` before the limit whose ``context_granules`` on either side have
    the least energy, so words are not cut in half; ties go to the later boundary (fewer clips).
    The next clip starts ``overlap_samples`` before the cut. The clips cover ``[0, len(samples))``.
    """
    for name, value in (("max_clip_samples", max_clip_samples), ("overlap_samples", overlap_samples),
                        ("search_samples", search_samples)):
        if value < 0 or value % granule:
            raise ValueError(f"{name}={value} must be a non-negative multiple of granule={granule}")
    if max_clip_samples == 0 or overlap_samples + search_samples >= max_clip_samples:
        raise ValueError("need overlap_samples + search_samples < max_clip_samples so every clip advances")
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim != 1:
        raise ValueError(f"expected mono samples (1-D), got shape {samples.shape}")

    total = len(samples)
    clips: list[Clip] = []
    start = 0  # always a multiple of granule, so every boundary below is too
    while start < total:
        limit = start + max_clip_samples
        if limit >= total:
            end = total
        else:
            end = _quietest_boundary(samples, limit - search_samples, limit, granule, context_granules)
        padded_len = -(-(end - start) // granule) * granule
        piece = np.zeros(padded_len, dtype=np.float32)
        piece[: end - start] = samples[start:end]
        clips.append(Clip(index=len(clips), start_sample=start, end_sample=end, samples=piece))
        if end == total:
            break
        start = end - overlap_samples
    return clips


def _quietest_boundary(samples: np.ndarray, lo: int, hi: int, granule: int, context: int) -> int:
    """The granule boundary in (lo, hi] with the least mean energy in the ``context`` granules around it."""
    first = max(lo // granule - context, 0)
    last = min(hi // granule + context, len(samples) // granule)  # whole granules only
    frames = samples[first * granule : last * granule].reshape(-1, granule)
    energy = np.square(frames, dtype=np.float64).mean(axis=1)
    # score[k] = mean energy of the granules on both sides of boundary (first + k) * granule
    padded = np.concatenate([np.full(context, np.inf), energy, np.full(context, np.inf)])
    window = np.lib.stride_tricks.sliding_window_view(padded, 2 * context)
    finite = np.where(np.isinf(window), np.nan, window)
    score = np.nanmean(finite, axis=1)
    boundaries = np.arange(first, first + len(score)) * granule
    candidates = (boundaries > lo) & (boundaries <= hi)
    score = np.where(candidates, score, np.inf)
    best = len(score) - 1 - int(np.argmin(score[::-1]))  # latest among equal minima
    return int(boundaries[best])
