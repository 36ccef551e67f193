"""Media in rows, as ms-swift takes them: `images` / `videos` / `audios` columns (a list, or one string) holding local
paths, base64 or data URLs, or http(s) URLs, and `<image>` / `<video>` / `<audio>` tags in the message text.
OpenAI content parts (`{"type": "image_url", ...}`) become a tag plus an entry of the column.

Rows are checked when they are read (loader.py calls `normalize_row`): the tag count must match the media count
(no tag at all: ms-swift's rule, the tags go in front of the first user turn), every file must exist and open as
an image, a URL is fetched once into the lmforge cache. Every problem is a RowError naming the field.
"""

from __future__ import annotations

import base64
import hashlib
import io
from pathlib import Path
from typing import Any

from lmforge.errors import RowError
from lmforge.multimodal.parts import MEDIA_COLUMNS, TAG
from lmforge.multimodal.sources import is_base64, media_bytes


def has_media(row: dict) -> bool:
    return any(row.get(col) for col in MEDIA_COLUMNS.values())


def _as_list(value: Any, column: str) -> list:
    if value is None:
        return []
    if isinstance(value, (str, dict)):
        return [value]  # ms-swift accepts a single string where a list is expected
    if not isinstance(value, list):
        raise RowError(column, f"expected a list of paths or URLs, got {type(value).__name__}")
    return value


def _source(item: Any, column: str, k: int) -> str:
    """A column entry -> a string source; HF image features ({"bytes", "path"}) become a data URL or the path."""
    if isinstance(item, dict):
        if item.get("bytes"):
            raw = item["bytes"]
            return "data:image;base64," + base64.b64encode(raw if isinstance(raw, bytes) else bytes(raw)).decode()
        item = item.get("path") or item.get("url") or item.get("image")
    if not isinstance(item, str) or not item:
        raise RowError(f"{column}[{k}]", "expected a path, URL or base64 string")
    return item


def normalize_row(row: dict, source: str | None = None) -> dict:
    """Media columns as lists of checked sources (local paths resolved, URLs fetched), content-part media folded
    into tags, tag counts checked against the columns. A row without media comes back unchanged."""
    parts_media: list[tuple[str, str]] = []
    for i, msg in enumerate(row.get("messages", [])):
        for kind, src in msg.pop("_media", []):
            if not src:
                raise RowError(f"messages[{i}].content", f"a {kind} part without a url or path")
            parts_media.append((kind, src))
    if not parts_media and not has_media(row):
        return row
    base = Path(source).parent if source and Path(source).is_file() else None
    for kind, column in MEDIA_COLUMNS.items():
        items = [_source(x, column, k) for k, x in enumerate(_as_list(row.get(column), column))]
        items += [src for kd, src in parts_media if kd == kind]
        if not items:
            row.pop(column, None)
            continue
        _check_tags(row, kind, len(items))
        row[column] = [resolve(src, f"{column}[{k}]", base, kind) for k, src in enumerate(items)]
    return row


def _check_tags(row: dict, kind: str, n: int) -> None:
    tag = TAG[kind]
    msgs = row.get("messages", [])
    count = sum(str(m.get("content", "")).count(tag) for m in msgs)
    if count == 0:  # ms-swift: media without tags go in front of the first user turn
        first = next((m for m in msgs if m.get("role") == "user"), None)
        if first is None:
            raise RowError(MEDIA_COLUMNS[kind], f"{n} {kind}(s) but no user turn to put them in")
        first["content"] = tag * n + str(first.get("content", ""))
        return
    if count != n:
        plural = "s" if n != 1 else ""
        raise RowError(
            "messages",
            f"{count} {tag} tags but {n} {kind}{plural}",
            f"every {tag} tag needs one entry in '{MEDIA_COLUMNS[kind]}', in order",
        )


def resolve(src: str, field: str, base: Path | None, kind: str = "image") -> str:
    """A checked source: an existing local path (relative to the dataset file's folder, else the working
    directory), a data URL, or a fetched URL's cached file. Images, videos and audios are decoded to catch corrupt
    files now."""
    if src.startswith(("http://", "https://")):
        src = str(fetch(src, field))
    elif not src.startswith("data:") and not is_base64(src):
        path = Path(src).expanduser()
        if not path.is_absolute() and base is not None and (base / path).exists():
            path = base / path
        if not path.is_file():
            raise RowError(field, f"{src}: no such file", "paths are relative to the dataset file or the working dir")
        src = str(path.resolve())
    if kind == "image":
        load_image(src, field)  # corrupt or not an image: this row, now, not a crash mid-training
    elif kind == "video":
        from lmforge.multimodal.video import probe_video

        probe_video(src, field)  # no decoder, corrupt, a still image: this row's one line
    elif kind == "audio":
        from lmforge.multimodal.audio import load_audio

        load_audio(src, field)  # no decoder, corrupt, not audio: this row's one line
    return src


def load_image(src: str, field: str = "image") -> Any:
    """A PIL image in RGB from a checked source."""
    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(io.BytesIO(media_bytes(src, field)))
        img.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        shown = src if not src.startswith("data:") and len(src) < 200 else "the data"
        raise RowError(field, f"{shown}: not a readable image ({str(e).splitlines()[0][:80]})")
    return img.convert("RGB")


def fetch(url: str, field: str) -> Path:
    """Download a URL once into $LMFORGE_HOME/media (offline: one line naming the row's field)."""
    import os
    import urllib.error
    import urllib.request

    name = hashlib.sha256(url.encode()).hexdigest()[:16] + (Path(url.split("?")[0]).suffix[:8] or ".bin")
    home = Path(os.environ.get("LMFORGE_HOME", Path.home() / ".cache" / "lmforge"))  # as models.loader
    out = home / "media" / name
    if out.is_file():
        return out
    try:
        with urllib.request.urlopen(url, timeout=20) as resp:  # noqa: S310 (the dataset names it)
            data = resp.read()
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise RowError(field, f"cannot fetch {url} ({str(reason)[:80]})", "offline? download it and use the local path")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(out)
    return out
