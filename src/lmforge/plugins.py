"""Plug-ins: Python files named by `--external_plugins` (ms-swift's `--custom_register_path`).

The CLI imports them right after the flags are parsed, in every command, before any model, template or dataset is
resolved, so whatever they register is seen by everything that follows. A plug-in file calls the `register_*`
functions exported here.
"""

from __future__ import annotations

import importlib.util
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lmforge.errors import UserError

_LOADED: dict[Path, object] = {}  # a file is imported once per process, however many commands run in it


def load_plugins(paths: list[str]) -> None:
    """Import each plug-in file once. A file that fails to import is a one-line error; its own frames of the
    traceback are printed first, because the plug-in's author needs them to find the bug."""
    for p in paths:
        path = Path(p).resolve()
        if path in _LOADED:
            continue
        if not path.is_file():
            raise UserError(f"--external_plugins {p}: file not found")
        spec = importlib.util.spec_from_file_location(f"lmforge_plugin_{path.stem}", path)
        if spec is None or spec.loader is None:
            raise UserError(f"--external_plugins {p}: not a Python file")
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except UserError:
            raise
        except Exception as e:
            frames = [f for f in traceback.extract_tb(e.__traceback__) if Path(f.filename).resolve() == path]
            if frames:
                print("".join(traceback.format_list(frames)).rstrip(), file=sys.stderr)
            raise UserError(f"--external_plugins {p}: plug-in failed to import ({type(e).__name__}: {e})")
        _LOADED[path] = module


# -- registration: one shape for every kind -----------------------------------------------------------------------
# `register_x(name, obj)` registers now and returns obj; `@register_x(name)` is the decorator form. Datasets,
# templates and model families may instead be described by keyword fields alone.


def register_dataset(name: str, preprocess: Any = None, **meta: Any) -> Any:
    """A dataset: DatasetMeta fields (dataset_path, hf_dataset_id, ms_dataset_id, columns, subsets, ...) and an
    optional row preprocessor `fn(row, data_args) -> row | None`."""
    from lmforge.data.registry import DatasetMeta
    from lmforge.data.registry import register_dataset as add

    def deco(fn: Any) -> Any:
        add(DatasetMeta(name=name, preprocess=fn, **meta), exist_ok=True)
        return fn

    deco(preprocess)
    return preprocess if preprocess is not None else deco


def register_template(name: str, spec: Any = None, **fields: Any) -> Any:
    """A chat template: TemplateSpec fields (jinja, end_of_turn, empty_think, ...), or a function returning one."""
    from lmforge.templates import TemplateSpec
    from lmforge.templates import register_template as add

    return _spec_or_factory(add(name), spec, lambda: TemplateSpec(**fields), fields)


def register_model(name: str, family: Any = None, **fields: Any) -> Any:
    """A model family: ModelFamily fields (model_types, template), or a function returning one."""
    from lmforge.models.registry import ModelFamily, register_family

    return _spec_or_factory(register_family(name), family, lambda: ModelFamily(**fields), fields)


def _spec_or_factory(add: Callable, given: Any, from_fields: Callable[[], Any], fields: dict) -> Any:
    if given is not None:
        return add(given)
    if fields:
        add(from_fields)
        return from_fields
    return add  # the decorator form over a factory function


def register_loss(name: str, fn: Any = None) -> Any:
    from lmforge.train.extensions import LOSSES

    return LOSSES.register(name, fn)


def register_loss_scale(name: str, fn: Any = None) -> Any:
    """`--loss_scale NAME`: `fn(messages, i) -> bool`, whether assistant message i carries loss."""
    from lmforge.templates.loss_scale import LOSS_SCALES

    return LOSS_SCALES.register(name, fn)


def register_metric(name: str, fn: Any = None) -> Any:
    """`infer --metric NAME`: `fn(pairs: list[(answer, label)]) -> float`."""
    from lmforge.infer.metrics import METRICS

    return METRICS.register(name, fn)


def register_eval_dataset(name: str, load: Any = None, *, scorer: str = "qa", **fields: Any) -> Any:
    """`lmforge eval --eval_dataset NAME`: `load(options) -> list[lmforge.eval.datasets.Sample]`, graded by the
    scorer `mcq`, `qa` or `keywords`; EvalTask fields (metrics, options, defaults) as keywords."""
    from lmforge.eval.datasets import QA_METRICS
    from lmforge.eval.table import EvalTask
    from lmforge.eval.table import register_eval_dataset as add

    def deco(fn: Any) -> Any:
        opts = frozenset(fields.pop("options", ()))
        add(EvalTask(name, scorer, fn, tuple(fields.pop("metrics", QA_METRICS)), opts, **fields))
        return fn

    return deco(load) if load is not None else deco


def register_agent_template(name: str, parser: Any = None) -> Any:
    """`--agent_template NAME`: a `lmforge.agent.parsers.ToolParser` instance (a family's tool-call markup)."""
    from lmforge.agent.parsers import TOOL_PARSERS

    return TOOL_PARSERS.register(name, parser)


def register_callback(name: str, cls: Any = None) -> Any:
    from lmforge.train.extensions import CALLBACKS

    return CALLBACKS.register(name, cls)


def register_optimizer(name: str, fn: Any = None) -> Any:
    from lmforge.train.extensions import OPTIMIZERS

    return OPTIMIZERS.register(name, fn)


def register_trainer(name: str, cls: Any = None) -> Any:
    from lmforge.train.extensions import TRAINERS

    return TRAINERS.register(name, cls)


def register_reward(name: str, fn: Any = None) -> Any:
    """`--reward_funcs NAME` (GRPO, PPO): `fn(completions, **columns) -> list[float]`."""
    from lmforge.train.rewards import REWARDS

    return REWARDS.register(name, fn)


def register_tuner(name: str, fn: Any = None, **options: Any) -> Any:
    """`--tuner_type NAME`: options of tuners.table.Tuner (peft=True for a peft config builder, trains_weights,
    mergeable, default_lr) over the builder or apply function."""
    from lmforge.tuners.table import register_tuner as add

    deco = add(name, **options)
    return deco(fn) if fn is not None else deco


def register_method(name: str, fn: Any = None, **fields: Any) -> Any:
    """A training method (train/methods.py fields) over its `build(job) -> trainer`."""
    from lmforge.train.methods import register_method as add

    deco = add(name, **fields)
    return deco(fn) if fn is not None else deco
