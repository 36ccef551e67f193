"""The quantizing functions named by export/methods.py EXPORTERS: each reads a (merged) HF model directory and
writes a checkpoint that plain `transformers.AutoModelForCausalLM.from_pretrained` reloads with its own
`quantization_config` (as ms-swift's `swift export --quant_method` does)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmforge.errors import UserError


@dataclass
class QuantJob:
    src: Path  # the model to quantize: a merged export or the --model directory, weights in their own dtype
    out: Path  # the staging folder to write weights and config into
    bits: int
    group_size: int
    dtype: Any  # the source's torch dtype (compute dtype of the quantized layers)
    tokenizer: Any
    calibration: list[str] = field(default_factory=list)  # rows rendered with the run's template, --max_length


def _load(job: QuantJob, config: Any, **kwargs: Any) -> Any:
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(job.src, dtype=job.dtype, quantization_config=config, **kwargs)
    except (ImportError, RuntimeError, ValueError) as e:
        reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise UserError(f"quantizing {job.src} failed ({reason})")


def export_bnb(job: QuantJob) -> None:
    """bitsandbytes NF4 (double-quantized constants) or LLM.int8: quantized while loading, saved as is."""
    from transformers import BitsAndBytesConfig

    if job.bits == 8:
        config = BitsAndBytesConfig(load_in_8bit=True)
    else:
        config = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=job.dtype,
        )
    model = _load(job, config, device_map=_device())
    model.save_pretrained(job.out)


def export_gptq(job: QuantJob) -> None:
    """GPTQ through transformers' GPTQConfig (optimum + gptqmodel underneath), calibrated on the run's own rows."""
    from transformers import GPTQConfig

    # GPTQModel's default CPU pool is (cores+1)//2 workers, but its model loader asks for 2: on a 2-core machine
    # that is "Virtual pool 'model_loader:cpu' requests 2 workers but parent 'cpu' only has 1" (measured)
    os.environ.setdefault("GPTQMODEL_CPU_WORKERS", str(max(2, (os.cpu_count() or 2) // 2)))
    config = GPTQConfig(
        bits=job.bits,
        group_size=job.group_size,
        dataset=list(job.calibration),
        tokenizer=job.tokenizer,
        model_seqlen=max(len(job.tokenizer(t)["input_ids"]) for t in job.calibration),
    )
    model = _load(job, config, device_map=_device())
    model.save_pretrained(job.out)


def export_awq(job: QuantJob) -> None:
    """AWQ through GPTQModel (CUDA only: the rules refuse it on CPU before this runs)."""
    from gptqmodel import GPTQModel, QuantizeConfig

    config = QuantizeConfig(bits=job.bits, group_size=job.group_size, quant_method="awq")
    model = GPTQModel.load(str(job.src), config)
    model.quantize(list(job.calibration))
    model.save(str(job.out))


def export_fp8(job: QuantJob) -> None:
    """Fine-grained FP8 weights (block-wise scales), as transformers and vLLM load them; GPU only."""
    from transformers import FineGrainedFP8Config

    model = _load(job, FineGrainedFP8Config(), device_map="cuda")
    model.save_pretrained(job.out)


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
