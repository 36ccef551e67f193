"""The web UI's forms, generated from the same flag table the CLI parses (`COMMANDS[...].groups`), so the page and
`lmforge <cmd> --help` cannot disagree: label = `--flag`, help, choices and default from `groups.flag`.

A form's widget values become the exact argv of `lmforge <cmd>` (only flags that differ from their default), and
that argv goes through the CLI's own pre-flight (`cli.checked_args`); its one-line error is shown beside the flag it
names. Torch- and gradio-free, so it is unit-tested without either.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmforge.args.parser import FlagSpec, flag_specs
from lmforge.errors import UserError
from lmforge.ui.jobs import TRAINING

# (tab title, commands) in page order; a command missing from COMMANDS (eval, before it lands) has no tab at all
TABS = (
    ("Train", ("sft", "pt")),
    ("RLHF", ("rlhf",)),
    ("Infer", ("infer",)),
    ("Export", ("export",)),
    ("Deploy", ("deploy",)),
    ("Eval", ("eval",)),
)
# the flags shown open; every other flag folds away under its group's "advanced" accordion
_TRAIN_BASIC = (
    "model",
    "dataset",
    "val_dataset",
    "tuner_type",
    "lora_rank",
    "max_steps",
    "num_train_epochs",
    "learning_rate",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "max_length",
    "logging_steps",
    "save_steps",
    "output_dir",
)
BASIC: dict[str, tuple[str, ...]] = {
    "sft": _TRAIN_BASIC,
    "pt": _TRAIN_BASIC,
    "rlhf": ("rlhf_type", "beta", *_TRAIN_BASIC),
    "infer": ("model", "adapters", "val_dataset", "max_new_tokens", "temperature", "result_path", "metric"),
    "export": ("model", "adapters", "merge_lora", "output_dir", "quant_method", "quant_bits", "to_gguf", "gguf_type"),
    "deploy": ("model", "adapters", "host", "port", "served_model_name", "api_key"),
    "eval": ("model", "adapters", "eval_dataset", "eval_limit", "eval_output_dir", "compare_base"),
}
UNSET = ""  # a dropdown's "not given" entry


def page_defaults(commands: tuple[str, ...], output_dir: str) -> dict[str, str]:
    """What a tab's fields start at on a web UI serving `output_dir`: training runs and evaluations write under it;
    export keeps its own default (`<ckpt>-merged`: the runs folder itself exists, and export refuses to overwrite)."""
    if any(c in TRAINING for c in commands):
        return {"output_dir": output_dir}
    if "eval" in commands:
        return {"eval_output_dir": str(Path(output_dir) / "eval_output")}
    return {}


def commands_of(tab: tuple[str, tuple[str, ...]]) -> tuple[str, ...]:
    from lmforge.cli import COMMANDS

    return tuple(c for c in tab[1] if c in COMMANDS)


def tabs() -> list[tuple[str, tuple[str, ...]]]:
    """The tabs whose commands exist now (checked at runtime: a plug-in or a later issue may add `eval`)."""
    return [(title, cmds) for title, cmds in ((t, commands_of((t, c))) for t, c in TABS) if cmds]


@dataclass(frozen=True)
class Field:
    """One form field for one flag."""

    spec: FlagSpec
    basic: bool

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def label(self) -> str:
        return f"--{self.spec.name}"

    @property
    def widget(self) -> str:
        """checkbox (a bool with a default), tristate (a bool left to the command), dropdown, multiselect, text."""
        s = self.spec
        if s.kind is bool and not s.is_list:
            return "tristate" if s.default is None else "checkbox"
        if s.choices:
            return "multiselect" if s.is_list else "dropdown"
        return "text"

    @property
    def choices(self) -> list[str]:
        if self.widget == "tristate":
            return [UNSET, "true", "false"]
        values = [str(c) for c in self.spec.choices or ()]
        return values if self.spec.default is not None or self.spec.is_list else [UNSET, *values]

    @property
    def info(self) -> str:
        shape = " (space-separated; quote a value with spaces)" if self.spec.is_list and self.widget == "text" else ""
        return f"{self.spec.help}{shape} [default: {self.spec.default}]"

    def initial(self) -> Any:
        """The widget's value for the flag's default."""
        d = self.spec.default
        if self.widget == "checkbox":
            return bool(d)
        if self.widget == "multiselect":
            return [str(v) for v in d]
        if d is None:
            return UNSET
        if self.spec.is_list:
            return shlex.join(str(v) for v in d)
        return str(d)

    def tokens(self, value: Any) -> list[str]:
        """`--flag value ...` for a widget value, or [] when it is the flag's default (left out of the command)."""
        s = self.spec
        if self.widget == "checkbox":
            return [] if bool(value) == bool(s.default) else [self.label, str(bool(value)).lower()]
        if self.widget == "multiselect":
            items = [str(v) for v in value or []]
        elif s.is_list:
            try:
                items = shlex.split(str(value or ""))
            except ValueError as e:
                raise UserError(f'{self.label}: {e} (quote a value with spaces as "a b")')
        else:
            raw = str(value if value is not None else "").strip()
            if raw == UNSET or _same(s, raw):
                return []
            return [self.label, raw]
        if not items or items == [str(v) for v in s.default or []]:
            return []
        return [self.label, *items]


def _same(spec: FlagSpec, raw: str) -> bool:
    """Whether a typed value equals the default (`3` is `3.0`); a value that does not convert is never the default."""
    if spec.default is None:
        return False
    if spec.kind in (int, float):
        try:
            return spec.kind(raw) == spec.default
        except ValueError:
            return False
    return raw == str(spec.default)


def fields(command: str) -> list[Field]:
    """Every flag of a command, once (aliases share a field), in the order of `--help`."""
    from lmforge.cli import COMMANDS

    specs = list({id(s): s for s in flag_specs(COMMANDS[command].groups).values()}.values())
    basic = BASIC.get(command, ())
    return [Field(s, s.name in basic) for s in specs]


def tab_fields(commands: tuple[str, ...]) -> list[Field]:
    """The fields of a tab: the union over its commands (sft and pt share every flag)."""
    seen: dict[str, Field] = {}
    for cmd in commands:
        for f in fields(cmd):
            seen.setdefault(f.name, f)
    return list(seen.values())


def to_argv(command: str, form: list[Field], values: list[Any]) -> list[str]:
    """The flags of `lmforge <command>` for these widget values (only the command's own flags)."""
    own = {f.name for f in fields(command)}
    argv: list[str] = []
    for f, v in zip(form, values):
        if f.name in own:
            argv += f.tokens(v)
    return argv


def command_line(command: str, argv: list[str]) -> str:
    """The copyable command, quoted for a POSIX shell."""
    return shlex.join(["lmforge", command, *argv])


def to_yaml(command: str, argv: list[str]) -> str:
    """The same flags as a config file (`lmforge <command> config.yaml` takes it), typed as the parser reads them."""
    import yaml

    from lmforge.args.parser import parse_flags
    from lmforge.cli import COMMANDS

    try:
        args = parse_flags(argv, COMMANDS[command].groups)
    except UserError:
        return "# fix the flag marked in the form first\n"
    flat = args.to_dict()
    data = {name: flat[name] for name in _flag_order(argv) if name in flat}
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True) if data else "{}\n"


def _flag_order(argv: list[str]) -> list[str]:
    return [t[2:] for t in argv if t.startswith("--")]


@dataclass(frozen=True)
class Problem:
    """What the CLI would refuse: its one-line message and the form field it names (None: not one flag's)."""

    message: str
    flag: str | None


def check(command: str, form: list[Field], values: list[Any]) -> tuple[list[str], Any, Problem | None]:
    """(argv, parsed Args or None, problem or None), through the CLI's own parser and every pre-flight check."""
    from lmforge.cli import checked_args

    try:
        argv = to_argv(command, form, values)
        return argv, checked_args(command, argv), None
    except UserError as e:
        names = {f.name for f in form}
        named = [m for m in re.findall(r"--(\w+)", str(e)) if m in names]
        alias = {a: f.name for f in form for a in f.spec.meta.get("aliases", ())}
        named += [alias[m] for m in re.findall(r"--(\w+)", str(e)) if m in alias]
        argv = _safe_argv(command, form, values)
        return argv, None, Problem(f"lmforge {command}: error: {e}", named[0] if named else None)


def _safe_argv(command: str, form: list[Field], values: list[Any]) -> list[str]:
    """The argv for the preview even when one list field cannot be split (that field is left out)."""
    own = {f.name for f in fields(command)}
    argv: list[str] = []
    for f, v in zip(form, values):
        if f.name in own:
            try:
                argv += f.tokens(v)
            except UserError:
                continue
    return argv


def output_key(command: str, args: Any) -> str | None:
    """The folder a job of this command writes into (two jobs on one folder are refused); None when none is set."""
    for group in args.groups.values():
        value = getattr(group, "output_dir", None)
        if value:
            return str(Path(value).expanduser().resolve())
    return None
