"""The multimodal family table: one entry per vision-language family says everything lmforge needs to know about it.

An entry names the HF `model_type`s, the image processor (built without torchvision, see lmforge.thirdparty) or the
audio feature extractor, how an `<image>` / `<video>` / `<audio>` tag becomes placeholder text and how many tokens
each costs, the grounding coordinate convention, and which module prefixes are the vision (or audio) tower, the
aligner and the language model (for --freeze_vit, --freeze_aligner, --freeze_llm). Adding a family is one
`register_vl_family` call:

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
    image_processor: str  # "module:Class" of the image processor that needs no torchvision; "": no images
    processor_class: str  # the stock processor (its replace_*_token expands placeholders; processor_config.json)
    image_token: str = "<|image_pad|>"  # the token the processor repeats per image patch group ("": no images)
    video_token: str = "<|video_pad|>"  # "" : the family takes no video
    image_open: str = "<|vision_start|>"  # what the chat template puts around the token
    image_close: str = "<|vision_end|>"
    # audio: the feature extractor ("module:Class"), the token repeated per audio frame group, and the template's
    # frame around it ({n}: the audio's number in the conversation, from 1); "" : the family takes no audio
    feature_extractor: str = ""
    audio_token: str = ""
    audio_open: str = ""
    audio_close: str = ""
    # video frames: resize bounds of the family's video processor (pixels per frame) when --max_pixels is not given
    video_size: tuple[int, int] = (128 * 28 * 28, 768 * 28 * 28)
    video_budget: str = "frame"  # video_size bounds each frame, or "clip": the whole clip's pixels (Qwen3-VL)
    video_sampler: str = "lmforge.multimodal.video:frame_indices"  # frames picked as the family's video processor
    resizable: bool = True  # --max_pixels/--min_pixels apply (Qwen's dynamic resolution; LLaVA crops to one size)
    token_types: bool = True  # the model takes mm_token_type_ids (1 image, 2 video, 3 audio)
    # grounding: "abs" pixel coordinates of the resized image (Qwen2.5-VL), or "norm1000" (Qwen2-VL, Qwen3-VL)
    bbox: str = "norm1000"
    ref_text: str = "<|object_ref_start|>{ref}<|object_ref_end|>"  # what `<ref-object>` / `<bbox>` become
    box_text: str = "<|box_start|>{box}<|box_end|>"
    vision_tower: tuple[str, ...] = ("model.visual",)  # the media encoder (--freeze_vit): vision or audio tower
    aligner: tuple[str, ...] = ("model.visual.merger",)
    language_model: tuple[str, ...] = ("model.language_model", "lm_head")
    auto_class: str = "AutoModelForImageTextToText"  # the transformers auto class of the whole model
    processor_defaults: tuple[tuple[str, Any], ...] = ()  # image-processor kwargs when the folder has none
    name: str = ""

    @property
    def kinds(self) -> tuple[str, ...]:
        """The media kinds the family takes, of "image", "video", "audio"."""
        have = {"image": self.image_token, "video": self.video_token, "audio": self.audio_token}
        return tuple(k for k, token in have.items() if token)

    def frame_sampler(self) -> Callable:
        return _load(self.video_sampler)

    def image_processor_class(self) -> type:
        return _load(self.image_processor)

    def feature_extractor_class(self) -> type:
        return _load(self.feature_extractor)

    def processor_attributes(self) -> list[str]:
        """The stock processor's parts lmforge builds (never its video processor: it needs torchvision)."""
        return ["feature_extractor" if self.feature_extractor else "image_processor", "tokenizer"]

    def placeholder(self, replacement: str, kind: str = "image", index: int = 0) -> str:
        """The text one image/video/audio (the `index`-th of its kind in the conversation) becomes in a prompt:
        the processor's expansion of the token inside the template's frame, done on the string so the template's
        character offsets stay valid."""
        if kind == "audio":
            return self.audio_open.format(n=index + 1) + replacement + self.audio_close
        return self.image_open + replacement + self.image_close


def _load(spec: str) -> type:
    module, _, cls = spec.partition(":")
    return getattr(importlib.import_module(module), cls)


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


@register_vl_family("qwen2_audio")
def _qwen2_audio() -> VLFamily:
    """Qwen2-Audio: a Whisper-style audio tower on 128-bin log-mel features, a linear projector, Qwen2; each
    audio is `Audio k: <|audio_bos|><|AUDIO|>...<|audio_eos|>` as the published chat template writes it."""
    return VLFamily(
        model_types=("qwen2_audio",),
        image_processor="",
        processor_class="Qwen2AudioProcessor",
        image_token="",
        video_token="",
        feature_extractor="transformers:WhisperFeatureExtractor",
        audio_token="<|AUDIO|>",
        audio_open="Audio {n}: <|audio_bos|>",
        audio_close="<|audio_eos|>\n",
        resizable=False,
        token_types=False,
        vision_tower=("model.audio_tower",),
        aligner=("model.multi_modal_projector",),
        auto_class="AutoModelForMultimodalLM",
        processor_defaults=(("feature_size", 128),),
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
