"""A small flag parser over the groups in `groups.py`.

Why not argparse/HfArgumentParser: HfArgumentParser imports transformers (0.9 s), and argparse's abbreviation
matching and error format do not give ms-swift's `--flag v1 v2` lists, `true/false` booleans, kebab-case spellings,
config files as the first argument, or a one-line "did you mean" for a typo.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lmforge.args.legacy import upgrade
from lmforge.errors import UserError

CONFIG_SUFFIXES = (".yaml", ".yml", ".json")
_TRUE = {"true", "1", "yes", "y", "on"}
_FALSE = {"false", "0", "no", "n", "off"}


@dataclasses.dataclass
class FlagSpec:
    name: str
    group: str
    kind: type  # str, int, float or bool
    is_list: bool
    default: Any
    help: str
    choices: tuple | None
    meta: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # the field's checks (groups.flag)


class Args:
    """Parsed flags: one attribute per group (`args.model.model`) plus `explicit`, the flags the user set."""

    def __init__(self, groups: dict[str, Any], explicit: set[str]):
        self.__dict__.update(groups)
        self._groups = groups
        self.explicit = explicit

    @property
    def groups(self) -> dict[str, Any]:
        """Group name -> parsed group dataclass."""
        return dict(self._groups)

    def to_dict(self) -> dict[str, Any]:
        """Every resolved flag, flat, as args.json stores it."""
        out: dict[str, Any] = {}
        for group in self._groups.values():
            out.update(dataclasses.asdict(group))
        return out


def _unwrap(tp: Any) -> tuple[type, bool]:
    """(scalar type, is_list) for `str | None`, `list[str]`, `bool`..."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return _unwrap(inner[0])
    if origin is list:
        return typing.get_args(tp)[0], True
    return tp, False


def flag_specs(groups: dict[str, type]) -> dict[str, FlagSpec]:
    """Flag name (and alias) -> spec, for the given group classes."""
    specs: dict[str, FlagSpec] = {}
    for gname, cls in groups.items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            kind, is_list = _unwrap(hints[f.name])
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            meta = f.metadata
            spec = FlagSpec(f.name, gname, kind, is_list, default, meta.get("help", ""), meta.get("choices"), meta)
            for name in (f.name, *f.metadata.get("aliases", ())):
                specs[name] = spec
    return specs


def _convert(spec: FlagSpec, raw: str) -> Any:
    value = _typed(spec, raw)
    if spec.choices and value not in spec.choices:
        raise UserError(f"--{spec.name}: {raw!r} is not one of {', '.join(map(str, spec.choices))}")
    return value


def _typed(spec: FlagSpec, raw: str) -> Any:
    if spec.kind is bool:
        low = raw.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise UserError(f"--{spec.name}: expected true or false, got {raw!r}")
    if spec.kind in (int, float):
        try:
            return spec.kind(raw)
        except ValueError:
            raise UserError(f"--{spec.name}: expected {'an integer' if spec.kind is int else 'a number'}, got {raw!r}")
    return raw


def is_config_file(token: str) -> bool:
    """A first argument naming a config file (the rest of argv are flags)."""
    return token.endswith(CONFIG_SUFFIXES) and not token.startswith("-")


def config_file_tokens(path: str) -> list[str]:
    """Turn a YAML/JSON config file into `--key value` tokens (file first, so the command line wins)."""
    return dict_tokens(read_config(path))


def read_config(path: str) -> dict[str, Any]:
    """The mapping a YAML/JSON config file holds; one-line errors for a missing or malformed file."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        if p.suffix == ".json":
            data = json.loads(p.read_text(encoding="utf-8"))
        else:
            import yaml

            data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except Exception as e:  # a parse error is the user's file, not our bug
        raise UserError(f"{path}: cannot parse config file ({str(e).splitlines()[0]})")
    if not isinstance(data, dict):
        raise UserError(f"{path}: a config file must map flag names to values")
    return data


def dict_tokens(data: Mapping[str, Any]) -> list[str]:
    """`{flag: value}` as `--flag value ...` tokens (lists spread, booleans lower-case, dicts as JSON)."""
    tokens: list[str] = []
    for key, value in data.items():
        tokens.append(f"--{key}")
        values = value if isinstance(value, list) else [value]
        for v in values:
            if isinstance(v, bool):
                tokens.append(str(v).lower())
            elif isinstance(v, (dict, list)):
                tokens.append(json.dumps(v))
            else:
                tokens.append(str(v))
    return tokens


def _unknown(name: str, specs: dict[str, FlagSpec]) -> UserError:
    close = difflib.get_close_matches(name, list(specs), n=1, cutoff=0.6)
    hint = f"did you mean --{close[0]}?" if close else "see --help for the valid flags"
    return UserError(f"unknown flag --{name}", hint=hint)


def parse_flags(argv: list[str], groups: dict[str, type]) -> Args:
    """Parse argv into the given groups. A first argument ending in .yaml/.yml/.json supplies defaults."""
    if argv and is_config_file(argv[0]):
        argv = config_file_tokens(argv[0]) + argv[1:]
    specs = flag_specs(groups)
    argv = upgrade(argv, specs)  # ms-swift v2/v3 names (--sft_type, --model_id_or_path ...) with a note
    values: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        tok = argv[i]
        if not tok.startswith("--") or tok == "--":
            raise UserError(f"unexpected argument {tok!r}", hint="flags look like --name value")
        name, _, inline = tok[2:].partition("=")
        name = name.replace("-", "_")
        if name not in specs:
            raise _unknown(name, specs)
        spec = specs[name]
        raw: list[str] = [inline] if inline else []
        i += 1
        # a flag takes the following tokens up to the next flag; scalars take exactly one
        while i < len(argv) and not argv[i].startswith("--") and (spec.is_list or not raw):
            raw.append(argv[i])
            i += 1
        if not raw:
            if spec.kind is bool and not spec.is_list:
                raw = ["true"]  # a bare boolean flag means true
            elif not spec.is_list:
                raise UserError(f"--{spec.name} needs a value")
        converted = [_convert(spec, r) for r in raw]
        values[spec.name] = converted if spec.is_list else converted[0]
    built = {}
    for gname, cls in groups.items():
        names = {f.name for f in dataclasses.fields(cls)}
        built[gname] = cls(**{k: v for k, v in values.items() if k in names})
    return Args(built, set(values))


def format_help(command: str, summary: str, groups: dict[str, type]) -> str:
    """`lmforge <command> --help` text, one line per flag, grouped."""
    lines = [f"usage: lmforge {command} [config.yaml] [--flag value ...]", "", summary, ""]
    for gname, cls in groups.items():
        lines.append(f"{gname} flags:")
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            kind, is_list = _unwrap(hints[f.name])
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            shape = f"{kind.__name__.upper()}{' ...' if is_list else ''}"
            aliases = "".join(f", --{a}" for a in f.metadata.get("aliases", ()))
            limits = describe_range(f.metadata)
            limits = f"; {limits}" if limits else ""
            lines.append(f"  --{f.name}{aliases} {shape}  {f.metadata.get('help', '')} [default: {default}{limits}]")
        lines.append("")
    return "\n".join(lines)


def describe_range(meta: Mapping[str, Any]) -> str:
    """'>= 1', 'in [0, 1)', '' for no bounds; with the exempt sentinel: '>= 1 or -1'."""
    lo = ("[", meta["ge"]) if "ge" in meta else ("(", meta["gt"]) if "gt" in meta else None
    hi = ("]", meta["le"]) if "le" in meta else (")", meta["lt"]) if "lt" in meta else None
    if lo and hi:
        text = f"in {lo[0]}{lo[1]}, {hi[1]}{hi[0]}"
    elif lo:
        text = f"{'>=' if lo[0] == '[' else '>'} {lo[1]}"
    elif hi:
        text = f"{'<=' if hi[0] == ']' else '<'} {hi[1]}"
    else:
        return ""
    return f"{text} or {meta['off']}" if "off" in meta else text
