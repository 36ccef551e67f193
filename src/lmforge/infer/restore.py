"""`--adapters CKPT` alone restores model, template, system prompt and dtype from the checkpoint's args.json
(explicit flags win; `--load_args false` turns it off)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lmforge.errors import UserError

# args.json key -> (group, flag)
_RESTORED = {
    "model_dir": ("model", "model"),
    "model_type": ("model", "model_type"),
    "template": ("template", "template"),
    "system": ("template", "system"),
    "max_length": ("template", "max_length"),
    "enable_thinking": ("template", "enable_thinking"),
}


def check_adapter_dir(path: str) -> Path:
    p = Path(path)
    if (p / "adapter_config.json").is_file():
        return p
    if (p / "config.json").is_file():
        raise UserError(
            f"--adapters {path} is a full-weight checkpoint, not a LoRA adapter", hint=f"pass it as --model {path}"
        )
    raise UserError(f"--adapters {path}: no adapter_config.json here", hint="pass a checkpoint-N folder of a LoRA run")


def read_run_args(path: Path) -> dict[str, Any] | None:
    for candidate in (path / "args.json", path.parent / "args.json"):
        if candidate.is_file():
            return json.loads(candidate.read_text(encoding="utf-8"))
    return None


def restore_args(args: Any, load_args: bool) -> dict[str, Any] | None:
    """Fill model/template flags from the first adapter's (or the model dir's) args.json; returns that dict."""
    adapters = [str(check_adapter_dir(a)) for a in args.tuner.adapters]
    source = Path(adapters[0]) if adapters else (Path(args.model.model) if args.model.model else None)
    saved = read_run_args(source) if source and source.exists() else None
    if not load_args or not saved:
        return saved
    for key, (group, name) in _RESTORED.items():
        if name in args.explicit or key not in saved or saved[key] is None:
            continue
        if key == "model_dir" and not adapters:
            continue  # --model already points at the (merged) model itself
        setattr(getattr(args, group), name, saved[key])
    return saved


def tokenizer_source(args: Any) -> Path | None:
    """A LoRA checkpoint carries the tokenizer with the chat template used in training: prefer it."""
    if args.tuner.adapters and (Path(args.tuner.adapters[0]) / "tokenizer_config.json").is_file():
        return Path(args.tuner.adapters[0])
    return None
