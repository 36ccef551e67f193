"""ms-swift v2 / v3 flag names, rewritten to today's (v4) before parsing, each with a one-line deprecation note.

`--sft_type lora` (v2), `--train_type lora` (v3) and `--tuner_type lora` (v4) are the same run. A name here is
rewritten only where it is not a flag of its own (`--model_type` is one; only its v2 form, a model name such as
`qwen2-7b-instruct`, is rewritten to the family). Sources: ms-swift v2.6 `swift/llm/utils/argument.py`, v3's
`swift/llm/argument/`, and the v4 renames (train_type -> tuner_type). Import-light (errors.py only).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32", "auto": "auto"}
V2_MODEL_TYPE = re.compile(r"([a-z][a-z_]*\d*(?:_\d+)?)-.*\d.*")  # qwen2-7b-instruct, llama3-8b, qwen2_5-7b-instruct


@dataclass(frozen=True)
class Legacy:
    new: str | None  # today's flag (None: dropped, it has no effect here)
    since: str  # "v2", "v3": the last ms-swift major that had the old name
    convert: Callable[[list[str]], list[str]] | None = None  # old values -> new tokens (flag included)
    applies: Callable[[list[str]], bool] | None = None  # for a name that is also a current flag: when to rewrite


def _values(flag: str, mapping: dict[str, str]) -> Callable[[list[str]], list[str]]:
    def convert(values: list[str]) -> list[str]:
        return [f"--{flag}", *(mapping.get(v.lower(), v) for v in values)]

    return convert


def _target_modules(values: list[str]) -> list[str]:
    special = {"all": "all-linear", "auto": "all-linear", "default": "all-linear"}  # v2's names for the default set
    return ["--target_modules", *dict.fromkeys(special.get(v.lower(), v) for v in values)]


def _quantization_bit(values: list[str]) -> list[str]:
    bits = values[0] if values else "0"
    return [] if bits == "0" else ["--quant_method", "bnb", "--quant_bits", bits]


def _flash_attn(values: list[str]) -> list[str]:
    on = (values[0] if values else "true").lower() in ("true", "1", "yes")
    return ["--attn_impl", "flash_attention_2"] if on else []


V2_FAMILIES = {"qwen1half": "qwen2", "qwen2_5": "qwen2", "llama2": "llama", "llama3": "llama", "llama3_1": "llama"}
V2_FAMILIES |= {"llama3_2": "llama", "qwen3": "qwen3", "qwen2": "qwen2", "smollm2": "llama"}


def _v2_model_type(values: list[str]) -> list[str]:
    """v2's model_type named one model (qwen2-7b-instruct); here it is the family (qwen2)."""
    prefixes = (V2_MODEL_TYPE.fullmatch(v.lower()).group(1) for v in values)
    return ["--model_type", *(V2_FAMILIES.get(p, p) for p in prefixes)]


def _sample(hint: str) -> Callable[[list[str]], list[str]]:
    def convert(values: list[str]) -> list[str]:
        from lmforge.errors import UserError

        raise UserError(f"this ms-swift v2 flag has no lmforge equivalent (value {' '.join(values)})", hint=hint)

    return convert


LEGACY: dict[str, Legacy] = {
    "sft_type": Legacy("tuner_type", "v2"),
    "train_type": Legacy("tuner_type", "v3"),
    "model_id_or_path": Legacy("model", "v2"),
    "model_type": Legacy(
        "model_type", "v2", _v2_model_type, lambda vs: any(V2_MODEL_TYPE.fullmatch(v.lower()) for v in vs)
    ),
    "custom_train_dataset_path": Legacy("dataset", "v2"),
    "custom_val_dataset_path": Legacy("val_dataset", "v2"),
    "dataset_test_ratio": Legacy("split_dataset_ratio", "v2"),
    "lora_target_modules": Legacy("target_modules", "v2", _target_modules),
    "lora_dropout_p": Legacy("lora_dropout", "v2"),
    "lora_bias_trainable": Legacy("lora_bias", "v2"),
    "batch_size": Legacy("per_device_train_batch_size", "v2"),
    "eval_batch_size": Legacy("per_device_eval_batch_size", "v2"),
    "dtype": Legacy("torch_dtype", "v2", _values("torch_dtype", DTYPES)),
    "quantization_bit": Legacy("quant_bits", "v2", _quantization_bit),
    "bnb_4bit_comp_dtype": Legacy("bnb_4bit_compute_dtype", "v2", _values("bnb_4bit_compute_dtype", DTYPES)),
    "use_flash_attn": Legacy("attn_impl", "v2", _flash_attn),
    "ckpt_dir": Legacy("adapters", "v2"),
    "load_dataset_config": Legacy("load_data_args", "v2"),
    "merge_lora_and_save": Legacy("merge_lora", "v2"),
    "custom_register_path": Legacy("external_plugins", "v3"),
    "evaluation_strategy": Legacy(None, "v2"),  # evaluation follows --eval_steps (or --save_steps)
    "save_strategy": Legacy(None, "v2"),
    "check_dataset_strategy": Legacy(None, "v2"),
    "add_output_dir_suffix": Legacy(None, "v2"),
    "train_dataset_sample": Legacy("dataset", "v2", _sample("sample with --dataset NAME#N")),
    "self_cognition_sample": Legacy("dataset", "v2", _sample("add --dataset self-cognition#N")),
}


def upgrade(argv: list[str], specs: dict[str, Any]) -> list[str]:
    """argv with old ms-swift names rewritten to today's; one note per old name on stderr."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        tok = argv[i]
        name, eq, inline = tok[2:].partition("=")
        key = name.replace("-", "_")
        old = LEGACY.get(key) if tok.startswith("--") else None
        j, values = i + 1, [inline] if eq else []
        while j < len(argv) and not argv[j].startswith("--"):
            values.append(argv[j])
            j += 1
        spec = specs.get(key)
        current = spec is not None and getattr(spec, "name", key) == key  # a flag of its own, not an alias
        if old is None or (current and (old.applies is None or not old.applies(values))):
            out.append(tok)
            i += 1
            continue
        if key == "model_type" and not {"--model", "--model_id_or_path"} & {t.partition("=")[0] for t in argv}:
            from lmforge.errors import UserError

            raise UserError(
                f"--model_type {' '.join(values)}: ms-swift v2 named the model by its type",
                hint="pass --model <hub id or local folder>, e.g. --model Qwen/Qwen2-7B-Instruct",
            )
        new = old.convert(values) if old.convert else ([f"--{old.new}", *values] if old.new else [])
        out += new
        if old.new == key:  # same name, old meaning (v2's model_type named a model, today's names its family)
            note = f"--{key} {' '.join(values)} is ms-swift {old.since}'s form; read as {' '.join(new)}"
        else:
            what = f"use --{old.new}" if old.new else "it has no effect here and is ignored"
            note = f"--{key} is ms-swift {old.since}'s name; {what}"
        print(f"[lmforge] {note} (deprecated)", file=sys.stderr)
        i = j
    return out
