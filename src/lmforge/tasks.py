"""What a model is trained to do: the task table. A task names the transformers auto class that loads the model,
the peft task type its adapters get, and the extra config the head needs.

Causal LM is the only task of sft/pt and most rlhf methods; the reward model (`rlhf --rlhf_type rm`, PPO's
`--reward_model`) is a one-logit sequence classifier. Classification, embedding and reranker tasks add entries here.
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


TASKS: dict[str, Task] = {}


def register_task(name: str, **fields: Any) -> Task:
    """Add a task (plug-ins too): `register_task("seq_cls3", auto_class=..., peft_task_type="SEQ_CLS", ...)`."""
    TASKS[name] = Task(name, **fields)
    return TASKS[name]


register_task("causal_lm", auto_class="AutoModelForCausalLM", peft_task_type="CAUSAL_LM")
register_task(
    "reward", auto_class="AutoModelForSequenceClassification", peft_task_type="SEQ_CLS", model_kwargs={"num_labels": 1}
)


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise UserError(f"unknown task '{name}'; known: {', '.join(sorted(TASKS))}")
    return TASKS[name]
