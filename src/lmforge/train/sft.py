"""`lmforge sft` and `lmforge pt`: rows encoded with the chat template (masks found by rendering), then our Trainer
(transformers' Trainer with atomic checkpoints and the CPU fast paths)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lmforge.errors import UserError
from lmforge.train.methods import register_method

if TYPE_CHECKING:
    from lmforge.train.job import Job


def encode(job: Job) -> tuple[Any, Any]:
    """(train, val) encoded rows; prints the first one with its trained spans marked."""
    from lmforge.data.pipeline import encode_rows
    from lmforge.templates.encode import Encoded

    d, template, stage = job.args.data, job.setup.template, job.method.stage
    train = encode_rows(job.data.train, template, stage, d.dataset_num_proc, d.load_from_cache_file)
    val = job.data.val
    if val is not None:
        val = encode_rows(val, template, stage, d.dataset_num_proc, d.load_from_cache_file)
    if d.streaming:
        first = next(iter(train))
    elif len(train) == 0:
        raise UserError("no trainable rows left after encoding", hint="run lmforge check with the same flags")
    else:
        first = train[0]
    print("[lmforge] first encoded sample (trained spans in [[ ]]):")
    print(template.render_marked(Encoded(first["input_ids"], first["labels"])))
    return train, val


@register_method("sft", stage="sft")
@register_method("pt", stage="pt", loss_scale="all")
def build(job: Job) -> Any:
    if job.task.trainer:  # --task_type seq_cls/embedding/...: the task's own rows, head and trainer (tasks.py)
        from lmforge.tasks import task_callable

        return task_callable(job.task.trainer)(job)
    import transformers

    from lmforge.train.collate import FlatCollator, PaddedCollator, pack_rows
    from lmforge.train.job import record
    from lmforge.train.loading import load_policy
    from lmforge.train.media import collator_for, flat_allowed
    from lmforge.train.output import write_rows
    from lmforge.train.trainer import LmforgeTrainer
    from lmforge.train.trainer_args import callbacks, finish, optimizer, training_kwargs

    a = job.args
    from lmforge.train.evaluating import eval_plan

    evaluating = eval_plan(a)  # sets, options and rows checked before the model loads
    flat_ok = flat_allowed(job.setup.template, a.train.packing, bool(a.train.padding_free))
    packing = a.train.packing and flat_ok
    train_ds, val_ds = encode(job)
    max_length = a.template.max_length or 2048
    if packing:
        train_ds = pack_rows(train_ds, max_length)
        print(f"[lmforge] packed into {len(train_ds)} rows of <= {max_length} tokens")
    if not a.data.streaming:
        from lmforge.estimate import print_estimate

        lengths = train_ds["length"]
        trained = [n // 2 for n in lengths] if job.method.stage == "sft" else lengths  # answers: ~half a chat row
        print_estimate(a, job.setup.model_dir, lengths, trained, strict=False)
    model = load_policy(job, fast_paths=True)
    padding_free = a.train.padding_free if a.train.padding_free is not None else flat_by_default(job.setup.config)
    padding_free = padding_free and flat_ok
    record(job, {"padding_free": padding_free})
    if job.data.val is not None and not a.data.val_dataset:  # the carved split, for infer --load_data_args
        write_rows(job.run_dir / "val_dataset.jsonl", job.data.val)
    flat = packing or padding_free
    media = collator_for(job.setup.template, job.setup.tokenizer.pad_token_id)
    targs = transformers.TrainingArguments(
        **training_kwargs(job, val_ds is not None), prediction_loss_only=True, disable_tqdm=False
    )
    trainer_cls = LmforgeTrainer
    if a.train.trainer:
        from lmforge.train.extensions import TRAINERS

        trainer_cls = TRAINERS.lookup(a.train.trainer)
    trainer = trainer_cls(
        model=model,
        args=targs,
        train_dataset=train_ds,
        eval_dataset=val_ds,
        data_collator=media or (FlatCollator() if flat else PaddedCollator(job.setup.tokenizer.pad_token_id)),
        processing_class=job.setup.tokenizer,
        callbacks=callbacks(job) + eval_callbacks(job, evaluating),
        optimizers=(optimizer(job, model), None),
        compute_loss_func=loss_function(a.train.loss_type),
    )
    return finish(trainer, job)


def eval_callbacks(job: Job, evaluating: Any) -> list:
    if evaluating is None:
        return []
    from lmforge.train.evaluating import EvalDuringTraining

    t = job.args.train
    every = t.eval_steps or t.save_steps
    return [EvalDuringTraining(*evaluating, job.setup.template, every, t.per_device_eval_batch_size * 8)]


def loss_function(name: str | None) -> Any:
    """--loss_type: a plug-in's loss (transformers' compute_loss_func contract); None keeps our own."""
    if name is None:
        return None
    from lmforge.train.extensions import LOSSES

    return LOSSES.lookup(name)


def flat_by_default(config: dict) -> bool:
    """Padding-free batches need the model to turn restarting position_ids into a block-diagonal mask, which
    transformers does for these families with sdpa/eager attention (checked: packed logits equal unpacked)."""
    return config.get("model_type") in {"llama", "qwen2", "qwen3", "qwen2_moe", "qwen3_moe", "mistral"}
