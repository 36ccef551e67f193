"""Audio in rows (`<audio>` tags, an `audios` column of local wav/flac/mp3/ogg paths, data URLs or raw base64):
decoded with soundfile and resampled with soxr to the feature extractor's rate, through transformers' own
`load_audio(..., backend="soundfile")` (librosa's steps: downmix by averaging, soxr_hq), never torchaudio.
A file that does not decode is the row's one-line RowError; so is a missing decoder (`lmforge[audio]`)."""

from __future__ import annotations

from typing import Any

from lmforge.errors import RowError

SAMPLING_RATE = 16000  # Whisper-style feature extractors (Qwen2-Audio)


def _shown(src: str) -> str:
    return src if not src.startswith("data:") and len(src) < 200 else "the data"


def load_audio(src: str, field: str = "audio", sampling_rate: int = SAMPLING_RATE) -> Any:
    """A mono float32 waveform at `sampling_rate` from a checked source (path, data URL, raw base64)."""
    try:
        import soundfile  # noqa: F401
        import soxr  # noqa: F401
    except ImportError:
        raise RowError(field, f"{_shown(src)}: no audio decoder", "pip install 'lmforge[audio]' (soundfile + soxr)")
    from transformers.audio_utils import load_audio as hf_load_audio

    try:
        wave = hf_load_audio(src, sampling_rate=sampling_rate, backend="soundfile")
    except (RuntimeError, OSError, ValueError, TypeError, EOFError) as e:  # soundfile's LibsndfileError: RuntimeError
        first = (str(e).splitlines() or [type(e).__name__])[0][:80]
        raise RowError(field, f"{_shown(src)}: not a readable audio file ({first})")
    if wave.size == 0:
        raise RowError(field, f"{_shown(src)}: an audio file without samples")
    return wave


def duration(wave: Any, sampling_rate: int = SAMPLING_RATE) -> float:
    return float(len(wave)) / sampling_rate
