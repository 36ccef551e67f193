"""Compatibility for callers outside the engine's area (tests/tuners): the old loader signature.

New code uses `lmforge.infer.loading.load_for_inference` or `lmforge.infer.engine.load_engine`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lmforge.infer.loading import load_for_inference as _load


def load_for_inference(model_dir: Path, adapters: list[str] | None = None, dtype: Any = None) -> Any:
    """The base model with `adapters` stacked on it, in eval mode, fp32 unless `dtype` says otherwise."""
    return _load(model_dir, tuple(adapters or ()), dtype=dtype or "float32")
