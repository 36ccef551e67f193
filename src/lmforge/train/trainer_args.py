"""What every Trainer of a job shares, ours and trl's alike: TrainingArguments fields, the optimizer, callbacks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lmforge.train.job import Job


def training_kwargs(job: Job, has_val: bool) -> dict[str, Any]:
    """TrainingArguments fields from the flags; trl's configs extend TrainingArguments and take them too."""
    from lmforge.train.distributed import deepspeed_config, fsdp_kwargs

    t, tu = job.args.train, job.args.tuner
    galore = {}
    if tu.use_galore:  # GaLore lives in the optimizer: transformers wires galore-torch in by name
        galore = {
            "optim": "galore_adamw",
            "optim_target_modules": [r".*attn.*", r".*mlp.*"],
            "optim_args": f"rank={tu.galore_rank},update_proj_gap={tu.galore_update_proj_gap},scale={tu.galore_scale}",
        }
    return dict(
        output_dir=str(job.run_dir),
        num_train_epochs=t.num_train_epochs,
        max_steps=t.max_steps,
        per_device_train_batch_size=t.per_device_train_batch_size,
        per_device_eval_batch_size=t.per_device_eval_batch_size,
        learning_rate=job.learning_rate,
        gradient_accumulation_steps=job.grad_accum,
        lr_scheduler_type=t.lr_scheduler_type,
        warmup_steps=t.warmup_ratio,
        weight_decay=t.weight_decay,
        adam_beta2=t.adam_beta2,
        max_grad_norm=t.max_grad_norm,
        eval_strategy="steps" if has_val else "no",
        eval_steps=t.eval_steps or t.save_steps,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        logging_steps=t.logging_steps,
        logging_first_step=True,
        seed=t.seed,
        data_seed=job.args.data.data_seed,
        bf16=job.precision.autocast_bf16,
        use_cpu=not job.on_gpu,
        # the model was prepared for it already (tuners/table.py); the Trainer must agree, trl's configs default on
        gradient_checkpointing=job.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if job.gradient_checkpointing else None,
        dataloader_num_workers=t.dataloader_num_workers,
        remove_unused_columns=False,
        report_to=job.report_to or "none",
        # several CPU processes talk over gloo (NCCL is GPU-only)
        ddp_backend="gloo" if not job.on_gpu and job.world_size > 1 else None,
        deepspeed=deepspeed_config(t.deepspeed, job.on_gpu),
        **fsdp_kwargs(t.fsdp, job.on_gpu),
        **galore,
    )


def optimizer(job: Job, model: Any) -> Any:
    """A plug-in's optimizer (--optimizer), LoRA+'s parameter groups, else the Trainer's own (None)."""
    tu, t = job.args.tuner, job.args.train
    if t.optimizer:
        from lmforge.train.extensions import OPTIMIZERS

        return OPTIMIZERS.lookup(t.optimizer)(model, lr=job.learning_rate, weight_decay=t.weight_decay)
    if tu.vit_lr is not None or tu.aligner_lr is not None:  # vision-language models: one group per part
        from lmforge.multimodal.tuning import part_optimizer

        return part_optimizer(model, job.setup.template, job.learning_rate, tu, t.weight_decay)
    if tu.lorap_lr_ratio is None:
        return None
    from lmforge.tuners.peft_tuners import loraplus_optimizer

    return loraplus_optimizer(model, job.learning_rate, tu.lorap_lr_ratio, t.weight_decay)


def callbacks(job: Job) -> list:
    """logging.jsonl and plots, the save at the last step, LISA when asked, plug-ins' callbacks."""
    from lmforge.train.extensions import CALLBACKS
    from lmforge.train.trainer import JsonlLogger, SaveAtEnd

    out: list = [JsonlLogger(job.run_dir), SaveAtEnd()]
    tu = job.args.tuner
    if tu.lisa_activated_layers:
        from lmforge.tuners.callbacks import LISA

        out.append(LISA(tu.lisa_activated_layers, tu.lisa_step_interval, job.args.train.seed))
    return out + [CALLBACKS.lookup(name)() for name in job.args.train.callbacks]


def finish(trainer: Any, job: Job) -> Any:
    """Our progress bar instead of the Trainer's printed dicts; args.json goes into every checkpoint."""
    import transformers

    from lmforge.train.trainer import Progress

    trainer.args_json = job.run_args
    for cb in trainer.callback_handler.callbacks:  # callbacks that log through the Trainer (train/evaluating.py)
        if hasattr(cb, "bind"):
            cb.bind(trainer)
    trainer.remove_callback(transformers.trainer_callback.ProgressCallback)
    trainer.remove_callback(transformers.trainer_callback.PrinterCallback)
    trainer.add_callback(Progress())
    return trainer
