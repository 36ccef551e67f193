"""Quantised loading for QLoRA: bitsandbytes 4/8-bit works on CPU too (it falls back to plain PyTorch kernels)."""

from __future__ import annotations

from typing import Any

from lmforge.errors import UserError


def quantization_config(tuner: Any, dtype: Any) -> Any | None:
    if tuner.quant_method is None:
        if tuner.quant_bits:
            raise UserError("--quant_bits without --quant_method", hint="add --quant_method bnb")
        return None
    if tuner.quant_method != "bnb":
        raise UserError(
            f"--quant_method {tuner.quant_method} is not available in this lmforge version",
            hint="use --quant_method bnb",
        )
    if tuner.quant_bits not in (4, 8):
        raise UserError("--quant_method bnb needs --quant_bits 4 or 8")
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is None:
        raise UserError("--quant_method bnb needs the bitsandbytes package", hint="pip install bitsandbytes")
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
