"""LLaMA-Factory training YAMLs, read as they are: each key becomes lmforge's flag, `stage` picks the command.

`lmforge sft lf.yaml` runs it (stage dpo|kto|rm|ppo switches to `lmforge rlhf --rlhf_type ...`, stage pt to
`lmforge pt`); `lmforge migrate lf.yaml` prints the same run as an lmforge command line and YAML. Keys are read
from LLaMA-Factory's documented hparams (model_args, data_args, finetuning_args, HF TrainingArguments). Where
LLaMA-Factory's default differs from lmforge's and changes the run (lora_alpha = 2 * rank, lora_dropout 0, HF's
AdamW and scheduler defaults, cutoff_len 2048), the default is written out, so both tools train the same thing.
Keys that would change the run but have no lmforge equivalent are refused, all named in one message.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmforge.args.parser import dict_tokens, flag_specs, is_config_file, read_config
from lmforge.errors import UserError

STAGES = {"sft": ("sft", None), "pt": ("pt", None), "dpo": ("rlhf", "dpo"), "kto": ("rlhf", "kto")}
STAGES |= {"rm": ("rlhf", "rm"), "ppo": ("rlhf", "ppo")}
SIGNATURE = ("model_name_or_path", "stage", "finetuning_type")  # keys no lmforge/ms-swift config has

# same meaning, other name (or the same name): LLaMA-Factory key -> lmforge flag
RENAMED = {
    "model_name_or_path": "model",
    "trust_remote_code": "trust_remote_code",
    "lora_rank": "lora_rank",
    "lora_alpha": "lora_alpha",
    "lora_dropout": "lora_dropout",
    "use_dora": "use_dora",
    "use_rslora": "use_rslora",
    "loraplus_lr_ratio": "lorap_lr_ratio",
    "cutoff_len": "max_length",
    "per_device_train_batch_size": "per_device_train_batch_size",
    "per_device_eval_batch_size": "per_device_eval_batch_size",
    "gradient_accumulation_steps": "gradient_accumulation_steps",
    "learning_rate": "learning_rate",
    "num_train_epochs": "num_train_epochs",
    "max_steps": "max_steps",
    "lr_scheduler_type": "lr_scheduler_type",
    "warmup_ratio": "warmup_ratio",
    "weight_decay": "weight_decay",
    "adam_beta2": "adam_beta2",
    "max_grad_norm": "max_grad_norm",
    "logging_steps": "logging_steps",
    "save_steps": "save_steps",
    "save_total_limit": "save_total_limit",
    "eval_steps": "eval_steps",
    "seed": "seed",
    "data_seed": "data_seed",
    "output_dir": "output_dir",
    "resume_from_checkpoint": "resume_from_checkpoint",
    "deepspeed": "deepspeed",
    "dataloader_num_workers": "dataloader_num_workers",
    "preprocessing_num_workers": "dataset_num_proc",
    "streaming": "streaming",
    "packing": "packing",
    "neat_packing": "packing",  # lmforge's packing keeps attention per row, as neat_packing does
    "default_system": "system",
    "enable_thinking": "enable_thinking",
    "pref_beta": "beta",
    "pref_ftx": "rpo_alpha",
    "kto_chosen_weight": "desirable_weight",
    "kto_rejected_weight": "undesirable_weight",
    "ref_model": "ref_model",
    "reward_model": "reward_model",
    "ppo_epochs": "num_ppo_epochs",
    "max_new_tokens": "max_completion_length",  # LLaMA-Factory's PPO rollout length (generating_args)
    "use_galore": "use_galore",
    "galore_rank": "galore_rank",
    "galore_update_interval": "galore_update_proj_gap",
    "galore_scale": "galore_scale",
    "enable_liger_kernel": "use_liger_kernel",
}
# no effect on what is trained here (lmforge always plots, never overwrites a run, has no DDP timeout knob ...)
NO_EFFECT = {
    "do_train",
    "overwrite_output_dir",
    "plot_loss",
    "ddp_timeout",
    "save_only_model",
    "logging_dir",
    "preprocessing_batch_size",
    "save_strategy",
    "eval_strategy",
    "evaluation_strategy",
    "include_num_input_tokens_seen",
    "bf16_full_eval",
    "ddp_find_unused_parameters",
}
# LLaMA-Factory defaults (hparams + HF TrainingArguments) that differ from lmforge's; applied when a key is absent
LF_DEFAULTS = {
    "lora_dropout": 0.0,
    "learning_rate": 5e-5,
    "weight_decay": 0.0,
    "adam_beta2": 0.999,
    "lr_scheduler_type": "linear",
    "per_device_train_batch_size": 8,
    "gradient_accumulation_steps": 1,
    "logging_steps": 500,
    "cutoff_len": 2048,
}
TEMPLATES = {"qwen": "qwen2_5", "qwen2_5": "qwen2_5", "qwen3": "qwen3", "llama3": "llama3", "chatml": "chatml"}
TEMPLATES |= {"qwen3_nothink": "auto", "smollm2": "smollm2"}  # the 2507 models' own jinja has no think block
DTYPES = {"bf16": "bfloat16", "pure_bf16": "bfloat16", "fp16": "float16"}
ATTN = {"fa2": "flash_attention_2", "sdpa": "sdpa", "disabled": "eager", "eager": "eager"}


@dataclass
class Translation:
    command: str  # sft, pt or rlhf
    flags: dict[str, Any] = field(default_factory=dict)  # lmforge flag -> value, in the file's order
    no_effect: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # "key: why"


def is_llamafactory(data: dict[str, Any]) -> bool:
    return any(k in data for k in SIGNATURE)


def _split(value: Any) -> list[str]:
    return value if isinstance(value, list) else [v.strip() for v in str(value).split(",") if v.strip()]


def _rows(path: Path) -> int | None:
    """Rows of a local .json/.jsonl file (None when unknown): max_samples above it takes the whole file."""
    try:
        if path.suffix == ".jsonl":
            with path.open(encoding="utf-8") as f:
                return sum(1 for line in f if line.strip())
        if path.suffix == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            return len(data) if isinstance(data, list) else None
    except (OSError, ValueError):
        return None
    return None


def _datasets(t: Translation, data: dict[str, Any], key: str, flag: str) -> None:
    """dataset / eval_dataset names from dataset_dir/dataset_info.json; max_samples as lmforge's #N."""
    info_path = Path(str(data.get("dataset_dir", "data"))) / "dataset_info.json"
    info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else {}
    if info_path.is_file() and str(info_path) not in t.flags.get("custom_dataset_info", []):
        t.flags.setdefault("custom_dataset_info", []).append(str(info_path))
    names = []
    for name in _split(data[key]):
        n = data.get("max_samples")
        fname = (info.get(name) or {}).get("file_name")
        rows = _rows(info_path.parent / fname) if fname else None
        # lmforge's #N above a dataset's size repeats rows; LLaMA-Factory's max_samples only caps
        names.append(f"{name}#{n}" if n and (rows is None or int(n) < rows) else name)
    t.flags[flag] = names


def _stage(t: Translation, value: Any, _data: dict[str, Any]) -> None:
    if value not in STAGES:
        t.refused.append(f"stage: {value} (lmforge runs {', '.join(STAGES)})")
        return
    t.command, rlhf_type = STAGES[value]
    if rlhf_type:
        t.flags["rlhf_type"] = rlhf_type


def _finetuning_type(t: Translation, value: Any, data: dict[str, Any]) -> None:
    if value == "freeze":
        _freeze(t, data)
    elif value in ("lora", "full"):
        t.flags["tuner_type"] = value
    else:
        t.refused.append(f"finetuning_type: {value} (LLaMA-Factory's are lora, freeze and full)")


def _layer_count(model: Any) -> int | None:
    """num_hidden_layers of a local model folder (None for a hub id or an unreadable config)."""
    try:
        cfg = json.loads((Path(str(model)) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    n = cfg.get("num_hidden_layers", (cfg.get("text_config") or {}).get("num_hidden_layers"))
    return n if isinstance(n, int) else None


def _freeze(t: Translation, data: dict[str, Any]) -> None:
    """finetuning_type freeze: full training of the last (or, negative, first) N decoder layers, as
    LLaMA-Factory's freeze_trainable_layers / _modules / freeze_extra_modules pick them."""
    layers = _layer_count(data.get("model_name_or_path"))
    if layers is None:
        t.refused.append("finetuning_type: freeze (needs a local model_name_or_path: the layer count comes from it)")
        return
    n = int(data.get("freeze_trainable_layers", 2))
    picked = range(max(layers - n, 0), layers) if n > 0 else range(min(-n, layers))
    modules = _split(data.get("freeze_trainable_modules", "all"))
    inside = [""] if modules == ["all"] else [f"{m}." for m in modules]
    keep = [f"model.layers.{i}.{m}" for i in picked for m in inside]
    keep += [f"model.{m}" if not m.startswith("lm_head") else m for m in _split(data.get("freeze_extra_modules", []))]
    t.flags |= {"tuner_type": "full", "freeze_parameters_ratio": 1.0, "trainable_parameters": keep}


def _lora_target(t: Translation, value: Any, _data: dict[str, Any]) -> None:
    names = _split(value)
    t.flags["target_modules"] = ["all-linear"] if names == ["all"] else names


def _template(t: Translation, value: Any, _data: dict[str, Any]) -> None:
    t.flags["template"] = TEMPLATES.get(value, value)  # an unknown name fails the template check, listing ours


def _quantization(t: Translation, value: Any, data: dict[str, Any]) -> None:
    method = data.get("quantization_method", "bnb")
    if method not in ("bnb", "hqq"):
        t.refused.append(f"quantization_method: {method} (lmforge loads bnb or quanto)")
        return
    t.flags["quant_method"], t.flags["quant_bits"] = method, int(value)


def _dtype(key: str) -> Callable[[Translation, Any, dict[str, Any]], None]:
    def handle(t: Translation, value: Any, _data: dict[str, Any]) -> None:
        if value:
            t.flags["torch_dtype"] = DTYPES[key]

    return handle


def _flash_attn(t: Translation, value: Any, _data: dict[str, Any]) -> None:
    if value != "auto":
        t.flags["attn_impl"] = ATTN.get(value, value)


def _pref_loss(t: Translation, value: Any, _data: dict[str, Any]) -> None:
    if value in ("orpo", "simpo"):
        t.flags["rlhf_type"] = value  # LLaMA-Factory runs these as DPO-stage losses; lmforge as methods
    elif value != "sigmoid":
        t.flags["loss_type"] = value


def _val_size(t: Translation, value: Any, _data: dict[str, Any]) -> None:
    if float(value) >= 1:
        t.refused.append(f"val_size: {value} (a row count; lmforge takes a fraction below 1)")
    else:
        t.flags["split_dataset_ratio"] = float(value)


def _set(flag: str, convert: Callable[[Any], Any]) -> Callable[[Translation, Any, dict[str, Any]], None]:
    def handle(t: Translation, value: Any, _data: dict[str, Any]) -> None:
        t.flags[flag] = convert(value)

    return handle


def _when_true(flag: str, value: Callable[[dict[str, Any]], Any]) -> Callable[[Translation, Any, dict[str, Any]], None]:
    """A boolean LLaMA-Factory switch that sets an lmforge flag to a value when true."""

    def handle(t: Translation, on: Any, data: dict[str, Any]) -> None:
        if on:
            t.flags[flag] = value(data)

    return handle


CONVERTED: dict[str, Callable[[Translation, Any, dict[str, Any]], None]] = {
    "stage": _stage,
    "finetuning_type": _finetuning_type,
    "lora_target": _lora_target,
    "template": _template,
    "quantization_bit": _quantization,
    "bf16": _dtype("bf16"),
    "pure_bf16": _dtype("pure_bf16"),
    "fp16": _dtype("fp16"),
    "flash_attn": _flash_attn,
    "pref_loss": _pref_loss,
    "val_size": _val_size,
    "dataset": lambda t, v, d: _datasets(t, d, "dataset", "dataset"),
    "eval_dataset": lambda t, v, d: _datasets(t, d, "eval_dataset", "val_dataset"),
    "additional_target": _set("modules_to_save", _split),
    "adapter_name_or_path": _set("adapters", _split),
    "report_to": _set("report_to", _split),
    "train_on_prompt": _when_true("loss_scale", lambda d: "all"),
    "mask_history": _when_true("loss_scale", lambda d: "last_round"),
    "overwrite_cache": _set("load_from_cache_file", lambda v: not v),
    "disable_gradient_checkpointing": _set("gradient_checkpointing", lambda v: not v),
    "use_unsloth": _when_true("tuner_backend", lambda d: "unsloth"),
    "pissa_init": _when_true("init_weights", lambda d: f"pissa_niter_{d.get('pissa_iter', 16)}"),
}
# read by the converters above
CONSUMED = {"dataset_dir", "max_samples", "quantization_method", "pissa_iter"}
CONSUMED |= {"freeze_trainable_layers", "freeze_trainable_modules", "freeze_extra_modules"}


def translate(data: dict[str, Any], source: str, known_flags: set[str] = frozenset()) -> Translation:
    """The lmforge command and flags for a LLaMA-Factory config. Keys that are already lmforge flags pass through."""
    t = Translation("sft")
    full = {**{k: v for k, v in LF_DEFAULTS.items() if k not in data}, **data}
    if "lora_alpha" not in data:  # LLaMA-Factory: lora_alpha defaults to twice the rank
        full["lora_alpha"] = 2 * int(data.get("lora_rank", 8))
    for key, value in full.items():
        if value is None or key in CONSUMED:
            continue
        if key in CONVERTED:
            CONVERTED[key](t, value, full)
        elif key in RENAMED:
            t.flags[RENAMED[key]] = value
        elif key in NO_EFFECT:
            t.no_effect.append(key)
        elif key in ("do_eval", "do_predict") and not value:
            t.no_effect.append(key)
        elif key in known_flags:
            t.flags[key] = value
        else:
            t.refused.append(key)
    if t.flags.get("rlhf_type") == "ppo":  # lmforge's PPO loop is one process without a DataLoader pool
        if t.flags.pop("dataloader_num_workers", None) is not None:
            t.no_effect.append("dataloader_num_workers")
        if t.flags.get("gradient_accumulation_steps") == 1:  # 1 is the same as not accumulating
            t.flags.pop("gradient_accumulation_steps")
    if t.command != "rlhf" and "max_length" in t.flags:  # LLaMA-Factory truncates long rows instead of dropping
        t.flags.setdefault("truncation_strategy", "right")
    if t.refused:
        raise UserError(
            f"{source}: LLaMA-Factory keys lmforge cannot run: {'; '.join(t.refused)}",
            hint=f"remove them; `lmforge migrate {source}` shows the rest as lmforge flags",
        )
    return t


TRAINING = ("sft", "pt", "rlhf")


def expand_config(command: str, argv: list[str], groups: dict[str, dict[str, type]]) -> tuple[str, list[str]]:
    """`lmforge <command> lf.yaml ...`: (the command its stage names, its flags + the rest of argv).

    Anything but a LLaMA-Factory config comes back unchanged (the parser reads lmforge/ms-swift configs)."""
    if not argv or not is_config_file(argv[0]):
        return command, argv
    data = read_config(argv[0])
    if not is_llamafactory(data):
        return command, argv
    target, flags, t = resolve(command, argv[0], data, groups)
    switched = f"; stage {data.get('stage', 'sft')} runs as `lmforge {target}`" if target != command else ""
    unused = f"; no effect here: {', '.join(t.no_effect)}" if t.no_effect else ""
    print(f"[lmforge] {argv[0]}: LLaMA-Factory config{switched}{unused}", file=sys.stderr)
    return target, dict_tokens(flags) + argv[1:]


def resolve(
    command: str, source: str, data: dict[str, Any], groups: dict[str, dict[str, type]]
) -> tuple[str, dict[str, Any], Translation]:
    """(command, the flags that command takes, the translation) for a LLaMA-Factory config."""
    t = translate(data, source, set(flag_specs(groups["rlhf"])))
    target = t.command if command in TRAINING else command
    allowed = flag_specs(groups[target])
    return target, {k: v for k, v in t.flags.items() if k in allowed}, t
