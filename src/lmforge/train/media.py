"""Batches for vision-language (and audio) training: padded ids/labels/mask as train/collate.PaddedCollator, plus
the pixels and audio features.

Images are stored in the encoded rows as their sources (not pixels: a real image is megabytes of patches) and
processed here, batch by batch, with the same image processor that counted their tokens. The processor's output
is patches flattened per image, so a batch concatenates them (never stacks) together with image_grid_thw.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from lmforge.train.collate import PaddedCollator


@dataclass
class MediaCollator:
    template: Any  # a multimodal.encode.MediaTemplate
    pad_token_id: int

    def __call__(self, rows: list[dict]) -> dict:
        import torch

        batch = PaddedCollator(self.pad_token_id)(rows)
        if self.template.family.token_types:
            types = torch.zeros_like(batch["input_ids"])
            for i, r in enumerate(rows):
                types[i, : len(r["input_ids"])] = torch.tensor(self.template.token_types(r["input_ids"]))
            batch["mm_token_type_ids"] = types
        media = [json.loads(r["media"]) for r in rows if r.get("media")]
        images = [src for m in media for src in m.get("images", [])]
        videos = [src for m in media for src in m.get("videos", [])]
        audios = [src for m in media for src in m.get("audios", [])]
        if images or videos or audios:
            batch.update(self.template.process_media(images, videos, audios))
        return batch


def flat_allowed(template: Any, packing: bool, padding_free: bool) -> bool:
    """Padding-free and packed batches would drop the per-row pixels and the mrope position ids (built per row
    from the grids): a vision-language model falls back to padded batches, said in one line."""
    if not getattr(template, "takes_media", False):
        return True
    if packing or padding_free:
        flags = " / ".join(f for f, on in (("--packing", packing), ("--padding_free", padding_free)) if on)
        print(f"[lmforge] {flags}: vision-language rows are trained in padded batches (their mrope position ids "
              "and pixels are per row)")  # fmt: skip
    return False


def collator_for(template: Any, pad_token_id: int) -> Any:
    """The media collator for a vision-language template; None for a text one."""
    return MediaCollator(template, pad_token_id) if getattr(template, "takes_media", False) else None
