"""One training driver for sft, pt, every rlhf type and PPO.

A job is prepared once: method and flag checks, seed, tokenizer and template, data, precision, learning rate and
accumulation defaults, run dir, args.json, the baked template. The method (train/methods.py) then contributes only
what differs: rows -> model -> trainer. Every trainer gets the same callbacks, logging, atomic checkpoints and plots.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmforge.errors import UserError
from lmforge.train.ranks import is_rank_zero, world_size

if TYPE_CHECKING:
    from lmforge.args.parser import Args
    from lmforge.data.pipeline import DataBundle
    from lmforge.models.setup import TokenizerSetup
    from lmforge.precision import Precision
    from lmforge.tasks import Task
    from lmforge.train.methods import Method
    from lmforge.tuners.table import Tuner


@dataclass
class Job:
    """Everything a method needs, derived once from the parsed flags (which are never written to)."""

    args: Args
    method: Method
    tuner: Tuner
    task: Task
    setup: TokenizerSetup
    data: DataBundle
    precision: Precision
    learning_rate: float
    grad_accum: int
    gradient_checkpointing: bool
    on_gpu: bool
    world_size: int
    run_dir: Path
    resume: str | None
    report_to: list[str]
    run_args: dict[str, Any] = field(default_factory=dict)  # what args.json holds

    @property
    def explicit(self) -> set[str]:
        return self.args.explicit


def check_resume(path: str | None) -> str | None:
    if path is None:
        return None
    if not (Path(path) / "trainer_state.json").is_file():
        raise UserError(f"--resume_from_checkpoint {path}: not a complete checkpoint (no trainer_state.json)")
    return str(Path(path))


def check_flags(args: Args, method: Method) -> None:
    """Flags this method does not honour are refused when set (never silently ignored), then its own checks."""
    ignored = sorted(method.refused(args) & args.explicit)
    if ignored:
        raise UserError(
            f"--{ignored[0]} is not supported by {method.label}",
            hint=f"drop it; {method.label} does not use {', '.join('--' + f for f in ignored)}",
        )
    if method.check is not None:
        method.check(args)


def prepare(args: Args, method: Method) -> Job:
    """Checks first (nothing heavy is loaded before every flag is known to be usable), then tokenizer and data."""
    import torch
    import transformers

    from lmforge.data.pipeline import load_data, refuse_if_mostly_dropped, refuse_media_for_text_model
    from lmforge.models.setup import setup_tokenizer
    from lmforge.multimodal.tuning import check_part_lrs
    from lmforge.precision import training_precision
    from lmforge.tasks import get_task
    from lmforge.train.distributed import deepspeed_config, fsdp_kwargs
    from lmforge.train.output import make_run_dir
    from lmforge.tuners.table import check_tuner_flags, get_tuner
    from lmforge.tuners.targets import check_target_modules

    t = args.train
    check_flags(args, method)
    tuner = get_tuner(args.tuner.tuner_type)
    on_gpu = torch.cuda.is_available()
    check_tuner_flags(args.tuner, on_gpu)
    resume = check_resume(t.resume_from_checkpoint)
    deepspeed_config(t.deepspeed, on_gpu)  # flag errors before anything is loaded
    fsdp_kwargs(t.fsdp, on_gpu)
    transformers.set_seed(t.seed)
    template_flags = args.template
    if method.loss_scale and "loss_scale" not in args.explicit:
        template_flags = dataclasses.replace(args.template, loss_scale=method.loss_scale)
    setup = setup_tokenizer(args.model, template_flags)
    check_target_modules(setup.model_dir, args.tuner, args.model.trust_remote_code)  # on the config, no weights
    data = load_data(args.data, use_hf=args.model.use_hf)
    refuse_if_mostly_dropped(data.parts)
    refuse_media_for_text_model(data, setup.template)
    check_part_lrs(setup.template, args.tuner)  # --vit_lr/--aligner_lr on a text-only model
    for p in data.parts:
        if p.n_dropped:
            print(f"[lmforge] {p.name}: dropped {p.n_dropped} of {p.total} rows; first: {p.reasons[0]}")
    world = world_size()
    job = Job(
        args=args,
        method=method,
        tuner=tuner,
        task=get_task(task_name(args, method)),
        setup=setup,
        data=data,
        precision=training_precision(args.model.torch_dtype or method.default_torch_dtype, tuner.trains_weights),
        learning_rate=t.learning_rate if t.learning_rate is not None else tuner.default_lr,
        grad_accum=t.gradient_accumulation_steps or max(1, -(-16 // (t.per_device_train_batch_size * world))),
        gradient_checkpointing=t.gradient_checkpointing if t.gradient_checkpointing is not None else on_gpu,
        on_gpu=on_gpu,
        world_size=world,
        run_dir=make_run_dir(t.output_dir, t.add_version),
        resume=resume,
        report_to=[r for r in t.report_to if r != "none" and _integration_available(r)],
    )
    return job


def task_name(args: Args, method: Method) -> str:
    """`sft --task_type` picks the task (classifier, embedding, reranker); other methods train their own."""
    task = getattr(args, "task", None)
    return task.task_type if task is not None and task.task_type != "causal_lm" else method.task


def record(job: Job, extra: dict[str, Any]) -> None:
    """args.json: every flag, what was derived, and the method's own additions; the tokenizer gets the template."""
    from lmforge.multimodal.encode import media_run_args
    from lmforge.runargs import write_run_args
    from lmforge.train.output import versions

    s = job.setup
    job.run_args = {
        **job.args.to_dict(),
        "stage": job.method.stage,
        "model_dir": str(s.model_dir),
        "template": s.template_name,
        "system": s.template.system,
        "loss_scale": s.template.loss_scale,
        "resolved_torch_dtype": job.precision.name,
        "bf16_autocast": job.precision.autocast_bf16,
        "learning_rate": job.learning_rate,
        "gradient_accumulation_steps": job.grad_accum,
        "gradient_checkpointing": job.gradient_checkpointing,
        "run_dir": str(job.run_dir),
        **media_run_args(s.template),  # a vision-language model's resize bounds: infer/deploy/export reuse them
        **extra,
        "versions": versions(),
        "world_size": job.world_size,
    }
    if is_rank_zero():
        write_run_args(job.run_dir / "args.json", job.run_args)
    s.tokenizer.chat_template = s.template.jinja  # checkpoints carry the template used in training


def run(args: Args, method_name: str) -> int:
    """Prepare the job, let the method build its trainer, train. Returns the exit code: 0, or 128 + the signal
    number when SIGTERM/Ctrl-C stopped the run after saving a checkpoint."""
    from lmforge.train.methods import get_method
    from lmforge.train.stop import StopOnSignal, StopRequest

    method = get_method(method_name)
    job = prepare(args, method)
    trainer = method.build(job)
    stop = StopRequest()
    if hasattr(trainer, "add_callback"):
        trainer.add_callback(StopOnSignal(stop))
    else:  # our PPO loop reads the request itself
        trainer.stop = stop
    print(f"[lmforge] run dir: {job.run_dir}")
    stop.install()
    try:
        trainer.train(resume_from_checkpoint=job.resume)
    finally:
        stop.restore()
    if job.world_size > 1:
        steps = getattr(getattr(trainer, "state", None), "global_step", "?")
        print(f"[lmforge] rank {os.environ.get('RANK', '0')}/{job.world_size} trained {steps} steps", flush=True)
    last = sorted(job.run_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    if stop.signal is not None:
        if is_rank_zero():
            saved = f"saved {last[-1]}" if last else "no checkpoint was saved"
            resume = f"; resume with the same command plus --resume_from_checkpoint {last[-1]}" if last else ""
            print(f"lmforge: stopped by {stop.name} after step {stop.saved_step}: {saved}{resume}", file=sys.stderr)
        # a rank under torchrun ends cleanly (else torchrun reports a failed worker); the launcher returns 128+signal
        return 0 if "LOCAL_RANK" in os.environ else 128 + stop.signal
    if last:
        print(f"[lmforge] last checkpoint: {last[-1]}")
    return 0


def run_sft(args: Args) -> int:
    return run(args, "sft")


def run_pt(args: Args) -> int:
    return run(args, "pt")


def run_rlhf(args: Args) -> int:
    return run(args, args.rlhf.rlhf_type)


def _integration_available(name: str) -> bool:
    import importlib.util

    module = {"tensorboard": "tensorboard", "wandb": "wandb", "swanlab": "swanlab", "mlflow": "mlflow"}.get(name, name)
    if importlib.util.find_spec(module) is None:
        print(f"[lmforge] --report_to {name}: package not installed, skipped")
        return False
    return True
