"""`lmforge rlhf --rlhf_type dpo|kto|cpo|simpo|orpo|rm|grpo|gkd` on trl's trainers (ppo: lmforge.train.ppo).

We hand trl conversational rows and its own config; trl applies the same chat template our checkpoints carry.
The trainers are used as they are, with AtomicCheckpoints mixed in (no __init__ is bypassed).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

from lmforge.errors import DataError, UserError

DEFAULT_BETA = {"simpo": 2.0, "grpo": 0.04, "gkd": 0.5}
_SKIP = {"messages", "rejected_response", "rejected_messages", "label", "_src", "_idx"}


def _where(row: dict) -> str:
    from lmforge.data.loader import location

    return location(row["_src"], row["_idx"]) if "_src" in row else "row"


def to_trl_row(row: dict, kind: str, template: Any) -> dict:
    """A standard row -> the dataset row trl expects for this method (conversational form)."""
    msgs = template.with_system(row["messages"])
    if kind in ("dpo", "cpo", "simpo", "orpo", "rm"):
        rejected = row.get("rejected_response")
        if rejected is None and row.get("rejected_messages"):
            rejected = row["rejected_messages"][-1].get("content")
        if rejected is None or msgs[-1]["role"] != "assistant":
            raise DataError(
                f"{_where(row)}: rejected_response: missing; {kind} needs preference rows",
                hint='give rows a rejected_response, or map yours: --columns \'{"rejected": "rejected_response"}\'',
            )
        return {"prompt": msgs[:-1], "chosen": [msgs[-1]], "rejected": [{"role": "assistant", "content": rejected}]}
    if kind == "kto":
        label = row.get("label")
        if not isinstance(label, bool):
            raise DataError(
                f"{_where(row)}: label: expected true or false, got {label!r}",
                hint="KTO rows carry a boolean label: is the answer desirable?",
            )
        return {"prompt": msgs[:-1], "completion": [msgs[-1]], "label": label}
    if kind == "grpo":
        prompt = msgs[:-1] if msgs[-1]["role"] == "assistant" else msgs
        return {"prompt": prompt, **{k: v for k, v in row.items() if k not in _SKIP}}
    if kind == "gkd":
        return {"messages": msgs}
    raise KeyError(kind)


def build_dataset(ds: Any, kind: str, template: Any) -> Any:
    import datasets

    if ds is None:
        return None
    rows = [to_trl_row(json.loads(r), kind, template) for r in ds["row"]]
    return datasets.Dataset.from_list(rows)


def _method_kwargs(args: Any, kind: str, config_cls: Any, reward_fns: list | None) -> dict[str, Any]:
    r, t = args.rlhf, args.template
    beta = r.beta if r.beta is not None else DEFAULT_BETA.get(kind, 0.1)
    kw: dict[str, Any] = {"beta": beta}
    if kind == "dpo":
        kw.update(label_smoothing=r.label_smoothing, max_length=t.max_length)
        losses = [r.loss_type] if r.loss_type else ["sigmoid"]
        if r.rpo_alpha is not None:  # RPO: DPO plus an NLL term on the chosen answer
            kw.update(loss_type=[*losses, "sft"], loss_weights=[1.0, r.rpo_alpha])
        elif r.loss_type:
            kw.update(loss_type=losses)
    elif kind == "kto":
        kw.update(desirable_weight=r.desirable_weight, undesirable_weight=r.undesirable_weight, max_length=t.max_length)
    elif kind in ("cpo", "simpo"):
        kw.update(
            label_smoothing=r.label_smoothing,
            max_length=t.max_length or 1024,
            max_completion_length=r.max_completion_length,
            simpo_gamma=r.simpo_gamma,
            loss_type="simpo" if kind == "simpo" else (r.loss_type or "sigmoid"),
            cpo_alpha=0.0 if kind == "simpo" and "cpo_alpha" not in args.explicit else r.cpo_alpha,
        )
    elif kind == "orpo":
        kw.update(max_length=t.max_length or 1024, max_completion_length=r.max_completion_length)
    elif kind == "rm":
        kw.pop("beta")
        kw.update(max_length=t.max_length, center_rewards_coefficient=r.center_rewards_coefficient)
    elif kind == "grpo":
        per_step = args.train.per_device_train_batch_size * (args.train.gradient_accumulation_steps or 1)
        kw.update(
            num_generations=r.num_generations,
            max_completion_length=r.max_completion_length,
            temperature=r.temperature,
            use_vllm=False,
            log_completions=False,
            generation_batch_size=math.lcm(per_step, r.num_generations),
            reward_weights=r.reward_weights or None,
        )
    elif kind == "gkd":
        kw.update(
            lmbda=r.lmbda, temperature=r.temperature, max_new_tokens=r.max_completion_length, max_length=t.max_length
        )
    return kw


def _check(args: Any) -> None:
    r = args.rlhf
    if r.rlhf_type == "gkd" and not r.teacher_model:
        raise UserError("--rlhf_type gkd needs --teacher_model", hint="a larger model of the same tokenizer")
    if r.use_vllm:
        import importlib.util

        import torch

        if not torch.cuda.is_available() or importlib.util.find_spec("vllm") is None:
            raise UserError("--use_vllm needs the vllm package and a CUDA GPU", hint="drop it: rollouts use PyTorch")
    if r.reward_weights and len(r.reward_weights) != len(r.reward_funcs):
        raise UserError(f"--reward_weights has {len(r.reward_weights)} values for {len(r.reward_funcs)} --reward_funcs")


def run_rlhf(args: Any) -> int:
    warnings.filterwarnings("ignore", category=UserWarning, module="trl")
    kind = args.rlhf.rlhf_type
    _check(args)
    if kind == "ppo":
        from lmforge.train.ppo import run_ppo

        return run_ppo(args)
    reward_fns = None
    if kind == "grpo":
        from lmforge.train.rewards import resolve_rewards

        reward_fns = resolve_rewards(args.rlhf.reward_funcs, args.rlhf)
    train_rlhf(args, kind, reward_fns)
    return 0


def _load_policy(args: Any, setup: Any, kind: str, dtype: Any) -> tuple[Any, Any]:
    """(model, peft_config): LoRA continues --adapters when given, else trl wraps the model with peft_config."""
    from lmforge.models.loader import load_model
    from lmforge.tuners.lora import TUNERS, check_tuner

    if kind == "rm":
        from transformers import AutoModelForSequenceClassification

        model = AutoModelForSequenceClassification.from_pretrained(setup.model_dir, num_labels=1, dtype=dtype)
        model.config.pad_token_id = setup.tokenizer.pad_token_id
    else:
        model = load_model(setup.model_dir, dtype=dtype, trust_remote_code=args.model.trust_remote_code)
    check_tuner(args.tuner)
    if args.tuner.tuner_type == "full":
        return model, None
    if args.tuner.tuner_type not in TUNERS:
        raise UserError(f"--tuner_type {args.tuner.tuner_type} is not supported by rlhf", hint="use lora or full")
    if args.tuner.adapters:
        from peft import PeftModel

        return PeftModel.from_pretrained(model, args.tuner.adapters[0], is_trainable=True), None
    cfg = TUNERS[args.tuner.tuner_type](args.tuner)
    if kind == "rm":
        cfg.task_type = "SEQ_CLS"
    return model, cfg


def _load_reference(args: Any, setup: Any, dtype: Any) -> Any | None:
    """--ref_model and/or --ref_adapters -> a frozen reference; None lets trl use the base (adapters disabled)."""
    r = args.rlhf
    if not r.ref_model and not r.ref_adapters:
        return None
    from lmforge.models.loader import load_model, resolve_model_dir

    path = resolve_model_dir(r.ref_model) if r.ref_model else setup.model_dir
    ref = load_model(path, dtype=dtype)
    for adapter in r.ref_adapters:
        from peft import PeftModel

        ref = PeftModel.from_pretrained(ref, adapter).merge_and_unload()
    return ref.eval().requires_grad_(False)


def train_rlhf(args: Any, kind: str, reward_fns: list | None) -> Path:
    import transformers

    from lmforge.data.pipeline import load_data, refuse_if_mostly_dropped
    from lmforge.models.setup import setup_tokenizer
    from lmforge.train._trl import trainer_classes
    from lmforge.train.output import make_run_dir, write_args_json
    from lmforge.train.sft import _check_resume, _precision
    from lmforge.train.trainer import AtomicCheckpoints, JsonlLogger, Progress, SaveAtEnd

    t = args.train
    resume = _check_resume(t.resume_from_checkpoint)
    transformers.set_seed(t.seed)
    setup = setup_tokenizer(args.model, args.template)
    data = load_data(args.data, use_hf=args.model.use_hf)
    refuse_if_mostly_dropped(data.parts)
    train_ds = build_dataset(data.train, kind, setup.template)
    val_ds = build_dataset(data.val, kind, setup.template)
    dtype, bf16 = _precision(args)
    model, peft_cfg = _load_policy(args, setup, kind, dtype)
    ref = _load_reference(args, setup, dtype) if kind in ("dpo", "kto", "grpo") else None
    run_dir = make_run_dir(t.output_dir, t.add_version)
    config_cls, trainer_cls = trainer_classes(kind)
    lr = t.learning_rate if t.learning_rate is not None else (1e-5 if args.tuner.tuner_type == "full" else 1e-4)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    accum = t.gradient_accumulation_steps or max(1, -(-16 // (t.per_device_train_batch_size * world)))
    t.gradient_accumulation_steps = accum
    method = _method_kwargs(args, kind, config_cls, reward_fns)
    extra = {
        "stage": "rlhf",
        "model_dir": str(setup.model_dir),
        "template": setup.template_name,
        "system": setup.template.system,
        "resolved_torch_dtype": str(dtype).replace("torch.", ""),
        "bf16_autocast": bf16,
        "learning_rate": lr,
        "gradient_accumulation_steps": accum,
        "run_dir": str(run_dir),
        "resolved_beta": method.get("beta"),
    }
    args_json = write_args_json(run_dir / "args.json", args, extra)
    setup.tokenizer.chat_template = setup.template.jinja
    config = _config(config_cls, t, run_dir, lr, accum, val_ds is not None, bf16, method)
    kwargs: dict[str, Any] = {
        "model": model,
        "args": config,
        "train_dataset": train_ds,
        "eval_dataset": val_ds,
        "processing_class": setup.tokenizer,
        "peft_config": peft_cfg,
        "callbacks": [JsonlLogger(run_dir), SaveAtEnd()],
    }
    if kind in ("dpo", "kto"):
        kwargs["ref_model"] = ref
    if kind == "grpo":
        kwargs["reward_funcs"] = _with_log(reward_fns, run_dir) if args.rlhf.log_completions else reward_fns
    if kind == "gkd":
        from lmforge.models.loader import load_model, resolve_model_dir

        kwargs["teacher_model"] = load_model(resolve_model_dir(args.rlhf.teacher_model), dtype=dtype)
    atomic = type(f"Atomic{trainer_cls.__name__}", (AtomicCheckpoints, trainer_cls), {})
    trainer = atomic(**kwargs)
    trainer.args_json = args_json
    trainer.remove_callback(transformers.trainer_callback.ProgressCallback)
    trainer.remove_callback(transformers.trainer_callback.PrinterCallback)
    trainer.add_callback(Progress())
    print(f"[lmforge] {kind} on {len(train_ds)} rows; run dir: {run_dir}")
    trainer.train(resume_from_checkpoint=resume)
    last = sorted(run_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    if last:
        print(f"[lmforge] last checkpoint: {last[-1]}")
    return run_dir


def _config(
    config_cls: Any, t: Any, run_dir: Path, lr: float, accum: int, has_val: bool, bf16: bool, method: dict[str, Any]
) -> Any:
    """The trl config: the shared training flags plus the method's own."""
    from lmforge.train.sft import shared_training_kwargs

    return config_cls(
        **shared_training_kwargs(t, run_dir, lr, accum, has_val, bf16),
        report_to="none",
        **method,
    )


def _on_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def _with_log(fns: list, run_dir: Path) -> list:
    """--log_completions: every sampled completion with its rewards, beside logging.jsonl."""
    path = run_dir / "completions.jsonl"

    def logged(fn: Any) -> Any:
        def wrapped(prompts: list, completions: list, **kw: Any) -> list[float]:
            scores = fn(completions, prompts=prompts, **kw)
            state = kw.get("trainer_state")
            with path.open("a", encoding="utf-8") as f:
                for p, c, s in zip(prompts, completions, scores):
                    f.write(
                        json.dumps(
                            {
                                "step": state.global_step if state else None,
                                "reward_func": fn.__name__,
                                "prompt": p,
                                "completion": c,
                                "reward": s,
                            },
                            ensure_ascii=False,
                        )
                        + "\n"
                    )
            return scores

        wrapped.__name__ = fn.__name__
        return wrapped

    return [logged(f) for f in fns]
