"""Load a model with its adapters onto the best device and wrap it in the PyTorch engine."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lmforge.args import ModelArgs, TemplateArgs
    from lmforge.infer.pt import PtEngine


def best_device() -> str:
    """CUDA when present, else the CPU."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_for_inference(
    model_dir: Path,
    base_adapters: tuple[str, ...] | list[str] = (),
    named: dict[str, str] | None = None,
    *,
    dtype: Any = None,
    device: str | None = None,
    device_map: str | None = None,
    trust_remote_code: bool = False,
    attn_impl: str | None = None,
    task: str = "causal_lm",
    head: dict[str, Any] | None = None,
) -> Any:
    """The base model with adapters applied (peft's API), on its device, in eval mode. `base_adapters` stack and
    stay on; `named` are loaded side by side for `set_adapter`. Paths were checked by `runargs.check_adapters`.
    `task`/`head`: a classifier or embedding model (tasks.py) and its head's config fields."""
    from lmforge.models.loader import load_model, resolve_dtype

    if dtype is None or isinstance(dtype, str):
        dtype = resolve_dtype(dtype)  # bf16 where the hardware has bf16 units (1.7x on this CPU)
    device = device or best_device()
    # load straight onto a GPU; --device_map (several GPUs, offload) wins when given
    placement = device_map or (device if device != "cpu" else None)
    model = load_model(
        model_dir,
        dtype=dtype,
        device_map=placement,
        trust_remote_code=trust_remote_code,
        attn_impl=attn_impl,
        task=task,
        **(head or {}),
    )
    for path in base_adapters:
        from lmforge.tuners.adapter import is_adapter_dir, load_adapters

        if is_adapter_dir(path):
            model = load_adapters(model, path)
            continue
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, path)
    items = list((named or {}).items())
    if items:
        from peft import PeftModel

        if not hasattr(model, "peft_config"):
            model = PeftModel.from_pretrained(model, items[0][1], adapter_name=items[0][0])
            items = items[1:]
        for name, path in items:
            model.load_adapter(path, adapter_name=name)
    if not device_map:
        model = model.to(device)  # adapters (and anything loaded on the CPU) join the base
    return model.eval()


def load_pt_engine(
    model: str | Path | None,
    adapters: dict[str, str],
    *,
    dtype: Any = None,
    device: str | None = None,
    base_adapters: tuple[str, ...] = (),
    model_args: ModelArgs | None = None,
    template_args: TemplateArgs | None = None,
    tokenizer_dir: str | Path | None = None,
    max_batch_size: int = 16,
) -> PtEngine:
    """`load_engine(backend="pt")`: resolve the model, build the chat template, load weights, wrap."""
    from lmforge.args import ModelArgs, TemplateArgs
    from lmforge.infer.pt import PtEngine
    from lmforge.models.setup import setup_tokenizer

    margs = dataclasses.replace(model_args or ModelArgs(), model=None if model is None else str(model))
    setup = setup_tokenizer(margs, template_args or TemplateArgs(), Path(tokenizer_dir) if tokenizer_dir else None)
    loaded = load_for_inference(
        setup.model_dir,
        base_adapters,
        adapters,
        dtype=dtype if dtype is not None else margs.torch_dtype,
        device=device,
        device_map=margs.device_map,
        trust_remote_code=margs.trust_remote_code,
        attn_impl=margs.attn_impl,
    )
    ctx = setup.config.get("max_position_embeddings")
    if not adapters and not base_adapters and os.environ.get("LMFORGE_PACKED_LINEAR") == "1":
        from lmforge.thirdparty import packed_cpu_linears

        # opt-in until the whole suite has run with it: bf16 CPU layers only, batch-1 decode 1.5x, same greedy tokens
        packed_cpu_linears(loaded)
    return PtEngine(loaded, setup.template, max_batch_size, adapters=tuple(adapters), max_length=ctx, continuous=True)
