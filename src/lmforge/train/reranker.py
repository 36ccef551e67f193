"""`lmforge sft --task_type reranker|generative_reranker --loss_type pointwise_reranker|listwise_reranker`:
score (query, document) pairs. Each row becomes a group — its positive and its first n hard negatives (n: the
fewest any row has, capped by ms-swift's $MAX_NEGATIVE_SAMPLES, 7) — all in the same batch.

pointwise_reranker: binary cross-entropy of each pair's score against 1 (positive) / 0 (negative).
listwise_reranker: softmax cross-entropy over each group's scores / $LISTWISE_RERANKER_TEMPERATURE (1.0), the
positive being the answer (ms-swift's two reranker losses, same names)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from lmforge.data.labels import where
from lmforge.data.pairs import columns
from lmforge.errors import DataError, UserError

if TYPE_CHECKING:
    from lmforge.train.job import Job

RERANKER_LOSSES = ("pointwise_reranker", "listwise_reranker")


def loss_name(job: Job) -> str:
    name = job.args.train.loss_type or "pointwise_reranker"
    if name not in RERANKER_LOSSES:
        raise UserError(f"--loss_type {name}: not a reranker loss", hint=f"one of {', '.join(RERANKER_LOSSES)}")
    return name


def row_problem(row: dict) -> str | None:
    """What makes a row unusable for a reranker (train and `lmforge check`), or None."""
    c = columns(row)
    if c.positive is not None and c.negatives:
        return None
    part = "response" if c.positive is None else "rejected_response"
    return f"{where(row)}: {part}: a reranker row needs a positive and at least one negative document"


def groups(rows: list[dict], job: Job, generative: bool) -> Any:
    """Rows -> a Dataset of groups: `input_ids` (positive first, then negatives) and `labels` (1, 0, 0, ...)."""
    import datasets

    from lmforge.models.rerank import pair_text

    tok, tmpl, use = job.setup.tokenizer, job.setup.template, job.args.task.use_chat_template
    max_length = job.args.template.max_length
    cols = [(r, columns(r)) for r in rows]
    for row, _ in cols:
        if (problem := row_problem(row)) is not None:
            raise DataError(problem, hint="give `response` and `rejected_response` (or positive/negative_messages)")
    n_neg = min(min(len(c.negatives) for _, c in cols), int(os.environ.get("MAX_NEGATIVE_SAMPLES", "7")))
    out = []
    for _, c in cols:
        texts = [pair_text(c.anchor, d, tmpl, use, generative) for d in (c.positive, *c.negatives[:n_neg])]
        enc = tok(texts, add_special_tokens=not use, truncation=bool(max_length), max_length=max_length)
        out.append({"input_ids": enc["input_ids"], "labels": [1.0] + [0.0] * n_neg})
    return datasets.Dataset.from_list(out)


def collator(tokenizer: Any) -> Any:
    """Groups -> one padded batch of all their pairs, `labels` (groups x group size)."""
    import torch

    def collate(features: list[dict]) -> dict[str, Any]:
        flat = [{"input_ids": ids} for f in features for ids in f["input_ids"]]
        batch = tokenizer.pad(flat, return_tensors="pt")
        batch["labels"] = torch.tensor([f["labels"] for f in features])
        return dict(batch)

    return collate


def trainer_class(loss: str, tokens: tuple[int, int] | None) -> Any:
    """transformers' Trainer with the reranker loss over the scores of models/rerank.py."""
    import torch
    import transformers

    from lmforge.models.rerank import scores

    temperature = float(os.environ.get("LISTWISE_RERANKER_TEMPERATURE", "1.0"))

    class RerankerTrainer(transformers.Trainer):
        def compute_loss(self, model: Any, inputs: dict, return_outputs: bool = False, **kwargs: Any) -> Any:
            labels = inputs.pop("labels")
            s = scores(model, inputs, tokens).view(labels.shape)
            if loss == "listwise_reranker":
                target = torch.zeros(labels.shape[0], dtype=torch.long, device=s.device)  # the positive is first
                value = torch.nn.functional.cross_entropy(s / temperature, target)
            else:
                value = torch.nn.functional.binary_cross_entropy_with_logits(s, labels.to(s.dtype))
            return (value, {"logits": s}) if return_outputs else value

    return RerankerTrainer


def build(job: Job) -> Any:
    from lmforge.models.rerank import answer_tokens
    from lmforge.train.job import record
    from lmforge.train.loading import load_policy
    from lmforge.train.seq_cls import refuse_lm_flags, rows_of, task_trainer

    refuse_lm_flags(job)
    generative = job.task.name == "generative_reranker"
    loss = loss_name(job)
    t = job.args.task
    tokens = None
    if generative:
        tokens = answer_tokens(
            job.setup.tokenizer, t.generative_reranker_positive_token, t.generative_reranker_negative_token
        )
    train_ds = groups(rows_of(job.data.train), job, generative)
    val_rows = rows_of(job.data.val)
    val_ds = groups(val_rows, job, generative) if val_rows else None
    model = load_policy(job)
    extra: dict[str, Any] = {"resolved_loss_type": loss}
    if tokens is not None:
        extra["answer_token_ids"] = list(tokens)
    record(job, extra)
    size = len(train_ds[0]["labels"])
    print(f"[lmforge] {job.task.name}: {loss}, groups of 1 positive + {size - 1} negatives")
    return task_trainer(job, model, train_ds, val_ds, collator(job.setup.tokenizer), cls=trainer_class(loss, tokens))
