"""Evaluation sets scored during training (`lmforge sft --eval_dataset general_qa ... --eval_steps N`): at every
N steps and at the last one, the current weights answer the rows through lmforge's engine (the model in place,
no copy, no reload) and `eval_<dataset>_<metric>` goes to logging.jsonl and its plots, next to eval_loss.

The sets, their options and every row are checked and read before the model loads (eval/plan.py)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from transformers import TrainerCallback

from lmforge.errors import UserError
from lmforge.eval.backends import LocalBackend
from lmforge.eval.plan import EvalPlan, make_plan
from lmforge.eval.run import load_samples
from lmforge.eval.scorers import SCORERS
from lmforge.runargs import RunArgs

if TYPE_CHECKING:
    from lmforge.args.parser import Args


def eval_plan(args: Args) -> tuple[EvalPlan, list] | None:
    """The plan and rows of sft's --eval_dataset (None when none is given)."""
    e = args.groups.get("eval")
    if e is None or not e.eval_dataset:
        return None
    saved = RunArgs.from_dict(args.to_dict())  # --model_name/--model_author: the identity keywords
    plan = make_plan(args, saved, can_score=True)
    delegated = [p.task.name for p in plan.datasets if p.task.runs is not None]
    if delegated:
        raise UserError(
            f"--eval_dataset {delegated[0]}: EvalScope's benchmarks are not scored during training",
            hint="train with lmforge's sets (general_qa, general_mcq, ...), then `lmforge eval` the checkpoint",
        )
    return plan, load_samples(plan)


class EvalDuringTraining(TrainerCallback):
    """Scores the evaluation sets every `every` steps; needs `bind(trainer)` to log through the Trainer."""

    def __init__(self, plan: EvalPlan, samples: list, template: Any, every: int, batch: int):
        self.plan, self.samples, self.template, self.every, self.batch = plan, samples, template, every, batch
        self.trainer: Any = None
        self.backend: LocalBackend | None = None  # one engine over the model being trained, made at first use
        self.done_at = -1

    def bind(self, trainer: Any) -> None:
        self.trainer = trainer

    def on_step_end(self, args, state, control, model=None, **kwargs):  # noqa: ANN001
        step = state.global_step
        if step != self.done_at and (step % self.every == 0 or step >= state.max_steps):
            self.done_at = step
            logs = self.scores(self.trainer.accelerator.unwrap_model(model or self.trainer.model))
            # Trainer.log runs on_log, where transformers' flow callback clears the flags it set for this step:
            # keep them, or the step's own loss line, evaluation and save would be skipped
            flags = (control.should_log, control.should_evaluate, control.should_save)
            self.trainer.log(logs)
            control.should_log, control.should_evaluate, control.should_save = flags
        return control

    def scores(self, model: Any) -> dict[str, float]:
        from lmforge.infer.pt import PtEngine

        t0 = time.perf_counter()
        if self.backend is None:
            self.backend = LocalBackend(PtEngine(model, self.template, self.batch), "train")
        backend = self.backend
        logs: dict[str, float] = {}
        for p, rows in zip(self.plan.datasets, self.samples):
            graded = SCORERS[p.task.scorer](backend, rows, p.options, self.plan.sampling)
            main = p.task.main
            logs[f"eval_{p.task.name}_{main}"] = round(sum(r.scores[main] for r in graded) / len(graded), 6)
        logs["eval_datasets_runtime"] = round(time.perf_counter() - t0, 2)
        return logs
