"""The method table: `lmforge sft`, `lmforge pt` and each `--rlhf_type` are one entry.

An entry names its args.json stage, its task (tasks.py), the flags it does not honour (refused when set, never
silently ignored), an optional check of its own flags, and `build(job) -> trainer`: rows -> model -> trainer, the
only part that differs between methods. Built-in entries are in sft.py, rlhf.py and ppo.py; a plug-in adds one with
`register_method`.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lmforge.errors import UserError

if TYPE_CHECKING:
    from lmforge.args.parser import Args
    from lmforge.train.job import Job


@dataclass(frozen=True)
class Method:
    name: str
    stage: str  # args.json "stage": sft, pt or rlhf
    build: Callable[[Job], Any]  # -> an object with .train(resume_from_checkpoint=...)
    task: str = "causal_lm"
    loss_scale: str | None = None  # default --loss_scale for this method (pt trains every token)
    unsupported: frozenset[str] = frozenset()
    rlhf_uses: frozenset[str] | None = None  # rlhf methods: the rlhf flags they read (the others are refused)
    check: Callable[[Args], None] | None = None
    default_torch_dtype: str | None = None  # when --torch_dtype is not given (None: the precision policy)
    extras: dict[str, Any] = dataclasses.field(default_factory=dict)  # per-method data its build reads

    def refused(self, args: Args) -> set[str]:
        """The flags of `args` this method does not honour."""
        out = set(self.unsupported)
        if self.rlhf_uses is not None:
            out |= {f.name for f in dataclasses.fields(args.rlhf)} - self.rlhf_uses - {"rlhf_type"}
        return out

    @property
    def label(self) -> str:
        return self.name if self.stage != "rlhf" else f"rlhf --rlhf_type {self.name}"


METHODS: dict[str, Method] = {}
_BUILTIN = ("lmforge.train.sft", "lmforge.train.rlhf", "lmforge.train.ppo")


def register_method(name: str, **fields: Any) -> Callable[[Callable], Callable]:
    """Decorator over a build function: `@register_method("dpo", stage="rlhf", unsupported=...)`."""

    def deco(build: Callable) -> Callable:
        METHODS[name] = Method(name, build=build, **fields)
        return build

    return deco


def get_method(name: str) -> Method:
    for module in _BUILTIN:
        importlib.import_module(module)
    if name not in METHODS:
        raise UserError(f"unknown training method '{name}'", hint=f"known: {', '.join(sorted(METHODS))}")
    return METHODS[name]


# flags of the shared groups that only our own trainer (sft/pt) implements: trl tokenises rows itself
OWN_TRAINER_ONLY = frozenset({"packing", "padding_free", "streaming", "loss_scale", "truncation_strategy"})
