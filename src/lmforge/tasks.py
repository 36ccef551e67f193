"""What a model is trained to do: the task table. A task names the transformers auto class that loads the model,
the peft task type its adapters get, and the extra config the head needs.

Causal LM is the default task of sft/pt and most rlhf methods; the reward model (`rlhf --rlhf_type rm`, PPO's
`--reward_model`) is a one-logit sequence classifier. `sft --task_type seq_cls|embedding|reranker|
generative_reranker` picks one of the other entries: each names the module that builds its trainer (`trainer`) and
the one that runs it for infer/deploy (`runner`), as "module:function" strings so this table stays import-light.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lmforge.errors import UserError


@dataclass(frozen=True)
class Task:
    name: str
    auto_class: str  # a transformers Auto* class name
    peft_task_type: str  # peft.TaskType value
    model_kwargs: dict[str, Any] = field(default_factory=dict)  # e.g. num_labels for a classifier head
    trainer: str | None = None  # "module:function(job) -> trainer" for sft; None: the causal-LM SFT path
    runner: str | None = None  # "module:function(resolved, ...) -> TaskRunner" for infer and deploy
    routes: tuple[str, ...] = ()  # the task-specific server routes this task answers (serve/tasks_routes.py)


TASKS: dict[str, Task] = {}


def register_task(name: str, **fields: Any) -> Task:
    """Add a task (plug-ins too): `register_task("seq_cls3", auto_class=..., peft_task_type="SEQ_CLS", ...)`."""
    TASKS[name] = Task(name, **fields)
    return TASKS[name]


register_task("causal_lm", auto_class="AutoModelForCausalLM", peft_task_type="CAUSAL_LM")
register_task(
    "reward", auto_class="AutoModelForSequenceClassification", peft_task_type="SEQ_CLS", model_kwargs={"num_labels": 1}
)
register_task(
    "seq_cls",
    auto_class="AutoModelForSequenceClassification",
    peft_task_type="SEQ_CLS",
    trainer="lmforge.train.seq_cls:build",
    runner="lmforge.infer.task_runner:SeqClsRunner",
    routes=("/v1/classify",),
)
register_task(
    "embedding",
    auto_class="AutoModel",
    peft_task_type="FEATURE_EXTRACTION",
    trainer="lmforge.train.embedding:build",
    runner="lmforge.infer.task_runner:EmbeddingRunner",
    routes=("/v1/embeddings",),
)
register_task(  # a one-score head over (query, document) pairs
    "reranker",
    auto_class="AutoModelForSequenceClassification",
    peft_task_type="SEQ_CLS",
    model_kwargs={"num_labels": 1},
    trainer="lmforge.train.reranker:build",
    runner="lmforge.infer.task_runner:RerankerRunner",
    routes=("/v1/rerank", "/v1/score"),
)
register_task(  # Qwen3-Reranker style: logit(yes) - logit(no) of the causal LM at the last position
    "generative_reranker",
    auto_class="AutoModelForCausalLM",
    peft_task_type="CAUSAL_LM",
    trainer="lmforge.train.reranker:build",
    runner="lmforge.infer.task_runner:GenerativeRerankerRunner",
    routes=("/v1/rerank", "/v1/score"),
)


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise UserError(f"unknown task '{name}'; known: {', '.join(sorted(TASKS))}")
    return TASKS[name]


def task_callable(target: str) -> Any:
    """A "module:function" string of the table, imported when used."""
    import importlib

    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)
