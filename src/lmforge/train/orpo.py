"""ORPO on vision-language models, on our own trainer: trl's ORPOTrainer (trl.experimental, checked with 1.16)
tokenises text itself and has no image path, so rows with images go through the sft encoder and media collator
instead, the chosen and the rejected conversation side by side in one batch.

The loss is ORPO's (Hong et al. 2024, eq. 4-7), as trl computes it for text: the mean NLL of the chosen tokens
minus beta times log sigmoid of the log odds ratio, where each answer's log probability is its mean per-token
log probability. The trained tokens are the ones sft trains (masks found by rendering with the model's template).
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from lmforge.errors import DataError, UserError
from lmforge.train.trainer import IGNORE, LmforgeTrainer

if TYPE_CHECKING:
    import torch

    from lmforge.train.job import Job


def log_odds_ratio(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """log odds(chosen) - log odds(rejected), from mean per-token log probabilities (< 0)."""
    import torch

    def log1mexp(x: torch.Tensor) -> torch.Tensor:  # log(1 - exp(x)), stable for x < 0
        return torch.where(x > -0.693, torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))

    return (chosen - rejected) - (log1mexp(chosen) - log1mexp(rejected))


class OrpoTrainer(LmforgeTrainer):
    """A batch is [chosen rows..., rejected rows...] (OrpoCollator); `beta` is ORPO's lambda."""

    def __init__(self, *args: Any, beta: float | None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.beta = 0.1 if beta is None else beta  # ORPO's lambda; the method table gives its default
        self._orpo_logs: dict[str, list[float]] = defaultdict(list)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001
        import torch
        import torch.nn.functional as F

        labels = inputs["labels"][:, 1:]
        features = {k: v for k, v in inputs.items() if k != "labels"}
        outputs = model(**features, use_cache=False)
        logits = outputs.logits[:, :-1].float()
        mask = labels != IGNORE
        token_logps = -F.cross_entropy(
            logits.transpose(1, 2), labels.masked_fill(~mask, 0), reduction="none"
        ).masked_fill(~mask, 0.0)
        counts = mask.sum(-1).clamp(min=1)
        mean_logps = token_logps.sum(-1) / counts
        chosen, rejected = mean_logps.chunk(2)
        n = chosen.shape[0]
        nll = -token_logps[:n].sum() / counts[:n].sum()
        odds = log_odds_ratio(chosen, rejected)
        ratio = F.logsigmoid(odds)
        loss = nll - self.beta * ratio.mean()
        if model.training:
            self._count(logits[:n].argmax(-1), labels[:n], inputs)
            with torch.no_grad():
                for key, value in {
                    "nll_loss": nll,
                    "log_odds_ratio": odds.mean(),
                    "log_odds_chosen": ratio.mean(),
                    "rewards/chosen": self.beta * chosen.mean(),
                    "rewards/rejected": self.beta * rejected.mean(),
                    "rewards/accuracies": (chosen > rejected).float().mean(),
                    "rewards/margins": self.beta * (chosen - rejected).mean(),
                }.items():
                    self._orpo_logs[key].append(float(value))
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._orpo_logs:  # the means since the previous training log line, as trl logs them
            logs.update({k: round(sum(v) / len(v), 6) for k, v in self._orpo_logs.items()})
            self._orpo_logs.clear()
        super().log(logs, start_time)


class OrpoCollator:
    """Pairs -> one batch: the chosen rows first, then the rejected ones (padded together, media concatenated)."""

    def __init__(self, inner: Any):
        self.inner = inner

    def __call__(self, pairs: list[dict]) -> dict:
        side = lambda p, s: {k[2:]: v for k, v in p.items() if k.startswith(s)}  # noqa: E731
        return self.inner([side(p, "c_") for p in pairs] + [side(p, "r_") for p in pairs])


def _sides(row_json: str) -> tuple[str, str]:
    """A standard preference row -> (the chosen conversation, the same with the rejected answer)."""
    from lmforge.train.rows import rejected_answer

    row = json.loads(row_json)
    rejected = rejected_answer(row, "orpo")
    msgs = row["messages"]
    other = {**row, "messages": [*msgs[:-1], {"role": "assistant", "content": rejected}]}
    return row_json, json.dumps(other, ensure_ascii=False)


def encode_pairs(ds: Any, template: Any) -> Any:
    """Both sides encoded as sft rows; a pair either side of which cannot be encoded stops with its line."""
    import datasets

    from lmforge.data.pipeline import encode_rows

    if ds is None:
        return None
    sides = [_sides(r) for r in ds["row"]]
    chosen, rejected = (
        encode_rows(datasets.Dataset.from_dict({"row": list(s)}), template, "sft", keep_errors=True)
        for s in zip(*sides)
    )
    cols = ("input_ids", "labels", "media")
    pairs: dict[str, list] = {f"{p}_{c}": [] for p in "cr" for c in cols}
    pairs["length"] = []
    for c, r in zip(chosen, rejected):
        if c["error"] or r["error"]:
            raise DataError(c["error"] or f"{r['error']} (the row with its rejected_response)")
        for prefix, enc in (("c", c), ("r", r)):
            for col in cols:
                pairs[f"{prefix}_{col}"].append(enc[col])
        pairs["length"].append(c["length"] + r["length"])
    return datasets.Dataset.from_dict(pairs)


def build(job: Job, beta: float | None) -> Any:
    """rows -> pairs -> model -> OrpoTrainer (the rlhf table's ORPO entry calls this for vision-language models)."""
    import transformers

    from lmforge.train.loading import load_policy
    from lmforge.train.media import collator_for
    from lmforge.train.trainer_args import callbacks, finish, optimizer, training_kwargs

    if "max_completion_length" in job.explicit:
        raise UserError(
            "--max_completion_length is not used by ORPO on vision-language models (each side is an sft row)",
            hint="use --max_length",
        )
    template = job.setup.template
    train_ds = encode_pairs(job.data.train, template)
    val_ds = encode_pairs(job.data.val, template)
    model = load_policy(job)
    targs = transformers.TrainingArguments(
        **training_kwargs(job, val_ds is not None), prediction_loss_only=True, disable_tqdm=False
    )
    trainer = OrpoTrainer(
        model=model,
        args=targs,
        train_dataset=train_ds,
        eval_dataset=val_ds,
        data_collator=OrpoCollator(collator_for(template, job.setup.tokenizer.pad_token_id)),
        processing_class=job.setup.tokenizer,
        callbacks=callbacks(job),
        optimizers=(optimizer(job, model), None),
        beta=beta,
    )
    print(f"[lmforge] orpo on {len(train_ds)} pairs (vision-language: lmforge's own ORPO trainer)")
    return finish(trainer, job)
