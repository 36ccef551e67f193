"""The EXPORTERS table behind `lmforge export --quant_method M`: one entry per method, torch-free, so every flag is
checked against it before a model loads (args/rules.py). The quantizing function itself is named "module:function"
and imported only when it runs."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from lmforge.errors import UserError
from lmforge.registry import Registry


@dataclass(frozen=True)
class Exporter:
    """How one method quantizes a (merged) model directory into a checkpoint transformers reloads."""

    bits: tuple[int, ...]  # the --quant_bits it supports
    target: str  # "module:function"; the function takes an export.quant.QuantJob and writes job.out
    packages: tuple[str, ...] = ()  # import names it needs; checked before anything loads
    install: str = ""  # the pip line that provides them
    gpu_only: str = ""  # why it needs a GPU ("" : runs on CPU)
    calibrated: bool = False  # takes calibration rows (--dataset, --quant_n_samples)
    grouped: bool = False  # uses --group_size


EXPORTERS: Registry[Exporter] = Registry("quantization method", "--quant_method")

EXPORTERS.register(
    "bnb",
    Exporter((4, 8), "lmforge.export.quant:export_bnb", ("bitsandbytes",), "pip install bitsandbytes"),
)
EXPORTERS.register(
    "gptq",
    Exporter(
        (2, 3, 4, 8),
        "lmforge.export.quant:export_gptq",
        ("optimum", "gptqmodel"),
        "pip install 'lmforge[gptq]' (gptqmodel pins numpy: use its own venv)",
        calibrated=True,
        grouped=True,
    ),
)
# measured here (mm-quant-tasks.md B.1): GPTQModel's AWQ raises "AWQ: CUDA is not available" on CPU, AutoAWQ's CPU
# output is garbage on transformers 5.24, and FineGrainedFP8Config raises "No GPU or XPU found"
EXPORTERS.register(
    "awq",
    Exporter(
        (4,),
        "lmforge.export.quant:export_awq",
        ("gptqmodel",),
        "pip install gptqmodel",
        gpu_only="its kernels and calibration need CUDA",
        calibrated=True,
        grouped=True,
    ),
)
EXPORTERS.register(
    "fp8",
    Exporter((8,), "lmforge.export.quant:export_fp8", gpu_only="FP8 quantization needs a GPU or XPU"),
)

GGUF_TYPES = ("f16", "bf16", "q8_0", "q4_k_m")


def cuda_available() -> bool:
    """Without importing torch where it cannot matter: no NVIDIA driver, no GPU."""
    if not Path("/proc/driver/nvidia").exists():
        return False
    import torch

    return torch.cuda.is_available()


def check_method(name: str, bits: int | None, group_size: int) -> Exporter:
    """The method's entry, or one line on what is wrong with the flags (bits, GPU)."""
    ex = EXPORTERS.lookup(name)
    if bits not in ex.bits:
        raise UserError(
            f"--quant_method {name} needs --quant_bits {' or '.join(map(str, ex.bits))}"
            + (f" (got {bits})" if bits is not None else "")
        )
    if ex.gpu_only and not cuda_available():
        raise UserError(
            f"--quant_method {name}: {ex.gpu_only}; no GPU here",
            hint="run scripts/gpu/quant_export.sh on a CUDA machine, or use --quant_method bnb/gptq here",
        )
    return ex


def check_packages(name: str, ex: Exporter) -> None:
    missing = [p for p in ex.packages if importlib.util.find_spec(p) is None]
    if missing:
        raise UserError(f"--quant_method {name} needs the {', '.join(missing)} package", hint=ex.install or None)


def check_group_size(group_size: int, config: dict, method: str) -> None:
    """Every quantized linear layer's input width must be a multiple of the group size (576 % 128 != 0 on
    SmolLM2: GPTQ quantizes, then its CPU kernel refuses to run)."""
    widths = {
        "hidden_size": config.get("hidden_size"),
        "intermediate_size": config.get("intermediate_size"),
    }
    heads, head_dim = config.get("num_attention_heads"), config.get("head_dim")
    if heads and head_dim:
        widths["num_attention_heads * head_dim"] = heads * head_dim
    bad = {k: v for k, v in widths.items() if isinstance(v, int) and v % group_size}
    if not bad:
        return
    key, width = next(iter(bad.items()))
    sizes = [w for w in widths.values() if isinstance(w, int)]
    fit = next((g for g in (256, 128, 64, 32, 16) if g < group_size and all(w % g == 0 for w in sizes)), None)
    raise UserError(
        f"--group_size {group_size} does not divide the model's {key} ({width}): --quant_method {method} "
        "needs every layer's input width to be a multiple of it",
        hint=f"use --group_size {fit}" if fit else "use a smaller --group_size",
    )


def default_output_dir(
    adapters: list[str], model: str | None, method: str | None, bits: int | None, gguf: bool
) -> Path:
    """ms-swift's naming: `<ckpt>-merged`, `<ckpt or model>-<method>-int<bits>`, `<ckpt or model>-gguf`."""
    base = adapters[0].rstrip("/") if adapters else Path(model or "SmolLM2-135M-Instruct").name
    if gguf:
        return Path(f"{base}-gguf")
    if method:
        return Path(f"{base}-{method}-int{bits}")
    return Path(f"{base}-merged")
