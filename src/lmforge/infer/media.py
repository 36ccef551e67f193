"""Prompts with images for a vision-language engine: a conversation plus image sources -> a MediaPrompt (ids
with the image placeholders expanded to the processor's token counts, and the pixels)."""

from __future__ import annotations

from typing import Any

from lmforge.errors import UserError
from lmforge.infer.engine import MediaPrompt
from lmforge.multimodal.encode import text_only_message
from lmforge.multimodal.parts import MEDIA_COLUMNS, TAG
from lmforge.templates.encode import EncodeError


def media_prompt(
    frontend: Any,
    messages: list[dict],
    images: list[str],
    videos: list[str] = (),
    objects: Any = None,
    audios: list[str] = (),
    **kwargs: Any,
) -> MediaPrompt | list[int]:
    """Prompt ids plus the processed images/videos/audios for an engine (plain ids when there are none). A
    text-only model given media: a UserError saying so."""
    template = frontend.template
    if not images and not videos and not audios:
        return frontend.prompt_ids(messages, **kwargs)
    if not getattr(template, "takes_media", False):
        raise UserError(text_only_message(template))
    expanded, processed = template.expand(messages, images, videos, objects, strict=False, audios=audios)
    ids = frontend.prompt_ids(expanded, **kwargs)
    return MediaPrompt(ids, {**processed, "mm_token_type_ids": template.token_types(ids)})


def split_media_line(line: str) -> tuple[str, dict[str, list[str]]]:
    """An interactive line `<image>cat.png what is this?` -> ("<image>what is this?", {"images": ["/abs/cat.png"],
    "videos": [], "audios": []}): the word right after each `<image>` / `<video>` / `<audio>` is its path or URL
    (checked now: a bad one is a RowError)."""
    import re

    from lmforge.multimodal.media import resolve

    found: dict[str, list[str]] = {kind: [] for kind in TAG}
    pieces = re.split("(" + "|".join(TAG.values()) + ")", line)
    text = pieces[0]
    for tag, piece in zip(pieces[1::2], pieces[2::2]):
        kind = tag[1:-1]
        src, _, rest = piece.lstrip().partition(" ")
        if not src:
            raise EncodeError(f"{tag} needs a path or URL right after it, e.g. {tag}cat.png what is this?")
        found[kind].append(resolve(src, f"{kind}s[{len(found[kind])}]", None, kind))
        text += tag + rest
    return text, {MEDIA_COLUMNS[kind]: found[kind] for kind in found}
