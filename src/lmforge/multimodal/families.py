"""The multimodal family table: one entry per vision-language family says everything lmforge needs to know about it.

An entry names the HF `model_type`s, the image processor (built without torchvision, see thirdparty.py), how an
`<image>` tag becomes placeholder text and how many tokens each image costs, the grounding coordinate convention,
and which module prefixes are the vision tower, the aligner and the language model (for --freeze_vit,
--freeze_aligner, --freeze_llm). Adding a family is one `register_vl_family` call:

    @register_vl_family("myvl")
    def _myvl() -> VLFamily:
        return VLFamily(model_types=("myvl",), image_processor="transformers.models....MyImageProcessorPil", ...)

Torch-free at import.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmforge.registry import Registry


@dataclass(frozen=True)
class VLFamily:
    model_types: tuple[str, ...]
    image_processor: str  # "module:Class" of the image processor that needs no torchvision
    processor_class: str  # the stock processor (its replace_*_token expands placeholders; processor_config.json)
    image_token: str = "<|image_pad|>"  # the token the processor repeats per image patch group
    video_token: str = "<|video_pad|>"  # "" : the family takes no video
    image_open: str = "<|vision_start|>"  # what the chat template puts around the token
    image_close: str = "<|vision_end|>"
    # video frames: resize bounds of the family's video processor (pixels per frame) when --max_pixels is not given
    video_size: tuple[int, int] = (128 * 28 * 28, 768 * 28 * 28)
    video_budget: str = "frame"  # video_size bounds each frame, or "clip": the whole clip's pixels (Qwen3-VL)
    video_sampler: str = "lmforge.multimodal.video:frame_indices"  # frames picked as the family's video processor
    resizable: bool = True  # --max_pixels/--min_pixels apply (Qwen's dynamic resolution; LLaVA crops to one size)
    token_types: bool = True  # the model takes mm_token_type_ids (1 image, 2 video)
    # grounding: "abs" pixel coordinates of the resized image (Qwen2.5-VL), or "norm1000" (Qwen2-VL, Qwen3-VL)
    bbox: str = "norm1000"
    ref_text: str = "<|object_ref_start|>{ref}<|object_ref_end|>"  # what `<ref-object>` / `<bbox>` become
    box_text: str = "<|box_start|>{box}<|box_end|>"
    vision_tower: tuple[str, ...] = ("model.visual",)
    aligner: tuple[str, ...] = ("model.visual.merger",)
    language_model: tuple[str, ...] = ("model.language_model", "lm_head")
    auto_class: str = "AutoModelForImageTextToText"  # the transformers auto class of the whole model
    processor_defaults: tuple[tuple[str, Any], ...] = ()  # image-processor kwargs when the folder has none
    name: str = ""

    def image_processor_class(self) -> type:
        module, _, cls = self.image_processor.partition(":")
        return getattr(importlib.import_module(module), cls)

    def frame_sampler(self) -> Callable:
        module, _, fn = self.video_sampler.partition(":")
        return getattr(importlib.import_module(module), fn)

    def placeholder(self, replacement: str) -> str:
        """The text one image/video becomes in a prompt: the processor's expansion of the token inside the
        template's frame, done on the string so the template's character offsets stay valid."""
        return self.image_open + replacement + self.image_close


VL_FAMILIES: Registry[VLFamily] = Registry("vision-language family", "--model_type")


def register_vl_family(name: str) -> Callable[[Callable[[], VLFamily]], Callable[[], VLFamily]]:
    def deco(fn: Callable[[], VLFamily]) -> Callable[[], VLFamily]:
        fam = fn()
        VL_FAMILIES.register(name, VLFamily(**{**fam.__dict__, "name": name}))
        return fn

    return deco


_QWEN_PIL = "transformers.models.qwen2_vl.image_processing_pil_qwen2_vl:Qwen2VLImageProcessorPil"


@register_vl_family("qwen2_vl")
def _qwen2_vl() -> VLFamily:
    return VLFamily(model_types=("qwen2_vl",), image_processor=_QWEN_PIL, processor_class="Qwen2VLProcessor")


@register_vl_family("qwen2_5_vl")
def _qwen2_5_vl() -> VLFamily:
    return VLFamily(
        model_types=("qwen2_5_vl",),
        image_processor=_QWEN_PIL,
        processor_class="Qwen2_5_VLProcessor",
        bbox="abs",
    )


@register_vl_family("qwen3_vl")
def _qwen3_vl() -> VLFamily:
    return VLFamily(
        model_types=("qwen3_vl", "qwen3_vl_moe"),
        image_processor=_QWEN_PIL,
        processor_class="Qwen3VLProcessor",
        processor_defaults=(("patch_size", 16), ("image_mean", [0.5] * 3), ("image_std", [0.5] * 3)),
        video_size=(128 * 32 * 32, 768 * 32 * 32),
        video_budget="clip",
        video_sampler="lmforge.multimodal.video:qwen3_frame_indices",
    )


@register_vl_family("llava")
def _llava() -> VLFamily:
    """LLaVA (llava-hf folders): a CLIP-style tower, a projector, `<image>` repeated once per patch; fixed size."""
    return VLFamily(
        model_types=("llava",),
        image_processor="transformers.models.llava.image_processing_pil_llava:LlavaImageProcessorPil",
        processor_class="LlavaProcessor",
        image_token="<image>",
        video_token="",
        image_open="",
        image_close="",
        resizable=False,
        token_types=False,
        ref_text="{ref}",  # ms-swift's default grounding text
        box_text="[{box}]",
        vision_tower=("model.vision_tower",),
        aligner=("model.multi_modal_projector",),
    )


def vl_family_for(config: dict[str, Any]) -> VLFamily | None:
    """The family of a model's config.json, or None for a text-only model."""
    model_type = config.get("model_type")
    return next((f for f in VL_FAMILIES.values() if model_type in f.model_types), None)


def vl_family_of_dir(model_dir: str | Path) -> VLFamily | None:
    import json

    try:
        return vl_family_for(json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None
