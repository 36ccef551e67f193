"""Turn model/template flags into a local model directory, a tokenizer and a ChatTemplate."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmforge.models.loader import load_tokenizer, read_config, resolve_model_dir
from lmforge.models.registry import family_for
from lmforge.multimodal.encode import build_media_template
from lmforge.templates import get_template
from lmforge.templates.encode import ChatTemplate


@dataclass
class TokenizerSetup:
    model_dir: Path
    config: dict[str, Any]
    tokenizer: Any
    template: ChatTemplate
    template_name: str


def setup_tokenizer(model_args: Any, template_args: Any, tokenizer_dir: Path | None = None) -> TokenizerSetup:
    """Resolve --model, load its tokenizer (or the one in `tokenizer_dir`, e.g. a checkpoint's) and build the chat
    template. No weights are loaded."""
    model_dir = resolve_model_dir(
        model_args.model,
        gguf_file=model_args.gguf_file,
        use_hf=model_args.use_hf,
        revision=model_args.model_revision,
        token=model_args.hub_token,
    )
    config = read_config(model_dir)
    tokenizer = load_tokenizer(tokenizer_dir or model_dir, trust_remote_code=model_args.trust_remote_code)
    name = template_name_for(template_args.template, config.get("model_type"), model_args.model_type)
    kwargs = dict(
        system=template_args.system,
        max_length=template_args.max_length,
        truncation_strategy=template_args.truncation_strategy,
        loss_scale=template_args.loss_scale,
        enable_thinking=template_args.enable_thinking,
        agent_template=template_args.agent_template,
    )
    spec = get_template(name)
    # a vision-language model's template also takes images (None for a text-only model)
    template = build_media_template(tokenizer, spec, model_dir, config, template_args, **kwargs)
    template = template or ChatTemplate(tokenizer, spec, **kwargs)
    return TokenizerSetup(model_dir, config, tokenizer, template, name)


def template_name_for(flag: str | None, model_type: str | None, model_type_flag: str | None = None) -> str:
    """--template wins; else the model family's default; else the tokenizer's own template ('auto')."""
    if flag:
        return flag
    fam = family_for(model_type, model_type_flag)
    return fam.template if fam else "auto"
