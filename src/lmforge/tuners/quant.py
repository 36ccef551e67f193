"""Quantised loading for QLoRA: bitsandbytes 4/8-bit works on CPU too (it falls back to plain PyTorch kernels), and
optimum-quanto int8/int4/int2 weights; HQQ cannot be loaded by this transformers version (a clear error)."""

from __future__ import annotations

import importlib.util
from typing import Any

from lmforge.errors import UserError


def quantization_config(tuner: Any, dtype: Any) -> Any | None:
    if tuner.quant_method is None:
        if tuner.quant_bits:
            raise UserError("--quant_bits without --quant_method", hint="add --quant_method bnb")
        return None
    if tuner.quant_method == "hqq":
        # transformers 5.24 refuses HqqConfig ("QuantizationMethod.HQQ is not available yet"), measured here
        raise UserError(
            "--quant_method hqq: transformers cannot load HQQ models in this version",
            hint="use --quant_method quanto --quant_bits 4|8 or --quant_method bnb",
        )
    if tuner.quant_method == "quanto":
        return _quanto(tuner)
    if tuner.quant_method == "eetq":  # CUDA only: args/rules.py refuses it on a machine without a GPU
        if importlib.util.find_spec("eetq") is None:
            raise UserError("--quant_method eetq needs the eetq package", hint="pip install eetq (CUDA)")
        from transformers import EetqConfig

        return EetqConfig("int8")
    if tuner.quant_bits not in (4, 8):
        raise UserError("--quant_method bnb needs --quant_bits 4 or 8")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise UserError("--quant_method bnb needs bitsandbytes: pip install 'lmforge[quant]'")
    import torch
    from transformers import BitsAndBytesConfig

    if tuner.quant_bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True)
    compute = getattr(torch, tuner.bnb_4bit_compute_dtype) if tuner.bnb_4bit_compute_dtype else dtype
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=tuner.bnb_4bit_quant_type,
        bnb_4bit_use_double_quant=tuner.bnb_4bit_use_double_quant,
        bnb_4bit_compute_dtype=compute,
    )


def _quanto(tuner: Any) -> Any:
    """optimum-quanto weight-only int8/int4/int2 (QLinear layers; LoRA trains on top, on CPU too)."""
    if tuner.quant_bits not in (2, 4, 8):
        raise UserError("--quant_method quanto needs --quant_bits 2, 4 or 8")
    if importlib.util.find_spec("optimum") is None or importlib.util.find_spec("optimum.quanto") is None:
        raise UserError("--quant_method quanto needs optimum-quanto: pip install 'lmforge[quant]'")
    from transformers import QuantoConfig

    return QuantoConfig(weights=f"int{tuner.quant_bits}")


PREQUANTIZED = ("gptq", "awq", "compressed-tensors", "fp8", "eetq")  # checkpoints whose linears peft cannot name


def quantized_linear_names(model: Any) -> list[str] | None:
    """Module names for `all-linear` on a pre-quantized GPTQ/AWQ/... checkpoint, else None. peft's `all-linear`
    matches nn.Linear and bitsandbytes layers only, so on a GPTQ export it finds nothing ("No `target_modules`
    passed"); their QuantLinear classes (gptqmodel's TorchAtenLinear, ...) are found by class name, as ms-swift's
    find_all_linears does. The output layer stays out, as with `all-linear`."""
    qc = getattr(model.config, "quantization_config", None)
    method = qc.get("quant_method") if isinstance(qc, dict) else getattr(qc, "quant_method", None)
    if str(getattr(method, "value", method)) not in PREQUANTIZED:
        return None
    head = model.get_output_embeddings()
    names = {n.split(".")[-1] for n, m in model.named_modules() if "Linear" in type(m).__name__ and m is not head}
    return sorted(names) or None
