"""`lmforge sft --task_type seq_cls`: a sequence classifier (transformers' *ForSequenceClassification head on any
causal LM, peft SEQ_CLS adapters with the head in modules_to_save), trained by transformers' Trainer with our
atomic checkpoints. The loss follows `problem_type` (cross-entropy, BCE on multi-hot rows, or MSE), as in HF and
ms-swift. args.json keeps the label spec, config.json the id2label names.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from lmforge.errors import UserError

if TYPE_CHECKING:
    from lmforge.data.labels import LabelSpec
    from lmforge.train.job import Job

# flags of our causal-LM trainer (token masks, packed rows) that a task trainer does not read
TASK_UNSUPPORTED = ("packing", "padding_free", "streaming", "loss_scale", "trainer")


def refuse_lm_flags(job: Job, also: tuple[str, ...] = ()) -> None:
    used = [f for f in (*TASK_UNSUPPORTED, *also) if f in job.explicit]
    if used:
        raise UserError(
            f"--{used[0]} is not supported with --task_type {job.task.name}", hint="drop it: it applies to causal LM"
        )


def rows_of(ds: Any) -> list[dict]:
    return [] if ds is None else [json.loads(r) for r in ds["row"]]


def spec_for(job: Job, rows: list[dict]) -> LabelSpec:
    from lmforge.data.labels import label_spec

    return label_spec(job.args.task, [r.get("label") for r in rows])


def encode_seq_cls(rows: list[dict], job: Job, spec: LabelSpec) -> Any:
    """Rows -> a Dataset of input_ids + labels; a bad label stops with file:row:label (--strict false still drops
    rows that do not convert, never rows with a wrong label: that is a data bug)."""
    import datasets

    from lmforge.data.labels import where
    from lmforge.templates.task_text import task_text

    tok, tmpl, use_tmpl = job.setup.tokenizer, job.setup.template, job.args.task.use_chat_template
    max_length = job.args.template.max_length
    out = []
    for row in rows:
        target = spec.target(row.get("label"), where(row))
        text = task_text(row["messages"], tmpl, use_tmpl)
        ids = tok(text, add_special_tokens=not use_tmpl, truncation=bool(max_length), max_length=max_length)
        out.append({"input_ids": ids["input_ids"], "labels": target})
    return datasets.Dataset.from_list(out)


def task_trainer(
    job: Job,
    model: Any,
    train_ds: Any,
    val_ds: Any,
    collator: Any,
    cls: Any = None,
    args_cls: Any = None,
    extra: dict[str, Any] | None = None,
) -> Any:
    """transformers' Trainer (or `cls` with its `args_cls`) with our checkpoints, callbacks, optimizer and
    progress bar; `extra`: more trainer inputs (a sentence-transformers loss)."""
    import transformers

    from lmforge.thirdparty import with_checkpoint_hooks
    from lmforge.train.trainer_args import callbacks, finish, optimizer, training_kwargs

    targs = (args_cls or transformers.TrainingArguments)(
        **training_kwargs(job, val_ds is not None), prediction_loss_only=True
    )
    trainer = with_checkpoint_hooks(cls or transformers.Trainer)(
        model=model,
        args=targs,
        train_dataset=train_ds,
        eval_dataset=val_ds,
        data_collator=collator,
        processing_class=job.setup.tokenizer,
        callbacks=callbacks(job),
        optimizers=(optimizer(job, model), None),
        **(extra or {}),
    )
    return finish(trainer, job)


def build(job: Job) -> Any:
    import transformers

    from lmforge.train.job import record
    from lmforge.train.loading import load_policy

    refuse_lm_flags(job, ("loss_type",))
    train_rows, val_rows = rows_of(job.data.train), rows_of(job.data.val)
    spec = spec_for(job, train_rows + val_rows)
    train_ds = encode_seq_cls(train_rows, job, spec)
    val_ds = encode_seq_cls(val_rows, job, spec) if val_rows else None
    model = load_policy(job, head=spec.head_config())
    print(f"[lmforge] seq_cls: {spec.problem_type}, {spec.num_labels} labels {list(spec.id2label.values())}")
    record(job, {"label_spec": spec.to_dict()})
    collator = transformers.DataCollatorWithPadding(job.setup.tokenizer)
    return task_trainer(job, model, train_ds, val_ds, collator)
