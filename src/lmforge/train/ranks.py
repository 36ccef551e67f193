"""Which process this is, from torchrun's environment (one place reads RANK and WORLD_SIZE)."""

from __future__ import annotations

import os


def is_rank_zero() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))
