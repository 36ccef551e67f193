"""Model families: HF `model_type` -> defaults (template, system, stop words, LoRA targets).

A plain dict filled by a decorator. A plug-in (`--external_plugins my.py`) can add a family the same way:

    @register_family("mistral")
    def _mistral() -> ModelFamily:
        return ModelFamily(model_types=("mistral",), template="mistral")
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lmforge.errors import UserError


@dataclass(frozen=True)
class ModelFamily:
    model_types: tuple[str, ...]  # HF config.model_type values
    template: str  # a key of lmforge.templates.TEMPLATES
    default_system: str | None = None  # None: whatever the chat template itself renders
    stop_words: tuple[str, ...] = ()
    lora_target_modules: tuple[str, ...] = ("all-linear",)
    name: str = ""


FAMILIES: dict[str, ModelFamily] = {}


def register_family(name: str) -> Callable[[Callable[[], ModelFamily]], Callable[[], ModelFamily]]:
    def deco(fn: Callable[[], ModelFamily]) -> Callable[[], ModelFamily]:
        fam = fn()
        FAMILIES[name] = ModelFamily(**{**fam.__dict__, "name": name})
        return fn

    return deco


@register_family("qwen3")
def _qwen3() -> ModelFamily:
    # hybrid thinking: the official template renders an empty <think></think> for answers without reasoning
    return ModelFamily(model_types=("qwen3", "qwen3_moe"), template="qwen3", stop_words=("<|im_end|>", "<|endoftext|>"))


@register_family("qwen2")
def _qwen2() -> ModelFamily:
    return ModelFamily(
        model_types=("qwen2", "qwen2_moe"), template="qwen2_5", stop_words=("<|im_end|>", "<|endoftext|>")
    )


@register_family("llama")
def _llama() -> ModelFamily:
    # SmolLM2 (ChatML tokens) and Llama-3 (header tokens) share the llama architecture; the tokenizer's own
    # template tells them apart, so the template is resolved from the tokenizer (see templates.resolve_template).
    return ModelFamily(model_types=("llama",), template="auto", stop_words=("<|im_end|>", "<|eot_id|>"))


@register_family("qwen2_vl")
def _qwen2_vl() -> ModelFamily:
    # vision-language: multimodal/families.py has the media side (processor, placeholders, frozen parts)
    return ModelFamily(
        model_types=("qwen2_vl", "qwen2_5_vl"), template="qwen2_vl", stop_words=("<|im_end|>", "<|endoftext|>")
    )


@register_family("qwen3_vl")
def _qwen3_vl() -> ModelFamily:
    return ModelFamily(
        model_types=("qwen3_vl", "qwen3_vl_moe"), template="auto", stop_words=("<|im_end|>", "<|endoftext|>")
    )


def family_for(model_type: str | None, override: str | None = None) -> ModelFamily | None:
    """The family for an HF model_type, or the one named by --model_type."""
    if override:
        if override in FAMILIES:
            return FAMILIES[override]
        for fam in FAMILIES.values():
            if override in fam.model_types:
                return fam
        raise UserError(f"unknown --model_type {override!r}; known: {', '.join(sorted(FAMILIES))}")
    for fam in FAMILIES.values():
        if model_type in fam.model_types:
            return fam
    return None
