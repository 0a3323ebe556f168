"""tilepilot.tools.audio on real files: espeak-ng speech and numpy signals through sox/soundfile/PyAV."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile as sf

from tests.gen.audio import SENTENCES, AudioFactory
from tilepilot.tools import audio
from tilepilot.tools.errors import AudioError, EmptyAudioError, UnreadableAudioError

RATE = audio.SAMPLE_RATE
MAX_CLIP = 480_000  # 30 s, what the model accepts
OVERLAP = 16_000  # 1 s = 25 granules
GRANULE = 640


@pytest.fixture(scope="session")
def gen(tmp_path_factory: pytest.TempPathFactory) -> AudioFactory:
    return AudioFactory(tmp_path_factory.getbasetemp() / "audio")


def _dominant_hz(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * RATE / len(x))


def _assert_covers(clips: list[audio.Clip], total: int) -> None:
    covered = np.zeros(total, dtype=bool)
    for clip in clips:
        covered[clip.start_sample : clip.end_sample] = True
    assert covered.all(), f"uncovered samples: {np.flatnonzero(~covered)[:5]}"
    assert clips[0].start_sample == 0 and clips[-1].end_sample == total


def _assert_clip_shapes(clips: list[audio.Clip], samples: np.ndarray) -> None:
    for i, clip in enumerate(clips):
        assert clip.index == i
        assert len(clip.samples) <= MAX_CLIP and len(clip.samples) % GRANULE == 0
        assert clip.samples.dtype == np.float32
        body = clip.end_sample - clip.start_sample
        np.testing.assert_array_equal(clip.samples[:body], samples[clip.start_sample : clip.end_sample])
        assert not clip.samples[body:].any(), "padding must be zeros"


# -- loading ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "rate", "channels"),
    [("wav", 8_000, 1), ("wav", 16_000, 1), ("wav", 22_050, 2), ("flac", 48_000, 2), ("flac", 32_000, 1), ("ogg", 44_100, 2)],
)
def test_load_resamples_to_16k_mono_with_exact_length(gen: AudioFactory, fmt: str, rate: int, channels: int) -> None:
    path = gen.tone(seconds=1.5, rate=rate, channels=channels, fmt=fmt)
    frames = sf.info(str(path)).frames
    samples, info = audio.load(path)

    assert samples.dtype == np.float32 and samples.ndim == 1
    assert abs(len(samples) - round(frames * RATE / rate)) <= 1
    assert (info.source_rate, info.channels, info.num_samples) == (rate, channels, len(samples))
    assert info.duration_s == pytest.approx(1.5, abs=1 / rate)
    assert _dominant_hz(samples) == pytest.approx(440.0, abs=2.0)
    # Channels are 90 degrees apart: their average has RMS 0.25, a single channel 0.354.
    expected_rms = 0.25 if channels == 2 else 0.5 / np.sqrt(2)
    assert np.sqrt(np.mean(samples[800:-800] ** 2)) == pytest.approx(expected_rms, rel=0.02)


@pytest.mark.parametrize("fmt", ["mp3", "ogg"])
def test_stereo_44k_speech_loads_with_source_duration(gen: AudioFactory, fmt: str) -> None:
    text = SENTENCES[0]
    reference, _ = audio.load(gen.speech(text, fmt="wav", rate=16_000, channels=1))
    samples, info = audio.load(gen.speech(text, fmt=fmt, rate=44_100, channels=2))

    assert (info.source_rate, info.channels) == (44_100, 2)
    # Lossy codecs add encoder delay/padding (MP3: up to ~1 frame of 1152 samples at each end).
    assert abs(len(samples) - len(reference)) <= (0.1 * RATE if fmt == "mp3" else 1)
    assert np.abs(samples).max() > 0.1


def test_formats_libsndfile_cannot_read_go_through_pyav(gen: AudioFactory) -> None:
    path = gen.m4a_tone(seconds=2.0, rate=44_100)
    with pytest.raises(sf.LibsndfileError):
        sf.info(str(path))
    samples, info = audio.load(path)
    assert info.source_rate == 44_100 and info.channels == 1
    assert abs(len(samples) - 2.0 * RATE) <= 0.1 * RATE  # AAC priming adds ~1024 source samples
    assert _dominant_hz(samples) == pytest.approx(440.0, abs=2.0)


def test_probe_reads_header_without_decoding(gen: AudioFactory) -> None:
    info = audio.probe(gen.tone(seconds=3.0, rate=48_000, channels=2, fmt="flac"))
    assert (info.source_rate, info.channels, info.source_frames, info.num_samples) == (48_000, 2, 144_000, 48_000)


def test_silence_only_file_loads_and_splits_into_full_clips(gen: AudioFactory) -> None:
    samples, info = audio.load(gen.silence(seconds=70.0))
    assert info.num_samples == 70 * RATE and not samples.any()
    clips = audio.split_clips(samples, max_clip_samples=MAX_CLIP, overlap_samples=OVERLAP)
    # No quiet spot beats another, so each cut goes as late as allowed: 3 clips, the first two full.
    assert [len(c.samples) for c in clips] == [MAX_CLIP, MAX_CLIP, 1_120_000 - 2 * (MAX_CLIP - OVERLAP)]
    _assert_covers(clips, len(samples))


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda g: g.corrupt("wav"), UnreadableAudioError),
        (lambda g: g.corrupt("mp3"), UnreadableAudioError),
        (lambda g: g.not_audio(), UnreadableAudioError),
        (lambda g: g.zero_bytes(), EmptyAudioError),
        (lambda g: g.header_only(), EmptyAudioError),
        (lambda g: g.root / "missing.wav", UnreadableAudioError),
    ],
    ids=["corrupt-wav", "corrupt-mp3", "text-file", "zero-bytes", "header-only", "missing"],
)
@pytest.mark.parametrize("reader", ["load", "iter_blocks", "probe"])
def test_bad_files_raise_one_line_audio_error(gen: AudioFactory, make, error: type[AudioError], reader: str) -> None:
    path = make(gen)
    with pytest.raises(error) as caught:
        result = getattr(audio, reader)(path)
        if reader == "iter_blocks":
            list(result)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message
    assert isinstance(caught.value, AudioError)


# -- splitting -------------------------------------------------------------------------------


def test_45s_talk_splits_into_two_clips_cut_in_a_silence(gen: AudioFactory) -> None:
    talk = gen.talk(seconds=45.0)
    samples, _ = audio.load(talk.path)
    clips = audio.split_clips(samples, max_clip_samples=MAX_CLIP, overlap_samples=OVERLAP)

    assert len(clips) == 2
    _assert_clip_shapes(clips, samples)
    _assert_covers(clips, len(samples))
    cut = clips[0].end_s
    assert any(a + 0.04 <= cut <= b - 0.04 for a, b in talk.gaps), f"cut at {cut:.2f}s is not inside a pause {talk.gaps}"
    assert clips[1].start_sample == clips[0].end_sample - OVERLAP
    assert clips[1].end_s == pytest.approx(45.0)


def test_cut_goes_to_the_only_quiet_spot_in_the_search_window() -> None:
    samples = (0.3 * np.sin(2 * np.pi * 300 * np.arange(40 * RATE) / RATE)).astype(np.float32)
    gap = slice(round(24.3 * RATE), round(24.8 * RATE))
    samples[gap] = 0.0
    clips = audio.split_clips(samples, max_clip_samples=MAX_CLIP, overlap_samples=OVERLAP)
    cut = clips[0].end_sample
    assert gap.start < cut < gap.stop
    assert not samples[cut - 2 * GRANULE : cut + 2 * GRANULE].any()


@pytest.mark.parametrize("total", [1, 639, 640, 480_000, 480_001, 959_999, 1_000_003, 5_000_000])
def test_clips_cover_any_length(total: int) -> None:
    samples = np.random.default_rng(total).standard_normal(total).astype(np.float32)
    clips = audio.split_clips(samples, max_clip_samples=MAX_CLIP, overlap_samples=OVERLAP)
    _assert_clip_shapes(clips, samples)
    _assert_covers(clips, total)
    starts = [c.start_sample for c in clips]
    assert starts == sorted(set(starts))


def test_split_rejects_sizes_that_break_the_granule() -> None:
    with pytest.raises(ValueError, match="multiple of granule"):
        audio.split_clips(np.zeros(10, np.float32), max_clip_samples=MAX_CLIP, overlap_samples=1000)
    with pytest.raises(ValueError, match="advances"):
        audio.split_clips(np.zeros(10, np.float32), max_clip_samples=6400, overlap_samples=3200, search_samples=3200)


# -- streaming -------------------------------------------------------------------------------

_PEAK_SCRIPT = textwrap.dedent(
    """
    import sys
    from tilepilot.tools import audio

    def hwm_kib():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])

    before = hwm_kib()
    if sys.argv[2] == "stream":
        total = sum(len(b) for b in audio.iter_blocks(sys.argv[1], block_s=10.0))
    else:
        total = len(audio.load(sys.argv[1])[0])
    print(total, hwm_kib() - before)
    """
)


def _peak_growth_mib(path, mode: str) -> tuple[int, float]:
    out = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, str(path), mode], capture_output=True, text=True, check=True)
    total, kib = out.stdout.split()
    return int(total), int(kib) / 1024


def test_streaming_a_10_minute_file_matches_load_with_bounded_memory(gen: AudioFactory) -> None:
    path = gen.long_noise_tone(minutes=10.0, rate=44_100, channels=2)
    whole, info = audio.load(path)
    streamed = np.concatenate(list(audio.iter_blocks(path, block_s=10.0)))
    assert info.num_samples == 600 * RATE
    assert len(streamed) == len(whole)
    np.testing.assert_allclose(streamed, whole, atol=1e-5)
    del whole, streamed

    stream_total, stream_mib = _peak_growth_mib(path, "stream")
    load_total, load_mib = _peak_growth_mib(path, "load")
    assert stream_total == load_total == 600 * RATE
    print(f"peak RSS growth for 10 min 44.1 kHz stereo: stream {stream_mib:.1f} MiB, load {load_mib:.1f} MiB")
    # The decoded signal alone is 37 MiB at 16 kHz (106 MiB at the source rate): streaming holds blocks only.
    assert stream_mib < 20
    assert load_mib > 37
