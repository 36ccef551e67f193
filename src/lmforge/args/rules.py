"""Relations between flags, as a table of named rules checked right after parsing (torch-free, nothing loaded).

A rule is a small function that raises a one-line UserError; `RULES` says which commands (and flag groups) it
applies to. Single-flag checks (ranges, kinds) live on the fields instead (`groups.flag`, `validate.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lmforge.args.parser import Args
from lmforge.errors import UserError

TRAINING = ("sft", "pt", "rlhf")
QUANT_BITS = {"bnb": (4, 8), "quanto": (2, 4, 8), "eetq": (8,)}


@dataclass(frozen=True)
class Rule:
    """`check` runs for `commands` (None: any command) whose groups include every one of `needs`."""

    name: str
    needs: tuple[str, ...]
    commands: tuple[str, ...] | None
    check: Callable[[Args], None]


def _dataset_given(a: Args) -> None:
    if not a.data.dataset:
        raise UserError("no --dataset given", hint="e.g. --dataset data.jsonl or --dataset self-cognition#100")


def _infer_data(a: Args) -> None:
    """infer answers --val_dataset (or the run's own with --load_data_args); training-set flags mean nothing there."""
    unused = [f for f in ("dataset", "split_dataset_ratio", "streaming", "dataset_shuffle") if f in a.explicit]
    if unused:
        raise UserError(f"--{unused[0]} is not used by infer", hint="infer answers --val_dataset FILE ...")


def _streaming_needs_max_steps(a: Args) -> None:
    if a.data.streaming and a.train.max_steps <= 0:
        raise UserError("--streaming true needs --max_steps", hint="a stream has no length to count epochs by")


def _packing_not_streaming(a: Args) -> None:
    if a.train.packing and a.data.streaming:
        raise UserError("--packing with --streaming is not supported yet", hint="use --padding_free true")


def _split_not_streaming(a: Args) -> None:
    if a.data.streaming and a.data.split_dataset_ratio > 0 and not a.data.val_dataset:
        raise UserError("--split_dataset_ratio needs a map-style dataset", hint="use --val_dataset with --streaming")


def _quant_bits_fit_method(a: Args) -> None:
    t = a.tuner
    if t.quant_method is None:
        if t.quant_bits:
            raise UserError("--quant_bits without --quant_method", hint="add --quant_method bnb")
        return
    if t.quant_method == "hqq":  # transformers 5.24 refuses HqqConfig ("not available yet"), measured
        raise UserError(
            "--quant_method hqq: transformers cannot load HQQ models in this version",
            hint="use --quant_method quanto --quant_bits 4|8 or --quant_method bnb",
        )
    if t.quant_method == "eetq" and not Path("/proc/driver/nvidia").exists():
        raise UserError(
            "--quant_method eetq: EETQ's int8 kernels are CUDA-only; no GPU here",
            hint="use --quant_method bnb --quant_bits 8 or --quant_method quanto --quant_bits 8 on CPU",
        )
    bits = QUANT_BITS[t.quant_method]
    if t.quant_bits not in bits:
        raise UserError(f"--quant_method {t.quant_method} needs --quant_bits {' or '.join(map(str, bits))}")


def _loraplus_is_lora(a: Args) -> None:
    if a.tuner.lorap_lr_ratio is not None and a.tuner.tuner_type != "lora":
        raise UserError("--lorap_lr_ratio is a LoRA option", hint="use it with --tuner_type lora")


def _one_optimizer(a: Args) -> None:
    if a.train.optimizer and (a.tuner.lorap_lr_ratio is not None or a.tuner.use_galore):
        other = "--lorap_lr_ratio" if a.tuner.lorap_lr_ratio is not None else "--use_galore"
        raise UserError(f"--optimizer {a.train.optimizer} and {other} both choose the optimizer", hint="pick one")


def _part_lrs(a: Args) -> None:
    """--vit_lr / --aligner_lr: the part must train, and they choose the optimizer's parameter groups."""
    for flag, frozen, part in (("vit_lr", "freeze_vit", "vision tower"), ("aligner_lr", "freeze_aligner", "aligner")):
        if getattr(a.tuner, flag) is not None and getattr(a.tuner, frozen):
            raise UserError(f"--{flag} is set but the {part} is frozen", hint=f"add --{frozen} false")
        if getattr(a.tuner, flag) is not None and (a.train.optimizer or a.tuner.lorap_lr_ratio is not None):
            raise UserError(f"--{flag} and --optimizer/--lorap_lr_ratio both choose the optimizer", hint="pick one")


def _lisa_is_full(a: Args) -> None:
    if a.tuner.lisa_activated_layers and a.tuner.tuner_type != "full":
        raise UserError("LISA (--lisa_activated_layers) trains whole layers", hint="use it with --tuner_type full")


def _adapters_need_peft(a: Args) -> None:
    t = a.tuner
    from lmforge.tuners.table import get_tuner

    if t.adapters and not get_tuner(t.tuner_type).is_peft:
        hint = "merge first: lmforge export" if t.tuner_type in ("full", "llamapro") else "train new ones"
        raise UserError(f"--adapters with --tuner_type {t.tuner_type}", hint=hint)


def _adalora_ranks(a: Args) -> None:
    t = a.tuner
    if t.tuner_type == "adalora" and t.adalora_target_r > t.adalora_init_r:
        raise UserError(
            f"--adalora_target_r {t.adalora_target_r} exceeds --adalora_init_r {t.adalora_init_r}",
            hint="AdaLoRA starts at init_r and prunes down to target_r",
        )


def _deepspeed_or_fsdp(a: Args) -> None:
    if a.train.deepspeed and a.train.fsdp:
        raise UserError("--deepspeed and --fsdp are mutually exclusive", hint="pick one way to shard")


def _reward_weights_match(a: Args) -> None:
    r = a.rlhf
    if r.reward_weights and len(r.reward_weights) != len(r.reward_funcs):
        raise UserError(f"--reward_weights has {len(r.reward_weights)} values for {len(r.reward_funcs)} --reward_funcs")


def _rlhf_needs(a: Args) -> None:
    r = a.rlhf
    if r.rlhf_type == "gkd" and not r.teacher_model:
        raise UserError("--rlhf_type gkd needs --teacher_model", hint="a larger model of the same tokenizer")
    if r.rlhf_type == "grpo" and not r.reward_funcs:
        raise UserError("GRPO needs --reward_funcs", hint="e.g. --reward_funcs accuracy format")
    if r.rlhf_type == "ppo" and not r.reward_model and not r.reward_funcs:
        raise UserError("PPO needs --reward_model (an rm checkpoint) or --reward_funcs")


def _rlhf_tuner(a: Args) -> None:
    kind, tuner = a.rlhf.rlhf_type, a.tuner.tuner_type
    if kind == "ppo" and tuner != "lora":
        raise UserError("PPO here trains LoRA policies (the frozen base is the reference)", hint="--tuner_type lora")
    if tuner in ("llamapro", "adapter", "reft"):
        raise UserError(f"--tuner_type {tuner} is not supported by rlhf", hint="use lora or full")


def _soft_overlong_lengths(a: Args) -> None:
    r = a.rlhf
    longest = r.soft_max_length or r.max_completion_length
    if r.soft_cache_length is not None and r.soft_cache_length >= longest:
        raise UserError(
            f"--soft_cache_length {r.soft_cache_length} must be below the soft maximum length {longest}",
            hint="the penalty ramps up over the last soft_cache_length tokens before --soft_max_length",
        )


def _export_job(a: Args) -> None:
    """Which export (merge, quantize, GGUF) and whether its flags fit together; the method's own checks (bits,
    GPU, packages) are export.methods.check_method, run right after (the table may hold a plug-in's method)."""
    from lmforge.export.methods import default_output_dir

    e, adapters = a.export, a.tuner.adapters
    if e.quant_bits is not None and e.quant_method is None:
        raise UserError("--quant_bits without --quant_method", hint="add --quant_method bnb (or gptq, awq, fp8)")
    if e.quant_method and e.to_gguf:
        raise UserError("--quant_method and --to_gguf are two exports", hint="run one export for each")
    if "gguf_type" in a.explicit and not e.to_gguf:
        raise UserError("--gguf_type needs --to_gguf true")
    if not (e.quant_method or e.to_gguf):
        if not adapters:
            raise UserError(
                "export needs --adapters CKPT",
                hint="lmforge export --adapters output/vx/checkpoint-N --merge_lora true (or --quant_method/--to_gguf)",
            )
        if not e.merge_lora:
            raise UserError("nothing to export: pass --merge_lora true (or --quant_method M, or --to_gguf true)")
    if e.push_to_hub and not e.hub_model_id:
        raise UserError("--push_to_hub needs --hub_model_id")
    out = (
        Path(e.output_dir)
        if e.output_dir
        else default_output_dir(list(adapters), a.model.model, e.quant_method, e.quant_bits, e.to_gguf)
    )
    if out.exists() and not e.exist_ok:
        raise UserError(f"{out} already exists", hint="pass --exist_ok true to overwrite, or another --output_dir")


def _eval_job(a: Args) -> None:
    e = a.eval
    if not e.eval_dataset:
        raise UserError("no --eval_dataset given", hint="e.g. --eval_dataset lmforge_mcq general_qa")
    if e.eval_backend not in ("Native", "EvalScope"):
        raise UserError(
            f"--eval_backend {e.eval_backend} is not available in this lmforge version",
            hint="use --eval_backend Native (the built-in runner) or EvalScope",
        )
    if e.eval_url and a.tuner.adapters:
        raise UserError("--eval_url evaluates the server's model; --adapters need a local model", hint="pick one")
    if e.eval_url and e.eval_deploy:
        raise UserError("--eval_deploy starts a server of --model; --eval_url names a running one", hint="pick one")
    if e.compare_base and not a.tuner.adapters:
        raise UserError("--compare_base needs --adapters CKPT (the base is the model without them)")
    if e.compare_base and e.eval_url:
        raise UserError("--compare_base runs a local model with and without its adapter", hint="drop --eval_url")


# flags of the task group and the tasks they belong to
TASK_FLAGS = {
    "num_labels": ("seq_cls",),
    "problem_type": ("seq_cls",),
    "labels": ("seq_cls",),
    "pooling": ("embedding",),
    "infonce_temperature": ("embedding",),
    "generative_reranker_positive_token": ("generative_reranker",),
    "generative_reranker_negative_token": ("generative_reranker",),
}


def _task_type_sft_only(a: Args) -> None:
    if a.task.task_type != "causal_lm":
        raise UserError(
            f"--task_type {a.task.task_type} is trained with lmforge sft", hint="lmforge sft --task_type ..."
        )


def _task_flags_match(a: Args) -> None:
    for name, tasks in TASK_FLAGS.items():
        if name in a.explicit and a.task.task_type not in tasks:
            raise UserError(f"--{name} is a --task_type {'/'.join(tasks)} flag", hint=f"add --task_type {tasks[0]}")


def _cpu_linear_fits(a: Args) -> None:
    """--cpu_linear swaps the base model's nn.Linear layers in place: the PyTorch engine only, no adapters on top,
    bf16_packed and int4 only on bf16 weights (the GPU case is refused by the loader, which knows the device)."""
    choice = a.backend.cpu_linear
    if choice == "default":
        return
    backend = next(g.infer_backend for g in a.groups.values() if hasattr(g, "infer_backend"))
    if backend not in ("pt", "transformers"):
        raise UserError(f"--cpu_linear {choice} is a PyTorch engine flag", hint="drop it or use --infer_backend pt")
    if a.tuner.adapters:
        raise UserError(
            f"--cpu_linear {choice} with --adapters: the adapters need the plain linear layers",
            hint="merge first (lmforge export --adapters CKPT --merge_lora true) and serve the merged model",
        )
    dtype = a.model.torch_dtype
    if choice in ("bf16_packed", "int4") and dtype not in (None, "bfloat16", "auto"):
        raise UserError(f"--cpu_linear {choice} with --torch_dtype {dtype}", hint="use --torch_dtype bfloat16")


RULES: tuple[Rule, ...] = (
    Rule("dataset_given", ("data",), (*TRAINING, "check"), _dataset_given),
    Rule("infer_data", ("data",), ("infer",), _infer_data),
    Rule("streaming_needs_max_steps", ("data", "train"), TRAINING, _streaming_needs_max_steps),
    Rule("packing_not_streaming", ("data", "train"), TRAINING, _packing_not_streaming),
    Rule("split_not_streaming", ("data",), None, _split_not_streaming),
    Rule("quant_bits_fit_method", ("tuner",), (*TRAINING, "check"), _quant_bits_fit_method),
    Rule("loraplus_is_lora", ("tuner",), TRAINING, _loraplus_is_lora),
    Rule("lisa_is_full", ("tuner",), TRAINING, _lisa_is_full),
    Rule("one_optimizer", ("tuner", "train"), TRAINING, _one_optimizer),
    Rule("part_lrs", ("tuner", "train"), TRAINING, _part_lrs),
    Rule("adapters_need_peft", ("tuner",), TRAINING, _adapters_need_peft),
    Rule("adalora_ranks", ("tuner",), TRAINING, _adalora_ranks),
    Rule("deepspeed_or_fsdp", ("train",), TRAINING, _deepspeed_or_fsdp),
    Rule("reward_weights_match", ("rlhf",), ("rlhf",), _reward_weights_match),
    Rule("rlhf_needs", ("rlhf",), ("rlhf",), _rlhf_needs),
    Rule("rlhf_tuner", ("rlhf", "tuner"), ("rlhf",), _rlhf_tuner),
    Rule("soft_overlong_lengths", ("rlhf",), ("rlhf",), _soft_overlong_lengths),
    Rule("task_type_sft_only", ("task",), ("pt", "rlhf"), _task_type_sft_only),
    Rule("task_flags_match", ("task",), (*TRAINING, "check"), _task_flags_match),
    Rule("export_job", ("export", "tuner", "model"), ("export",), _export_job),
    Rule("eval_job", ("eval", "tuner"), ("eval",), _eval_job),
    Rule("cpu_linear_fits", ("backend", "tuner", "model"), ("infer", "deploy", "app", "eval"), _cpu_linear_fits),
)


def check_rules(command: str, args: Args) -> None:
    """Run every rule that applies to `command`, in table order (the first broken one is reported)."""
    for rule in RULES:
        if (rule.commands is None or command in rule.commands) and all(g in args.groups for g in rule.needs):
            rule.check(args)
