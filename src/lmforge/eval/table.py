"""The table of evaluation sets `--eval_dataset` names, filled by `register_eval_dataset`: what a row is
(`Sample`) and what a set is (`EvalTask`: its reader, its scorer, its metrics and options). Torch-free."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lmforge.registry import Registry

LETTERS = "ABCDEFGHIJ"


@dataclass(frozen=True)
class Sample:
    """One row to evaluate: the conversation the model answers (few-shot already in it), and what is right."""

    id: str
    subset: str
    messages: list[dict]
    target: str  # the answer letter, the reference answer, or the keywords joined by '|'
    choices: tuple[str, ...] = ()  # multiple choice: the texts of A, B, ...


@dataclass(frozen=True)
class EvalTask:
    """A dataset kind: how its rows are read (`load(options)`) and which scorer (eval/scorers.py) grades them.
    `options` are the keys its `--eval_dataset_args` entry may hold; `metrics` what its report lists, `main` first."""

    name: str
    scorer: str  # mcq, qa, keywords (eval/scorers.py SCORERS)
    load: Callable[[dict], list[Sample]]
    metrics: tuple[str, ...]
    options: frozenset[str] = frozenset()
    defaults: dict[str, Any] = field(default_factory=dict)
    required: frozenset[str] = frozenset()  # options that must be given (general_mcq's local_path)
    # a set run by another harness (EvalScope, eval/delegate.py): (backend, plan, context) -> (report, reviews);
    # its options are that harness's to check
    runs: Callable[..., tuple[dict, list]] | None = None

    @property
    def main(self) -> str:
        return self.metrics[0]


EVAL_DATASETS: Registry[EvalTask] = Registry("eval dataset", "--eval_dataset")


def register_eval_dataset(task: EvalTask) -> EvalTask:
    """Plug-ins register their own sets (`--external_plugins`); the name is what `--eval_dataset` takes."""
    return EVAL_DATASETS.register(task.name, task)
