"""Names in flags checked against the registries, once plug-ins are loaded (the CLI runs this right after
`lmforge.plugins.load_plugins`): templates, model families, rewards, datasets, and every plug-in table. It sits
above args/ because the tables live in the packages the flags feed (templates, models, data, train, tuners)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from lmforge.args.validate import NAME_KINDS, shown, unique_specs, values
from lmforge.errors import UserError

if TYPE_CHECKING:
    from lmforge.args.parser import Args, FlagSpec

# names looked up in a plug-in-extensible table (module, attribute): a lmforge.registry.Registry
REGISTRY_KINDS = {
    "loss_scale": ("lmforge.templates.loss_scale", "LOSS_SCALES"),
    "metric": ("lmforge.infer.metrics", "METRICS"),
    "agent_template": ("lmforge.agent.parsers", "TOOL_PARSERS"),
    "callback": ("lmforge.train.extensions", "CALLBACKS"),
    "optimizer": ("lmforge.train.extensions", "OPTIMIZERS"),
    "trainer": ("lmforge.train.extensions", "TRAINERS"),
    "tuner": ("lmforge.tuners.table", "get_tuner"),  # a function: the table loads its built-in entries first
    "exporter": ("lmforge.export.methods", "EXPORTERS"),
}


def check_names(args: Args) -> None:
    """Template, model family, reward and dataset names, against the registries (plug-ins loaded)."""
    for spec in unique_specs(args):
        kind = spec.meta.get("kind")
        if kind in NAME_KINDS:
            for value in values(args, spec):
                NAME_CHECKS[kind](spec, value, args)


def _template(spec: FlagSpec, value: str, args: Args) -> None:
    from lmforge.templates import get_template

    try:
        get_template(value)
    except UserError as e:
        raise UserError(f"--{spec.name}: {e}")


def _model_type(spec: FlagSpec, value: str, args: Args) -> None:
    from lmforge.models.registry import FAMILIES, family_for

    try:
        family_for(None, value)
    except UserError:
        raise UserError(f"--{spec.name} {shown(value)}: unknown model family; known: {', '.join(sorted(FAMILIES))}")


def _reward(spec: FlagSpec, value: str, args: Args) -> None:
    from lmforge.train.rewards import REWARDS

    known = sorted([*REWARDS, "soft_overlong"])
    if value not in known:
        raise UserError(
            f"--{spec.name}: unknown reward function '{value}'; known: {', '.join(known)}",
            hint="register your own with --external_plugins",
        )


def _dataset(spec: FlagSpec, value: str, args: Args) -> None:
    """Syntax always; existence only for what the loader would take for a local path (a registered name or a
    hub id `org/name` is not looked up here: that needs the hub)."""
    from lmforge.data import builtin  # noqa: F401  (registers the built-in datasets)
    from lmforge.data.registry import DatasetSpec, lookup

    try:
        parsed = DatasetSpec.parse(value)
    except UserError as e:
        raise UserError(f"--{spec.name}: {e}")
    data = args.groups.get("data")
    if data is not None and data.custom_dataset_info:
        return  # names registered by those files are known only once the loader reads them
    src = parsed.source
    hub_like = "/" in src and not src.startswith((".", "/", "~"))
    if lookup(parsed) is None and not hub_like and not Path(src).expanduser().exists():
        raise UserError(
            f"--{spec.name} {shown(value)}: no such file, folder or registered dataset",
            hint="check the path; registered names include self-cognition",
        )


def _eval_dataset(spec: FlagSpec, value: str, args: Args) -> None:
    from lmforge.eval.datasets import lookup_eval_dataset

    lookup_eval_dataset(value)  # case-insensitive, close matches in the message


def _registered(spec: FlagSpec, value: str, args: Args) -> None:

    module, attr = REGISTRY_KINDS[spec.meta["kind"]]
    table = getattr(importlib.import_module(module), attr)
    if value != "all" or spec.meta["kind"] != "loss_scale":  # `all` is the encoder's own (every token)
        table.lookup(value) if hasattr(table, "lookup") else table(value)


NAME_CHECKS: dict[str, Callable[..., None]] = {
    "template": _template,
    "model_type": _model_type,
    "reward": _reward,
    "dataset": _dataset,
    "eval_dataset": _eval_dataset,
    **{kind: _registered for kind in REGISTRY_KINDS},
}
assert set(NAME_CHECKS) == NAME_KINDS, "args/validate.py NAME_KINDS and this table name the same kinds"
