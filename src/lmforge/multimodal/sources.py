"""Reading a media source's bytes: a local path, a data URL or raw base64 (a leaf: media.py and video.py share it)."""

from __future__ import annotations

import base64
import binascii
import re
from pathlib import Path

from lmforge.errors import RowError

_DATA_URL = re.compile(r"data:(?P<mime>[\w/+.-]+)?(;[\w=-]+)*;base64,(?P<data>.*)", re.S)


def is_base64(src: str) -> bool:
    """Raw base64 (ms-swift accepts it without the data: prefix): long, base64 characters only, not a file."""
    return len(src) >= 64 and re.fullmatch(r"[A-Za-z0-9+/=\s]+", src) is not None and not Path(src[:255]).exists()


def media_bytes(src: str, field: str = "image") -> bytes:
    m = _DATA_URL.fullmatch(src) if src.startswith("data:") else None
    if m is not None or is_base64(src):
        try:
            return base64.b64decode(m.group("data") if m else src, validate=False)
        except (binascii.Error, ValueError):
            raise RowError(field, "not valid base64")
    if src.startswith("data:"):
        raise RowError(field, "a data URL must be base64 encoded (data:image/png;base64,...)")
    try:
        return Path(src).read_bytes()
    except OSError as e:
        raise RowError(field, f"{src}: cannot read ({e.strerror})")
