"""Batched greedy/sampled generation with the PyTorch engine: left padding, each row stops at its own end."""

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
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, path)
    return model.eval()


def generate(
    model: Any,
    template: Any,
    conversations: list[list[dict]],
    max_new_tokens: int = 64,
    temperature: float = 0.0,
    top_p: float = 1.0,
) -> list[str]:
    """Answer each conversation; greedy when temperature is 0."""
    import torch

    tok = template.tokenizer
    prompts = [template.prompt_ids(c) for c in conversations]
    width = max(len(p) for p in prompts)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    eot = tok.convert_tokens_to_ids(template.end_of_turn)
    stop = sorted({t for t in (eot, tok.eos_token_id) if isinstance(t, int) and t >= 0})
    kwargs: dict[str, Any] = {"do_sample": temperature > 0}
    if temperature > 0:
        kwargs.update(temperature=temperature, top_p=top_p)
    with torch.inference_mode():
        out = model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=max_new_tokens,
            eos_token_id=stop,
            pad_token_id=pad,
            **kwargs,
        )
    return [tok.decode(row[width:], skip_special_tokens=True).strip() for row in out]
