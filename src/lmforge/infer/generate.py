"""Load a model with its LoRA adapters for inference (generation itself is infer.engine.PtEngine)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lmforge.errors import UserError


def load_for_inference(model_dir: Path, adapters: list[str] | None = None, dtype: Any = None) -> Any:
    """The base model with LoRA adapters applied (peft's API), in eval mode."""
    import torch

    from lmforge.models.loader import load_model

    model = load_model(model_dir, dtype=dtype or torch.float32)
    for path in adapters or []:
        if not (Path(path) / "adapter_config.json").is_file():
            hint = "this is a full checkpoint: use --model" if (Path(path) / "config.json").is_file() else None
            raise UserError(f"--adapters {path}: no adapter_config.json", hint=hint or "pass a LoRA checkpoint folder")
        from lmforge.tuners.adapter import is_adapter_dir, load_adapters

        if is_adapter_dir(path):
            model = load_adapters(model, path)
            continue
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, path)
    return model.eval()
