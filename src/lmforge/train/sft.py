"""`lmforge sft` and `lmforge pt`: encode with the chat template, then transformers' Trainer (LoRA or full)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from lmforge.errors import UserError


def run_sft(args: Any) -> int:
    train(args, "sft")
    return 0


def run_pt(args: Any) -> int:
    if "loss_scale" not in args.explicit:
        args.template.loss_scale = "all"
    train(args, "pt")
    return 0


def _precision(args: Any) -> tuple[Any, bool]:
    """(weights dtype, bf16 autocast). Default: bf16 autocast where the hardware has bf16 units; frozen base
    weights in bf16 for LoRA (half the memory, same speed), trained weights kept fp32 for full fine-tuning."""
    import torch

    from lmforge.models.loader import bf16_supported, resolve_dtype

    name = args.model.torch_dtype
    if name in (None, "auto"):
        if not bf16_supported():
            return torch.float32, False
        return (torch.bfloat16 if args.tuner.tuner_type != "full" else torch.float32), True
    dtype = resolve_dtype(name)
    return dtype, dtype == torch.bfloat16


def _check_resume(path: str | None) -> str | None:
    if path is None:
        return None
    p = Path(path)
    if not (p / "trainer_state.json").is_file():
        raise UserError(f"--resume_from_checkpoint {path}: not a complete checkpoint (no trainer_state.json)")
    return str(p)


def _encode(args: Any, setup: Any, stage: str) -> tuple[Any, Any, Any]:
    from lmforge.data.pipeline import encode_rows, load_data, refuse_if_mostly_dropped

    data = load_data(args.data, use_hf=args.model.use_hf)
    refuse_if_mostly_dropped(data.parts)
    for p in data.parts:
        if p.n_dropped:
            print(f"[lmforge] {p.name}: dropped {p.n_dropped} of {p.total} rows; first: {p.reasons[0]}")
    num_proc, cache = args.data.dataset_num_proc, args.data.load_from_cache_file
    train_ds = encode_rows(data.train, setup.template, stage, num_proc, cache)
    val_ds = encode_rows(data.val, setup.template, stage, num_proc, cache) if data.val is not None else None
    if not args.data.streaming:
        if len(train_ds) == 0:
            raise UserError("no trainable rows left after encoding", hint="run lmforge check with the same flags")
        first = train_ds[0]
    else:
        first = next(iter(train_ds))
    from lmforge.templates.encode import Encoded

    print("[lmforge] first encoded sample (trained spans in [[ ]]):")
    print(setup.template.render_marked(Encoded(first["input_ids"], first["labels"])))
    return train_ds, val_ds, data


def train(args: Any, stage: str) -> Path:
    """Run one training job; returns the run directory."""
    import torch
    import transformers

    from lmforge.models.setup import setup_tokenizer
    from lmforge.train.collate import FlatCollator, PaddedCollator, pack_rows
    from lmforge.train.output import make_run_dir, write_args_json, write_rows
    from lmforge.train.trainer import JsonlLogger, LmforgeTrainer, Progress, SaveAtEnd

    # transformers 5 deprecation notices (gradient_checkpointing -> activation_checkpointing) are not the user's
    warnings.filterwarnings("ignore", category=FutureWarning)
    t = args.train
    if args.data.streaming and t.max_steps <= 0:
        raise UserError("--streaming true needs --max_steps", hint="a stream has no length to count epochs by")
    resume = _check_resume(t.resume_from_checkpoint)
    from lmforge.train.distributed import deepspeed_config, fsdp_kwargs

    deepspeed_config(t.deepspeed, torch.cuda.is_available())  # flag errors before anything is loaded
    fsdp_kwargs(t.fsdp, torch.cuda.is_available())
    transformers.set_seed(t.seed)
    setup = setup_tokenizer(args.model, args.template)
    train_ds, val_ds, data = _encode(args, setup, stage)
    if args.train.packing:
        if args.data.streaming:
            raise UserError("--packing with --streaming is not supported yet", hint="use --padding_free true")
        train_ds = pack_rows(train_ds, args.template.max_length or 2048)
        print(f"[lmforge] packed into {len(train_ds)} rows of <= {args.template.max_length or 2048} tokens")
    dtype, autocast_bf16 = _precision(args)
    if not args.data.streaming:
        from lmforge.estimate import print_estimate

        lengths = train_ds["length"]
        trained = [n // 2 for n in lengths] if stage == "sft" else lengths  # answers are about half of a chat row
        print_estimate(args, setup.model_dir, lengths, trained, strict=False)
    on_gpu = torch.cuda.is_available()
    grad_ckpt = t.gradient_checkpointing if t.gradient_checkpointing is not None else on_gpu
    model = load_trainable(args, setup, dtype, grad_ckpt)
    run_dir = make_run_dir(t.output_dir, t.add_version)
    lr = t.learning_rate if t.learning_rate is not None else (1e-5 if args.tuner.tuner_type == "full" else 1e-4)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    accum = t.gradient_accumulation_steps or max(1, -(-16 // (t.per_device_train_batch_size * world)))
    extra = {
        "stage": stage,
        "model_dir": str(setup.model_dir),
        "template": setup.template_name,
        "system": setup.template.system,
        "resolved_torch_dtype": str(dtype).replace("torch.", ""),
        "bf16_autocast": autocast_bf16,
        "learning_rate": lr,
        "gradient_accumulation_steps": accum,
        "gradient_checkpointing": grad_ckpt,
        "run_dir": str(run_dir),
        "padding_free": t.padding_free if t.padding_free is not None else _flat_by_default(setup.config),
    }
    args_json = write_args_json(run_dir / "args.json", args, extra)
    if data.val is not None and not args.data.val_dataset:  # the carved split, for infer --load_data_args
        write_rows(run_dir / "val_dataset.jsonl", data.val)
    setup.tokenizer.chat_template = setup.template.jinja  # checkpoints carry the template used in training
    has_val = val_ds is not None
    report = [r for r in t.report_to if r != "none" and _integration_available(r)]
    targs = training_arguments(args, run_dir, lr, accum, has_val, autocast_bf16, report)
    flat = t.packing or extra["padding_free"]
    collator = FlatCollator() if flat else PaddedCollator(setup.tokenizer.pad_token_id)
    trainer = LmforgeTrainer(
        model=model,
        args=targs,
        train_dataset=train_ds,
        eval_dataset=val_ds,
        data_collator=collator,
        processing_class=setup.tokenizer,
        args_json=args_json,
        callbacks=[JsonlLogger(run_dir), SaveAtEnd(), *tuner_callbacks(args.tuner, t.seed)],
        optimizers=(optimizer(args.tuner, model, lr, t.weight_decay), None),
    )
    trainer.remove_callback(transformers.trainer_callback.ProgressCallback)
    trainer.remove_callback(transformers.trainer_callback.PrinterCallback)
    trainer.add_callback(Progress())
    print(f"[lmforge] run dir: {run_dir}")
    trainer.train(resume_from_checkpoint=resume)
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        print(f"[lmforge] rank {rank}/{world} trained {trainer.state.global_step} steps", flush=True)
    last = sorted(run_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    if last:
        print(f"[lmforge] last checkpoint: {last[-1]}")
    return run_dir


def load_trainable(args: Any, setup: Any, dtype: Any, grad_ckpt: bool) -> Any:
    """The model to train: quantised for QLoRA when asked, wrapped by the chosen tuner."""
    import torch

    from lmforge.models.loader import load_model
    from lmforge.tuners.lora import check_tuner, prepare_model
    from lmforge.tuners.quant import quantization_config

    check_tuner(args.tuner)
    qcfg = quantization_config(args.tuner, dtype)
    model = load_model(
        setup.model_dir,
        dtype=dtype,
        trust_remote_code=args.model.trust_remote_code,
        attn_impl=args.model.attn_impl or _training_attention(),
        device_map=args.model.device_map or ("cpu" if qcfg else None),
        **({"quantization_config": qcfg} if qcfg else {}),
    )
    if qcfg is not None:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=grad_ckpt)
    # a KV cache in a training forward makes transformers skip the packed-sequence mask of padding-free batches
    model.config.use_cache = False
    model = prepare_model(model, args.tuner, grad_ckpt)
    if not torch.cuda.is_available():
        from lmforge.train.distributed import partitions_params
        from lmforge.tuners.dropout import use_lane_dropout
        from lmforge.tuners.fused_lora import use_fused_lora

        use_lane_dropout(model)
        if not partitions_params(args.train.deepspeed):  # the fused forward reads weights ZeRO-3 would shard
            use_fused_lora(model)
    return model


def _training_attention() -> str:
    """sdpa on GPU; on CPU our per-sequence attention (train/attention.py explains the measurements)."""
    import torch

    if torch.cuda.is_available():
        return "sdpa"
    from lmforge.train.attention import register

    return register()


def training_arguments(
    args: Any, run_dir: Path, lr: float, accum: int, has_val: bool, bf16: bool, report: list[str]
) -> Any:
    import transformers

    t, tu = args.train, args.tuner
    galore = {}
    if tu.use_galore:  # GaLore lives in the optimizer: transformers wires galore-torch in by name
        galore = {
            "optim": "galore_adamw",
            "optim_target_modules": [r".*attn.*", r".*mlp.*"],
            "optim_args": f"rank={tu.galore_rank},update_proj_gap={tu.galore_update_proj_gap},scale={tu.galore_scale}",
        }
    return transformers.TrainingArguments(
        **shared_training_kwargs(t, run_dir, lr, accum, has_val, bf16),
        adam_beta2=t.adam_beta2,
        data_seed=args.data.data_seed,
        report_to=report or "none",
        prediction_loss_only=True,
        disable_tqdm=False,
        **galore,
    )


def shared_training_kwargs(t: Any, run_dir: Path, lr: float, accum: int, has_val: bool, bf16: bool) -> dict[str, Any]:
    """The TrainingArguments every trainer here shares (ours and trl's configs, which extend it)."""
    import torch

    from lmforge.train.distributed import deepspeed_config, fsdp_kwargs

    on_gpu = torch.cuda.is_available()
    return dict(
        output_dir=str(run_dir),
        num_train_epochs=t.num_train_epochs,
        max_steps=t.max_steps,
        per_device_train_batch_size=t.per_device_train_batch_size,
        per_device_eval_batch_size=t.per_device_eval_batch_size,
        learning_rate=lr,
        gradient_accumulation_steps=accum,
        lr_scheduler_type=t.lr_scheduler_type,
        warmup_steps=t.warmup_ratio,
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        eval_strategy="steps" if has_val else "no",
        eval_steps=t.eval_steps or t.save_steps,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        logging_steps=t.logging_steps,
        logging_first_step=True,
        seed=t.seed,
        bf16=bf16,
        use_cpu=not on_gpu,
        dataloader_num_workers=t.dataloader_num_workers,
        remove_unused_columns=False,
        # several CPU processes talk over gloo (NCCL is GPU-only)
        ddp_backend="gloo" if not on_gpu and int(os.environ.get("WORLD_SIZE", "1")) > 1 else None,
        deepspeed=deepspeed_config(t.deepspeed, on_gpu),
        **fsdp_kwargs(t.fsdp, on_gpu),
    )


def optimizer(tuner: Any, model: Any, lr: float, weight_decay: float) -> Any:
    """LoRA+ needs its own parameter groups; everything else uses the Trainer's optimizer (None)."""
    if tuner.lorap_lr_ratio is None:
        return None
    if tuner.tuner_type != "lora":
        raise UserError("--lorap_lr_ratio is a LoRA option", hint="use it with --tuner_type lora")
    from lmforge.tuners.lora import loraplus_optimizer

    return loraplus_optimizer(model, lr, tuner.lorap_lr_ratio, weight_decay)


def tuner_callbacks(tuner: Any, seed: int) -> list:
    if not tuner.lisa_activated_layers:
        return []
    if tuner.tuner_type != "full":
        raise UserError("LISA trains whole layers", hint="use it with --tuner_type full")
    from lmforge.tuners.callbacks import LISA

    return [LISA(tuner.lisa_activated_layers, tuner.lisa_step_interval, seed)]


def _flat_by_default(config: dict) -> bool:
    """Padding-free batches need the model to turn restarting position_ids into a block-diagonal mask, which
    transformers does for these families with sdpa/eager attention (checked: packed logits equal unpacked)."""
    return config.get("model_type") in {"llama", "qwen2", "qwen3", "qwen2_moe", "qwen3_moe", "mistral"}


def _integration_available(name: str) -> bool:
    import importlib.util

    module = {"tensorboard": "tensorboard", "wandb": "wandb", "swanlab": "swanlab", "mlflow": "mlflow"}.get(name, name)
    if importlib.util.find_spec(module) is None:
        print(f"[lmforge] --report_to {name}: package not installed, skipped")
        return False
    return True
