"""Encoding rows with images for a vision-language model, token-exact with the processor.

The processor's own pipeline is: render the chat template (each image becomes `<|vision_start|><|image_pad|>
<|vision_end|>`), run the image processor, repeat each `<|image_pad|>` once per merged patch, tokenize. Here each
`<image>` tag is replaced by that *expanded* placeholder text before rendering, so the whole text-only machinery of
templates/encode.py (rendering, prefix-rendered loss mask, character offsets) runs unchanged and the ids equal the
processor's. Media tokens never carry loss, wherever the tag was.

Resize bounds: --max_pixels/--min_pixels, else ms-swift's MAX_PIXELS/MIN_PIXELS environment variables, else the
folder's preprocessor_config.json; the values used are saved in args.json (`media_run_args`) so infer, deploy and
export resize exactly as training did.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmforge.errors import UserError
from lmforge.multimodal.parts import MEDIA_COLUMNS, TAG
from lmforge.templates.encode import IGNORE, ChatTemplate, Encoded, EncodeError

if TYPE_CHECKING:
    from lmforge.multimodal.families import VLFamily


def pixel_bounds(template_args: Any) -> dict[str, int]:
    """{"shortest_edge": min, "longest_edge": max} from the flags, else MIN_PIXELS/MAX_PIXELS; only those set."""
    out = {}
    for key, flag, env in (("shortest_edge", "min_pixels", "MIN_PIXELS"), ("longest_edge", "max_pixels", "MAX_PIXELS")):
        value = getattr(template_args, flag, None)
        if value is None and os.environ.get(env):
            try:
                value = int(os.environ[env])
            except ValueError:
                raise UserError(f"{env}={os.environ[env]!r}: not a whole number of pixels", hint=f"e.g. {env}=200704")
        if value is not None:
            out[key] = value
    if len(out) == 2 and out["shortest_edge"] > out["longest_edge"]:
        raise UserError(f"--min_pixels {out['shortest_edge']} > --max_pixels {out['longest_edge']}", hint="swap them")
    return out


class MediaTemplate(ChatTemplate):
    """A ChatTemplate that also takes a row's media: `encode(messages, tools, media={"images": [...]})`."""

    takes_media = True

    def __init__(self, tokenizer: Any, spec: Any, *, family: VLFamily, image_processor: Any, **kwargs: Any):
        super().__init__(tokenizer, spec, **kwargs)
        self.family = family
        self.image_processor = image_processor
        self.image_token_id = tokenizer.convert_tokens_to_ids(family.image_token)
        self.video_token_id = tokenizer.convert_tokens_to_ids(family.video_token)
        if not isinstance(self.image_token_id, int) or self.image_token_id == tokenizer.unk_token_id:
            raise UserError(f"the tokenizer has no {family.image_token} token, which {family.name} models need")

    @property
    def pixels(self) -> dict[str, int]:
        """The resize bounds in use (what args.json records)."""
        size = self.image_processor.size
        get = size.get if isinstance(size, dict) else lambda k: getattr(size, k, None)
        return {"min_pixels": get("shortest_edge"), "max_pixels": get("longest_edge")}

    def process_images(self, sources: list[str]) -> dict[str, Any]:
        """pixel_values (patches of every image, concatenated) and image_grid_thw, as the processor gives them."""
        from lmforge.multimodal.media import load_image

        images = [load_image(s, f"images[{k}]") for k, s in enumerate(sources)]
        return dict(self.image_processor(images=images, return_tensors="pt"))

    def expand(self, messages: list[dict], images: list[str]) -> tuple[list[dict], dict[str, Any]]:
        """Messages with the k-th `<image>` replaced by its expanded placeholder; the processed images."""
        tag = TAG["image"]
        count = sum(str(m.get("content") or "").count(tag) for m in messages)
        if count != len(images):
            raise EncodeError(f"messages: {count} {tag} tags but {len(images)} image{'s' if len(images) != 1 else ''}")
        if not images:
            return messages, {}
        processed = self.process_images(images)
        sizes = iter(self.family.tokens_per_image(g, self.image_processor) for g in processed["image_grid_thw"])
        out = []
        for m in messages:
            content = m.get("content")
            if isinstance(content, str) and tag in content:
                pieces = content.split(tag)
                content = pieces[0] + "".join(self.family.image_text(next(sizes)) + p for p in pieces[1:])
                m = {**m, "content": content}
            out.append(m)
        return out, processed

    def encode(self, messages: list[dict], tools: list | None = None, media: dict | None = None) -> Encoded:
        media = media or {}
        for column in ("videos", "audios"):
            if media.get(column):
                raise EncodeError(f"{column}: {self.family.name} models take images only in this lmforge version")
        expanded, processed = self.expand(messages, list(media.get("images") or []))
        enc = super().encode(expanded, tools)
        media_ids = {self.image_token_id, self.video_token_id}
        labels = [IGNORE if t in media_ids else lab for t, lab in zip(enc.input_ids, enc.labels)]
        if processed and enc.truncated:
            want = sum(self.family.tokens_per_image(g, self.image_processor) for g in processed["image_grid_thw"])
            if sum(t == self.image_token_id for t in enc.input_ids) != want:
                raise EncodeError(f"--max_length {self.max_length} would cut through an image (--truncation_strategy)")
        if all(lab == IGNORE for lab in labels):
            raise EncodeError("no trained tokens (no assistant answer left after truncation)")
        return Encoded(enc.input_ids, labels, enc.truncated)

    def token_types(self, ids: list[int]) -> list[int]:
        """mm_token_type_ids: 1 for image tokens, 2 for video tokens, 0 for text (Qwen2-VL needs them)."""
        return [1 if t == self.image_token_id else 2 if t == self.video_token_id else 0 for t in ids]


def media_of(row: dict) -> dict[str, list[str]]:
    """The media columns a standard row carries (only those not empty)."""
    return {col: list(row[col]) for col in MEDIA_COLUMNS.values() if row.get(col)}


def build_media_template(
    tokenizer: Any, spec: Any, model_dir: Path, config: dict, template_args: Any, **kw: Any
) -> Any:
    """A MediaTemplate for a vision-language model's folder; None for a text-only model."""
    from lmforge.multimodal.families import vl_family_for
    from lmforge.thirdparty import vl_image_processor

    family = vl_family_for(config)
    if family is None:
        return None
    processor = vl_image_processor(family, model_dir, pixel_bounds(template_args))
    return MediaTemplate(tokenizer, spec, family=family, image_processor=processor, **kw)


def media_run_args(template: Any) -> dict[str, Any]:
    """What args.json records for a media template (the resize bounds used); {} for a text template."""
    return dict(template.pixels) if getattr(template, "takes_media", False) else {}


def text_only_message(template: Any) -> str:
    model = Path(str(getattr(template.tokenizer, "name_or_path", "") or "the model")).name
    return f"--model {model} is text-only: drop the images or pick a vision-language model"


def save_media_files(template: Any, out: Path) -> None:
    """A merged or exported vision-language model: the image processor with the resize bounds in use and
    processor_config.json naming the stock processor class (nothing for a text template)."""
    if getattr(template, "takes_media", False):
        from lmforge.thirdparty import save_vl_processor

        save_vl_processor(template.family, template.image_processor, Path(out))


def media_report(template: Any, encoded: Any) -> str | None:
    """`lmforge check`: how many images the usable rows carry and the tokens they cost after resizing."""
    if not getattr(template, "takes_media", False):
        return None
    import json

    rows = [json.loads(m) for m, e in zip(encoded["media"], encoded["error"]) if m and not e]
    images = sum(len(r.get("images", [])) for r in rows)
    tokens = sum(sum(t == template.image_token_id for t in ids) for ids in encoded["input_ids"])
    px = template.pixels
    return (
        f"  media: {images} images in {len(rows)} rows, {tokens} image tokens "
        f"(resized to {px['min_pixels']}..{px['max_pixels']} pixels)"
    )
