"""Everything `lmforge eval` is asked, checked and resolved before any model loads: the datasets and their
`--eval_dataset_args`, the generation settings, the `--fail_on` conditions. One line per problem."""

from __future__ import annotations

import dataclasses
import json
import operator
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lmforge.errors import UserError
from lmforge.eval.datasets import evalscope_task, lookup_eval_dataset
from lmforge.eval.scorers import SCORERS, generates
from lmforge.eval.table import EvalTask
from lmforge.infer.engine import SamplingConfig

if TYPE_CHECKING:
    from lmforge.args.parser import Args
    from lmforge.runargs import RunArgs

# what --fail_on may test besides scores: the behaviour checks of generated answers (report.behaviour)
BEHAVIOUR_KEYS = ("stop_rate", "leaks", "think_leaks", "empty", "mean_tokens", "max_tokens")
OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq, "!=": operator.ne}
# --eval_generation_config key -> SamplingConfig field (EvalScope's and transformers' spellings)
GEN_KEYS = {
    "max_tokens": "max_new_tokens",
    "max_new_tokens": "max_new_tokens",
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "repetition_penalty": "repetition_penalty",
    "seed": "seed",
    "stop": "stop",
    "do_sample": None,  # false: greedy
}
DEFAULT_MAX_TOKENS = 512
# multiple choice: the answer letter's log-likelihood, a generated letter, or each choice text's (lm-eval's form)
MCQ_MODES = ("loglikelihood", "generate", "choice_text")


@dataclass(frozen=True)
class DatasetPlan:
    task: EvalTask
    options: dict[str, Any]
    generates: bool  # answers are generated (behaviour checks apply)


@dataclass(frozen=True)
class Condition:
    key: str
    op: str
    value: float

    def holds(self, actual: float) -> bool:
        return OPS[self.op](actual, self.value)

    def __str__(self) -> str:
        return f"{self.key}{self.op}{self.value:g}"


@dataclass(frozen=True)
class EvalPlan:
    datasets: list[DatasetPlan]
    sampling: SamplingConfig
    limit: int | None
    fail_on: list[Condition]
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)  # --extra_eval_args: EvalScope's TaskConfig


def _json(value: str | None) -> dict:
    return json.loads(value) if value else {}  # checked to be a JSON object by args/validate.py


def _identity_keywords(saved: RunArgs | None) -> list[str]:
    """The run's own --model_name/--model_author (args.json), which the self-cognition data put in its answers."""
    raw = saved.raw if saved else {}
    return [str(v) for key in ("model_name", "model_author") for v in (raw.get(key) or []) if str(v).strip()]


def _dataset_options(task: EvalTask, given: Any, saved: RunArgs | None) -> dict:
    if not isinstance(given, dict):
        raise UserError(f"--eval_dataset_args {task.name}: expected a JSON object of options")
    unknown = sorted(set(given) - task.options)
    if unknown and task.runs is None:
        known = ", ".join(sorted(task.options)) or "none"
        raise UserError(f"--eval_dataset_args {task.name}: unknown option '{unknown[0]}'; known: {known}")
    opts = {**task.defaults, **given}
    if "local_path" in task.required and "local_path" not in opts:
        raise UserError(
            f'--eval_dataset {task.name} needs its data: --eval_dataset_args \'{{"{task.name}": '
            f'{{"local_path": "DIR"}}}}\'',
            hint="data is read from local files only (no hub)",
        )
    if "keywords" in task.options and not opts.get("keywords"):
        opts["keywords"] = _identity_keywords(saved)
        if not opts["keywords"]:
            raise UserError(
                f"--eval_dataset {task.name}: which name should the answers contain?",
                hint=f'--eval_dataset_args \'{{"{task.name}": {{"keywords": ["NAME", "AUTHOR"]}}}}\' '
                "(read from args.json of --adapters when they come from a self-cognition run)",
            )
    if opts.get("mode", "loglikelihood") not in MCQ_MODES:
        raise UserError(f"--eval_dataset_args {task.name}: mode {opts['mode']!r}: use {', '.join(MCQ_MODES)}")
    return opts


def sampling(args: Args) -> SamplingConfig:
    """--eval_generation_config over the generation flags; greedy and 512 tokens by default (ms-swift eval's
    temperature 0). The token limit always holds: a model that never stops is reported, not waited for."""
    fields: dict[str, Any] = {"max_new_tokens": DEFAULT_MAX_TOKENS, "temperature": 0.0}
    g = args.groups.get("generation")  # sft evaluates without generation flags
    if g is not None:
        fields.update(
            max_new_tokens=g.max_new_tokens or DEFAULT_MAX_TOKENS,
            temperature=g.temperature or 0.0,
            top_p=g.top_p or 1.0,
            top_k=g.top_k or 0,
            repetition_penalty=g.repetition_penalty or 1.0,
            stop=tuple(g.stop_words),
        )
    for key, value in _json(args.eval.eval_generation_config).items():
        if key not in GEN_KEYS:
            raise UserError(f"--eval_generation_config: unknown key '{key}'; known: {', '.join(GEN_KEYS)}")
        if key == "do_sample":
            fields["temperature"] = fields["temperature"] if value else 0.0
        else:
            fields[GEN_KEYS[key]] = tuple([value] if isinstance(value, str) else value) if key == "stop" else value
    try:
        return SamplingConfig(**fields)
    except (ValueError, TypeError) as e:
        raise UserError(f"--eval_generation_config: {e}")


def parse_fail_on(text: str | None, known: set[str]) -> list[Condition]:
    out = []
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        key, op, value = re.fullmatch(r"([\w.\-]+)\s*(<=|>=|<|>|==|!=)\s*(-?[\d.]+)", part).groups()
        if key not in known:
            raise UserError(f"--fail_on {key}: unknown; known: {', '.join(sorted(known))}")
        out.append(Condition(key, op, float(value)))
    return out


def make_plan(args: Args, saved: RunArgs | None, can_score: bool) -> EvalPlan:
    e = args.eval  # EvalArgs, or sft's TrainEvalArgs (no --extra_eval_args, --fail_on, --eval_backend)
    if getattr(e, "eval_backend", None) == "EvalScope":
        tasks = [evalscope_task(name) for name in e.eval_dataset]
    else:
        tasks = [lookup_eval_dataset(name) for name in e.eval_dataset]
    extra = _json(getattr(e, "extra_eval_args", None))
    if extra and not any(t.runs for t in tasks):
        raise UserError(
            "--extra_eval_args is passed to EvalScope's TaskConfig; the built-in runner takes none",
            hint="drop it, set the option in --eval_dataset_args, or run the sets with --eval_backend EvalScope",
        )
    given = _json(e.eval_dataset_args)
    names = {t.name.lower() for t in tasks}
    stray = [k for k in given if k.lower() not in names]
    if stray:
        raise UserError(f"--eval_dataset_args names '{stray[0]}', which is not in --eval_dataset")
    given = {k.lower(): v for k, v in given.items()}
    plans = []
    for task in tasks:
        opts = _dataset_options(task, given.get(task.name.lower(), {}), saved)
        plans.append(DatasetPlan(task, opts, task.runs is not None or generates(task.scorer, opts, can_score)))
        if task.runs is None:
            SCORERS.lookup(task.scorer)
    known = {p.task.name for p in plans} | {f"{p.task.name}.{m}" for p in plans for m in p.task.metrics}
    known |= {f"{p.task.name}.acc_norm" for p in plans if p.options.get("mode") == "choice_text"}
    fail_on = parse_fail_on(getattr(e, "fail_on", None), known | set(BEHAVIOUR_KEYS))
    if any(c.key in BEHAVIOUR_KEYS for c in fail_on) and not any(p.generates for p in plans):
        raise UserError(
            "--fail_on tests generated answers, but every dataset here is scored by log-likelihood",
            hint='add a generation set (general_qa, lmforge_identity) or {"mode": "generate"}',
        )
    return EvalPlan(plans, sampling(args), e.eval_limit, fail_on, extra)
