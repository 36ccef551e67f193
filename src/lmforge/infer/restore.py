"""Compatibility for `train/ppo.py` (owned by the training side), which still reads args.json through here.

New code uses `lmforge.runargs` (`read_run_args`, `resolve_model`); delete this module once ppo.py moved over.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lmforge import runargs


def read_run_args(path: Path) -> dict[str, Any] | None:
    """The raw args.json dict of a checkpoint (or its run dir), or None."""
    saved = runargs.read_run_args(path)
    return saved.raw if saved is not None else None
