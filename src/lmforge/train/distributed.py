"""DeepSpeed ZeRO and FSDP settings for transformers' Trainer: names resolve to shipped config files.

On CPU, DeepSpeed works through the Trainer when it runs with `use_cpu=True` and gloo (set in
`shared_training_kwargs`) and `DS_ACCELERATOR=cpu` (set here, before DeepSpeed is imported). FSDP through
transformers/accelerate does not shard on CPU (it silently runs DDP), so --fsdp refuses to run there.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from lmforge.errors import UserError

CONFIGS = Path(__file__).parent / "ds_config"
ZERO_NAMES = ("zero0", "zero1", "zero2", "zero3", "zero2_offload", "zero3_offload")


def deepspeed_path(value: str | None) -> Path | None:
    """The DeepSpeed JSON for a name (ms-swift's names) or a user file, checked; None when not asked."""
    if value is None:
        return None
    name = value.removeprefix("default-")
    path = CONFIGS / f"{name}.json" if name in ZERO_NAMES else Path(value)
    if not path.is_file():
        raise UserError(f"--deepspeed {value}: no such config", hint=f"use one of {', '.join(ZERO_NAMES)} or a .json")
    try:
        json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"--deepspeed {path}: invalid JSON at line {e.lineno}: {e.msg}")
    import importlib.util

    if importlib.util.find_spec("deepspeed") is None:
        raise UserError("--deepspeed needs DeepSpeed: pip install 'lmforge[deepspeed]'")
    return path


def partitions_params(value: str | None) -> bool:
    """Whether --deepspeed shards the parameters themselves (ZeRO-3): modules then see whole weights only inside
    their own forward, which DeepSpeed's hooks gather."""
    path = deepspeed_path(value)
    return path is not None and json.loads(path.read_text()).get("zero_optimization", {}).get("stage") == 3


def deepspeed_config(value: str | None, on_gpu: bool) -> str | None:
    """deepspeed_path as the Trainer takes it; on CPU also points DeepSpeed at its CPU accelerator."""
    path = deepspeed_path(value)
    if path is None:
        return None
    if not on_gpu:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")  # DeepSpeed otherwise probes for CUDA and fails
    return str(path)


def fsdp_kwargs(value: str | None, on_gpu: bool) -> dict[str, Any]:
    """TrainingArguments fields for --fsdp (fsdp2 or a JSON file of fsdp_config)."""
    if value is None:
        return {}
    if not on_gpu:
        raise UserError(
            "--fsdp needs GPUs: on CPU transformers/accelerate run it as plain DDP without sharding",
            hint="on CPU shard with --deepspeed zero3 (NPROC_PER_NODE=2 lmforge sft ...)",
        )
    if value == "fsdp2":
        config: dict[str, Any] = {"fsdp_version": 2, "auto_wrap_policy": "TRANSFORMER_BASED_WRAP"}
        config.update({"reshard_after_forward": True, "state_dict_type": "FULL_STATE_DICT"})
        return {"fsdp": "full_shard auto_wrap", "fsdp_config": config}
    path = Path(value)
    if not path.is_file():
        raise UserError(f"--fsdp {value}: no such file", hint="use fsdp2 or a JSON file with fsdp_config fields")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"--fsdp {path}: invalid JSON at line {e.lineno}: {e.msg}")
    return {"fsdp": config.pop("fsdp", "full_shard auto_wrap"), "fsdp_config": config}
