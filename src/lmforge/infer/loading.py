"""Load a model with its adapters onto the best device and wrap it in the PyTorch engine."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmforge.errors import UserError

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
    cpu_linear: str = "default",
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
    _swap_cpu_linears(loaded, cpu_linear, bool(adapters or base_adapters))
    return PtEngine(loaded, setup.template, max_batch_size, adapters=tuple(adapters), max_length=ctx, continuous=True)


def _swap_cpu_linears(model: Any, choice: str, has_adapters: bool) -> None:
    """`--cpu_linear`: swap the CPU model's nn.Linear layers for a faster inference-only form
    (thirdparty.CPU_LINEARS). The flag rules refuse adapters and other backends before loading; the device and
    the loaded dtype are known only here."""
    from lmforge.thirdparty import CPU_LINEARS

    swap = CPU_LINEARS.get(choice)
    if swap is None:
        return
    device = next(model.parameters()).device.type
    if has_adapters or device != "cpu":
        where = "with adapters" if has_adapters else f"on {device}"
        raise UserError(f"--cpu_linear {choice} {where}: a CPU fast path for a plain model", hint="drop --cpu_linear")
    if swap(model) == 0:
        dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
        raise UserError(
            f"--cpu_linear {choice}: no layer of this {dtype} model could be swapped (torch lacks the op or the dtype)",
            hint="bf16_packed needs bf16 weights on a CPU with bf16 units, int4 bf16 weights, int8 bf16 or fp32",
        )
    _one_thread_for_one_token(model)  # after the swap: it hooks the output head the swap may have replaced


def _one_thread_for_one_token(model: Any) -> None:
    """A CPU decode step of one row is one gemv per layer, bound by memory and by the threads' hand-offs: it runs
    faster on one thread (embedded model, bf16 packed: 47 tokens/s on 1 thread against 28 on 2); prefill and
    batched steps keep every thread, and so does the output head. Forward pre-hooks pick the count per step from
    the token count."""
    import torch

    every = torch.get_num_threads()

    def pick(_module: Any, args: tuple, kwargs: dict) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is None:
            ids = kwargs.get("inputs_embeds")
        want = 1 if ids is not None and ids.shape[0] * ids.shape[1] == 1 else every
        if torch.get_num_threads() != want:
            torch.set_num_threads(want)

    def wide(_module: Any, _args: tuple) -> None:
        if torch.get_num_threads() != every:
            torch.set_num_threads(every)

    if every > 1:
        model.register_forward_pre_hook(pick, with_kwargs=True)
        # except the output head: one gemv over the whole vocabulary (28 MB in int8 for the embedded model), long
        # enough for every thread to pay (1.7 ms on one thread against 0.8 ms on two, thread switch included)
        head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        if head is not None:
            head.register_forward_pre_hook(wide)
