"""Media tags and OpenAI content parts: a leaf module (no lmforge imports), shared by the row converters and the
server. A media part becomes its tag (`<image>`, `<video>`, `<audio>`) in the text, its source goes to the row's
column, so every later stage sees ms-swift's form."""

from __future__ import annotations

MEDIA_COLUMNS = {"image": "images", "video": "videos", "audio": "audios"}
TAG = {kind: f"<{kind}>" for kind in MEDIA_COLUMNS}
# OpenAI / transformers content-part types -> media kind, and the key holding the source
PART_KINDS = {
    "image_url": ("image", "image_url"),
    "image": ("image", "image"),
    "video_url": ("video", "video_url"),
    "video": ("video", "video"),
    "input_audio": ("audio", "input_audio"),
    "audio_url": ("audio", "audio_url"),
    "audio": ("audio", "audio"),
}


def part_source(part: dict) -> tuple[str, str | None] | None:
    """(kind, source) of a media content part (source None when the part carries none); None for text parts."""
    kind_key = PART_KINDS.get(str(part.get("type")))
    if kind_key is None:
        if part.get("type") not in (None, "media"):
            return None
        kind_key = next((PART_KINDS[k] for k in PART_KINDS if k in part), None)
        if kind_key is None:
            return None
    kind, key = kind_key
    value = part.get(key, part.get("url", part.get("path")))
    if isinstance(value, dict):  # {"url": ...} (OpenAI image_url), {"data": b64, "format": "wav"} (input_audio)
        if value.get("url"):
            value = value["url"]
        elif value.get("data"):
            value = f"data:audio/{value.get('format', 'wav')};base64,{value['data']}"
    return kind, value if isinstance(value, str) and value else None


def parts_to_text(parts: list) -> tuple[str, list[tuple[str, str | None]]]:
    """OpenAI content parts -> text with a tag where each media part was, and the (kind, source) list in order."""
    text, media = [], []
    for part in parts:
        if not isinstance(part, dict):
            continue
        found = part_source(part)
        if found is None:
            text.append(str(part.get("text", part.get("refusal", ""))))
            continue
        media.append(found)
        text.append(TAG[found[0]])
    return "".join(text), media
