"""`lmforge sft --task_type embedding --loss_type infonce|cosine_similarity|contrastive|online_contrastive`: any
causal LM's trunk (AutoModel) as a sentence embedder — pooled as its family is (models/pooling.py), normalised —
trained with sentence-transformers' losses (ms-swift's embedding losses are copies of them, margin 0.5 included).

Row forms: ms-swift's (data/pairs.py), `label` for the pairwise losses.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lmforge.data.labels import where
from lmforge.data.pairs import columns
from lmforge.errors import DataError, UserError

if TYPE_CHECKING:
    from lmforge.train.job import Job


@dataclass(frozen=True)
class EmbeddingLoss:
    pairwise: bool  # rows are (sentence1, sentence2, label) pairs; else (anchor, positive, negative_i...)
    make: Callable[[Any, Job], Any]  # (SentenceTransformer, job) -> the loss module


def temperature(job: Job) -> float:
    t = job.args.task.infonce_temperature
    return t if t is not None else float(os.environ.get("INFONCE_TEMPERATURE", "0.1"))


def _infonce(model: Any, job: Job) -> Any:
    from sentence_transformers.losses import MultipleNegativesRankingLoss

    return MultipleNegativesRankingLoss(model, scale=1.0 / temperature(job))


def _cosine(model: Any, job: Job) -> Any:
    from sentence_transformers.losses import CosineSimilarityLoss

    return CosineSimilarityLoss(model)


def _contrastive(model: Any, job: Job) -> Any:
    from sentence_transformers.losses import ContrastiveLoss

    return ContrastiveLoss(model, margin=0.5)


def _online(model: Any, job: Job) -> Any:
    from sentence_transformers.losses import OnlineContrastiveLoss

    return OnlineContrastiveLoss(model, margin=0.5)


EMBEDDING_LOSSES: dict[str, EmbeddingLoss] = {
    "infonce": EmbeddingLoss(False, _infonce),
    "cosine_similarity": EmbeddingLoss(True, _cosine),
    "contrastive": EmbeddingLoss(True, _contrastive),
    "online_contrastive": EmbeddingLoss(True, _online),
}


def loss_spec(job: Job) -> tuple[str, EmbeddingLoss]:
    name = job.args.train.loss_type or "infonce"
    if name not in EMBEDDING_LOSSES:
        raise UserError(f"--loss_type {name}: not an embedding loss", hint=f"one of {', '.join(EMBEDDING_LOSSES)}")
    return name, EMBEDDING_LOSSES[name]


def table(rows: list[dict], job: Job, name: str, spec: EmbeddingLoss) -> dict[str, list]:
    """Rows -> sentence-transformers' columns (texts rendered as training and inference render them)."""
    from lmforge.templates.task_text import task_text

    tmpl, use = job.setup.template, job.args.task.use_chat_template

    def text(turns: list[dict]) -> str:
        return task_text(turns, tmpl, use, end_token=True)

    cols = [(r, columns(r)) for r in rows]
    for row, c in cols:
        if c.positive is None:
            raise DataError(
                f"{where(row)}: response: --loss_type {name} needs a positive for each anchor",
                hint="give `response` (or `positive_messages`)",
            )
        if spec.pairwise and not isinstance(c.label, (int, float)):
            raise DataError(
                f"{where(row)}: label: --loss_type {name} needs a number per pair (1/0 or a similarity)",
                hint="or use --loss_type infonce",
            )
    if spec.pairwise:
        return {
            "sentence1": [text(c.anchor) for _, c in cols],
            "sentence2": [text(c.positive) for _, c in cols],
            "label": [float(c.label) for _, c in cols],
        }
    n_neg = min((len(c.negatives) for _, c in cols), default=0)
    out: dict[str, list] = {
        "anchor": [text(c.anchor) for _, c in cols],
        "positive": [text(c.positive) for _, c in cols],
    }
    for i in range(n_neg):  # every row the same number of hard negatives (one tensor per column)
        out[f"negative_{i + 1}"] = [text(c.negatives[i]) for _, c in cols]
    return out


def check_infonce_batch(job: Job, cols: dict[str, list]) -> None:
    """InfoNCE contrasts a positive with negatives: with one row per batch and no hard negatives there are none."""
    bs = job.args.train.per_device_train_batch_size * job.world_size
    if bs < 2 and not any(k.startswith("negative_") for k in cols):
        raise UserError(
            "--loss_type infonce with a batch of 1 and no hard negatives has no negatives to contrast",
            hint="raise --per_device_train_batch_size (the other rows are the negatives) or add rejected_response",
        )


def build(job: Job) -> Any:
    import datasets

    from lmforge.models.pooling import POOLING_MODES, pooling_for
    from lmforge.train.job import record
    from lmforge.train.loading import load_policy
    from lmforge.train.seq_cls import refuse_lm_flags, rows_of, task_trainer

    refuse_lm_flags(job)
    try:
        from sentence_transformers import (
            SentenceTransformer,
            SentenceTransformerTrainer,
            SentenceTransformerTrainingArguments,
        )
        from sentence_transformers.models import Normalize, Pooling, Transformer
    except ImportError:
        raise UserError("--task_type embedding needs sentence-transformers", hint="pip install 'lmforge[tasks]'")
    name, spec = loss_spec(job)
    train_cols = table(rows_of(job.data.train), job, name, spec)
    val_rows = rows_of(job.data.val)
    val_cols = table(val_rows, job, name, spec) if val_rows else None
    if not spec.pairwise:
        check_infonce_batch(job, train_cols)
    mode = pooling_for(job.setup.model_dir, job.args.task.pooling)
    # text modality only: sentence-transformers 6.2 otherwise wraps every string in the tokenizer's chat template
    # itself (its "message" modality), on top of ours; pinned here, it is saved with the checkpoint
    text_only = {"text": {"method": "forward", "method_output_name": "last_hidden_state"}}
    trunk = Transformer(str(job.setup.model_dir), modality_config=text_only, module_output_name="token_embeddings")
    trunk.model = load_policy(job)  # our loading flags and tuner (LoRA/full) on the same weights
    dim = trunk.model.config.hidden_size
    model = SentenceTransformer(modules=[trunk, Pooling(dim, pooling_mode=POOLING_MODES[mode]), Normalize()])
    model.to("cuda" if job.on_gpu else "cpu")
    extra = {"pooling": mode, "resolved_loss_type": name}
    if name == "infonce":
        extra["resolved_infonce_temperature"] = temperature(job)
    record(job, extra)
    print(f"[lmforge] embedding: {name} loss, {mode} pooling, columns {list(train_cols)}")
    train_ds = datasets.Dataset.from_dict(train_cols)
    val_ds = datasets.Dataset.from_dict(val_cols) if val_cols else None
    loss = {"loss": spec.make(model, job)}
    st = {"cls": SentenceTransformerTrainer, "args_cls": SentenceTransformerTrainingArguments}
    return task_trainer(job, model, train_ds, val_ds, None, **st, extra=loss)
