"""Tuner flags checked against the model before its weights load: the module names are built from config.json alone
on the meta device (no weights read, no memory for them), so a typo in --target_modules fails in one line at once
instead of after the model has loaded.

Matching follows peft: a name in --target_modules matches a module whose dotted name equals it or ends with
`.name`; `all-linear` matches every linear layer; --target_regex is matched in full against each dotted name.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from lmforge.errors import UserError

PEFT_TUNERS = ("lora", "adalora", "vera", "boft", "fourierft", "bone")  # the tuners that read --target_modules
WRAPPABLE = ("Linear", "Embedding", "Conv1d", "Conv2d", "Conv3d", "Conv1D")  # layer classes peft's tuners wrap


def model_modules(model_dir: Path, trust_remote_code: bool = False) -> dict[str, str] | None:
    """Dotted module name -> class name, from config.json on the meta device; None when the config cannot be
    built (the loader then reports the problem in its own words)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    except Exception:  # an unknown architecture or remote code: nothing to check against, not an error here
        return None
    return {name: type(m).__name__ for name, m in model.named_modules() if name}


def _matches(name: str, target: str) -> bool:
    return name == target or name.endswith("." + target)


def _linear_names(modules: dict[str, str]) -> str:
    names = sorted({n.rsplit(".", 1)[-1] for n, cls in modules.items() if cls in ("Linear", "Conv1D")})
    return ", ".join(names)


def _check_names(flag: str, wanted: list[str], modules: dict[str, str], wrappable: bool) -> None:
    for target in wanted:
        hits = [cls for name, cls in modules.items() if _matches(name, target)]
        if not hits:
            if wrappable:
                hint = f"its linear layers: {_linear_names(modules)}; or use all-linear"
            else:
                hint = f"its top-level modules: {', '.join(n for n in modules if n.count('.') == 1)}"
            raise UserError(f"--{flag} {target}: this model has no module of that name", hint=hint)
        if wrappable and not any(cls in WRAPPABLE for cls in hits):
            raise UserError(
                f"--{flag} {target}: names {hits[0]} modules, which the tuner cannot wrap",
                hint=f"name linear layers instead: {_linear_names(modules)}",
            )


def _check_layers(config: dict[str, Any], tuner: Any) -> None:
    layers = config.get("num_hidden_layers")
    if not isinstance(layers, int):
        return
    if tuner.tuner_type == "llamapro" and tuner.llamapro_num_new_blocks > layers:
        raise UserError(
            f"--llamapro_num_new_blocks {tuner.llamapro_num_new_blocks}: more than the model's {layers} layers",
            hint=f"use at most {layers} (one new block after each layer)",
        )
    if tuner.tuner_type == "reft":
        bad = [i for i in tuner.reft_layers if i >= layers]
        if bad:
            raise UserError(f"--reft_layers {bad}: the model has {layers} layers", hint=f"use 0..{layers - 1}")


def check_target_modules(model_dir: Path, tuner: Any, trust_remote_code: bool = False) -> None:
    """--target_modules, --target_regex and --modules_to_save against the model's module names, and the layer
    counts --llamapro_num_new_blocks and --reft_layers refer to; a one-line UserError naming the flag."""
    import json

    try:
        config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # no readable config.json: the loader says so in its own words
    _check_layers(config.get("text_config") or config, tuner)
    if tuner.tuner_type not in PEFT_TUNERS:
        return
    named = [t for t in tuner.target_modules if t != "all-linear"]
    keep = tuner.modules_to_save if tuner.tuner_type == "lora" else []
    if not (tuner.target_regex or named or keep):
        return  # all-linear: every model with a linear layer qualifies; skip building it
    modules = model_modules(Path(model_dir), trust_remote_code)
    if modules is None:
        return
    if tuner.target_regex:  # peft: the regex replaces the list
        if not any(re.fullmatch(tuner.target_regex, n) for n in modules):
            raise UserError(
                f"--target_regex {tuner.target_regex}: matches no module of this model",
                hint="it must match whole dotted names, e.g. .*self_attn\\.(q|v)_proj",
            )
    else:
        _check_names("target_modules", named, modules, wrappable=True)
    _check_names("modules_to_save", keep, modules, wrappable=False)
