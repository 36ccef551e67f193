"""Prompts with images for a vision-language engine: a conversation plus image sources -> a MediaPrompt (ids
with the image placeholders expanded to the processor's token counts, and the pixels)."""

from __future__ import annotations

from typing import Any

from lmforge.errors import UserError
from lmforge.infer.engine import MediaPrompt
from lmforge.multimodal.encode import text_only_message
from lmforge.multimodal.parts import TAG
from lmforge.templates.encode import EncodeError


def media_prompt(frontend: Any, messages: list[dict], images: list[str], **kwargs: Any) -> MediaPrompt | list[int]:
    """Prompt ids plus the processed images for an engine (plain ids when there are no images). A text-only
    model given images: a UserError saying so."""
    template = frontend.template
    if not images:
        return frontend.prompt_ids(messages, **kwargs)
    if not getattr(template, "takes_media", False):
        raise UserError(text_only_message(template))
    expanded, processed = template.expand(messages, images)
    ids = frontend.prompt_ids(expanded, **kwargs)
    return MediaPrompt(ids, {**processed, "mm_token_type_ids": template.token_types(ids)})


def split_media_line(line: str) -> tuple[str, list[str]]:
    """An interactive line `<image>cat.png what is this?` -> ("<image>what is this?", ["/abs/cat.png"]): the
    word right after each `<image>` is its path or URL (checked now: a bad one is a RowError)."""
    from lmforge.multimodal.media import resolve

    tag = TAG["image"]
    if tag not in line:
        return line, []
    pieces = line.split(tag)
    text, images = pieces[0], []
    for k, piece in enumerate(pieces[1:]):
        src, _, rest = piece.lstrip().partition(" ")
        if not src:
            raise EncodeError(f"{tag} needs a path or URL right after it, e.g. {tag}cat.png what is this?")
        images.append(resolve(src, f"images[{k}]", None))
        text += tag + rest
    return text, images
