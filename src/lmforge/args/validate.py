"""Every flag checked right after parsing, before any model, tokenizer or dataset is loaded (and without torch).

Three passes, run by the CLI in this order:
- `check_flags(args)`: each value against the checks declared on its field (`groups.flag`): bounds, kinds,
  patterns. Before plug-ins load, so a bad value fails before any user code runs.
- `lmforge.names.check_names(args)`: values naming things a plug-in may register (templates, datasets, ...
- `check_rules(command, args)`: the relations between flags, a table of named rules (`args/rules.py`).

Filesystem kinds are checked for the flags the user set only: a default (`--output_dir output`) is not looked at on
disk, so `lmforge check` in a read-only folder still runs. Nothing here creates a file or folder.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lmforge.args.parser import Args, FlagSpec, describe_range, flag_specs
from lmforge.args.rules import check_rules
from lmforge.errors import UserError

__all__ = ["check_flags", "check_rules", "unique_specs"]

FS_KINDS = frozenset({"file", "path", "adapter", "dir_out", "file_out", "json_file"})
# names checked against the registries once plug-ins are loaded (lmforge/names.py), not here
NAME_KINDS = frozenset({"template", "model_type", "reward", "dataset", "loss_scale", "metric"})
NAME_KINDS |= {"callback", "optimizer", "trainer", "tuner", "eval_dataset"}
NAME_KINDS |= {"exporter"}
NAME_KINDS |= {"agent_template"}


def shown(value: Any) -> str:
    text = str(value)
    return repr(text) if not text or any(c.isspace() for c in text) else text


def unique_specs(args: Args) -> list[FlagSpec]:
    """One spec per flag of the parsed command (aliases share theirs)."""
    specs = flag_specs({g: type(v) for g, v in args.groups.items()})
    return list({id(s): s for s in specs.values()}.values())


def values(args: Args, spec: FlagSpec) -> list[Any]:
    value = getattr(args.groups[spec.group], spec.name)
    if value is None:
        return []
    return list(value) if spec.is_list else [value]


def check_flags(args: Args) -> None:
    """Bounds, JSON, regexes, patterns and (for flags the user set) paths; see the module docstring."""
    for spec in unique_specs(args):
        kind = spec.meta.get("kind")
        for value in values(args, spec):
            _check_number(spec, value)
            if "pattern" in spec.meta:
                _check_pattern(spec, value)
            if kind in KIND_CHECKS and kind not in NAME_KINDS and (kind not in FS_KINDS or spec.name in args.explicit):
                KIND_CHECKS[kind](spec, value)


def _check_number(spec: FlagSpec, value: Any) -> None:
    if spec.kind not in (int, float) or isinstance(value, bool):
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise UserError(f"--{spec.name} {value}: must be a finite number")
    m = spec.meta
    if "off" in m and value == m["off"]:
        return
    ok = (
        ("ge" not in m or value >= m["ge"])
        and ("gt" not in m or value > m["gt"])
        and ("le" not in m or value <= m["le"])
        and ("lt" not in m or value < m["lt"])
    )
    if not ok:
        raise UserError(f"--{spec.name} {value}: must be {describe_range(m)}")


def _check_pattern(spec: FlagSpec, value: str) -> None:
    regex, what = spec.meta["pattern"]
    if not re.fullmatch(regex, str(value)):
        raise UserError(f"--{spec.name} {shown(value)}: not {what}", hint=spec.help)


def _json(spec: FlagSpec, value: str) -> None:
    try:
        data = json.loads(value)
    except json.JSONDecodeError as e:
        raise UserError(f"--{spec.name} {shown(value)}: invalid JSON ({e.msg} at column {e.colno})", hint=spec.help)
    want = spec.meta.get("json_type")
    if want is not None and not isinstance(data, want):
        raise UserError(f"--{spec.name} {shown(value)}: expected a JSON {want.__name__}", hint=spec.help)


def _regex(spec: FlagSpec, value: str) -> None:
    try:
        re.compile(value)
    except re.error as e:
        raise UserError(f"--{spec.name} {shown(value)}: invalid regular expression ({e})")


def _file(spec: FlagSpec, value: str) -> None:
    if not Path(value).expanduser().is_file():
        raise UserError(f"--{spec.name} {shown(value)}: no such file")


def _path(spec: FlagSpec, value: str) -> None:
    if not Path(value).expanduser().exists():
        raise UserError(f"--{spec.name} {shown(value)}: no such file or directory")


def _adapter(spec: FlagSpec, value: str) -> None:
    """A checkpoint folder; deploy also takes name=PATH (multi-LoRA)."""
    path = Path(value).expanduser()
    name, sep, rest = value.partition("=")
    if not path.exists() and sep and name and rest:
        path = Path(rest).expanduser()
    if not path.is_dir():
        raise UserError(f"--{spec.name} {shown(value)}: no such folder", hint="pass a checkpoint-N folder")


def _creatable(spec: FlagSpec, value: str, path: Path) -> None:
    """The nearest existing ancestor of `path` must be a writable folder (nothing is created here)."""
    probe = path.expanduser().absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise UserError(f"--{spec.name} {shown(value)}: cannot create it, {probe} is not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"--{spec.name} {shown(value)}: cannot write there, {probe} is not writable")


def _dir_out(spec: FlagSpec, value: str) -> None:
    _creatable(spec, value, Path(value))


def _file_out(spec: FlagSpec, value: str) -> None:
    path = Path(value).expanduser()
    if path.is_dir():
        raise UserError(f"--{spec.name} {shown(value)}: is a folder; name a file")
    _creatable(spec, value, path.parent)


def _json_file(spec: FlagSpec, value: str) -> None:
    """A preset name (also ms-swift's `default-` spelling) or a JSON file that parses."""
    presets = spec.meta.get("presets", ())
    if value in presets or value.removeprefix("default-") in presets:
        return
    path = Path(value).expanduser()
    if not path.is_file():
        raise UserError(
            f"--{spec.name} {shown(value)}: no such config", hint=f"use one of {', '.join(presets)} or a .json"
        )
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:  # the same words as train/distributed.py, which checks it again later
        raise UserError(f"--{spec.name} {shown(value)}: invalid JSON at line {e.lineno}: {e.msg}")
    except UnicodeDecodeError:
        raise UserError(f"--{spec.name} {shown(value)}: not a text file")


KIND_CHECKS: dict[str, Callable[..., None]] = {
    "json": _json,
    "regex": _regex,
    "file": _file,
    "path": _path,
    "adapter": _adapter,
    "dir_out": _dir_out,
    "file_out": _file_out,
    "json_file": _json_file,
}
