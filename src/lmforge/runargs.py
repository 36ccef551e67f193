"""Run args: what a run's args.json carries, how it is written, and how later commands restore from it.

`lmforge sft/pt/rlhf` write args.json into the run dir and every checkpoint; `export` writes one next to a merged
model. `infer`, `app`, `deploy` and `export` then take `--adapters CKPT` alone and restore model, template and
system prompt from it (explicit flags win; `--load_args false` turns it off). Restoring returns a prepared
`ResolvedModel`; nothing writes into the parsed `Args`.

Torch-free: `lmforge --help` may import this module.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmforge.errors import UserError

if TYPE_CHECKING:
    from lmforge.args import ModelArgs, TemplateArgs
    from lmforge.args.parser import Args

# written by lmforge.tuners.adapter into adapter_config.json of a bottleneck/ReFT checkpoint (read as text here:
# that module imports torch)
HOOKED_TUNER_KEY = "lmforge_tuner"


@dataclass(frozen=True)
class RunArgs:
    """The args.json fields later commands read. Every other key is kept in `raw`."""

    stage: str | None = None  # sft, pt, rlhf
    model_dir: str | None = None  # the resolved base model directory
    model_type: str | None = None
    template: str | None = None  # the resolved template name
    system: str | None = None  # the resolved system prompt (text, not a .txt path)
    max_length: int | None = None
    enable_thinking: bool | None = None
    max_pixels: int | None = None  # vision-language models: the image resize bounds training used
    min_pixels: int | None = None
    fps: float | None = None  # video: the frame sampling training used
    max_frames: int | None = None
    agent_template: str | None = None
    tuner_type: str | None = None
    rlhf_type: str | None = None
    run_dir: str | None = None
    resolved_torch_dtype: str | None = None
    val_dataset: list[str] = field(default_factory=list)
    base_model_dir: str | None = None  # a merged model: the base it was merged from
    merged_from: list[str] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunArgs:
        names = {f.name for f in dataclasses.fields(cls)} - {"raw"}
        known = {k: data[k] for k in names if data.get(k) is not None}
        return cls(**known, raw=dict(data))


def read_run_args(path: str | Path) -> RunArgs | None:
    """The args.json of a checkpoint dir (or of its parent, the run dir); None when there is none."""
    p = Path(path)
    for candidate in (p / "args.json", p.parent / "args.json"):
        if candidate.is_file():
            try:
                data = json.loads(candidate.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as e:
                raise UserError(f"{candidate}: not readable JSON ({e})", hint="pass --load_args false to skip it")
            if not isinstance(data, dict):
                raise UserError(f"{candidate}: expected a JSON object", hint="pass --load_args false to skip it")
            return RunArgs.from_dict(data)
    return None


def write_run_args(path: str | Path, data: dict[str, Any]) -> None:
    """Write args.json atomically (temp file + os.replace), with `hub_token` masked. Rank 0 only: the caller's
    business."""
    path = Path(path)
    data = dict(data)
    if data.get("hub_token"):
        data["hub_token"] = "***"  # never write a secret next to the weights
    text = json.dumps(data, ensure_ascii=False, indent=2, default=str)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".args.", suffix=".json.tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# -- --adapters ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Adapters:
    """`--adapters` checked once: `plain` are applied to the model in order (always on); `named` are served
    per request by name (deploy's multi-LoRA)."""

    plain: tuple[str, ...] = ()
    named: dict[str, str] = field(default_factory=dict)
    hooked: frozenset[str] = frozenset()  # bottleneck/ReFT checkpoints (add layers; cannot merge or switch)

    @property
    def paths(self) -> list[str]:
        return [*self.plain, *self.named.values()]


def _check_dir(path: str, flag: str) -> bool:
    """One line on what is wrong with an adapter folder; True for a bottleneck/ReFT checkpoint."""
    p = Path(path)
    if not p.is_dir():
        raise UserError(f"{flag} {path}: no such directory", hint="pass a checkpoint-N folder of a LoRA run")
    cfg = p / "adapter_config.json"
    if not cfg.is_file():
        if (p / "config.json").is_file():
            raise UserError(
                f"{flag} {path} is a full-weight checkpoint, not a LoRA adapter", hint=f"pass it as --model {path}"
            )
        raise UserError(f"{flag} {path}: no adapter_config.json here", hint="pass a checkpoint-N folder of a LoRA run")
    try:
        tuner = json.loads(cfg.read_text(encoding="utf-8")).get(HOOKED_TUNER_KEY)
    except (OSError, json.JSONDecodeError, AttributeError) as e:
        raise UserError(f"{cfg}: not readable JSON ({e})")
    return tuner in ("adapter", "reft")


def check_adapters(values: list[str], *, allow_named: bool = False, flag: str = "--adapters") -> Adapters:
    """Check `--adapters` once per command: LoRA folders, or (deploy) `name=PATH` pairs for multi-LoRA."""
    plain: list[str] = []
    named: dict[str, str] = {}
    for v in values:
        name, sep, path = v.partition("=")
        if allow_named and sep and not Path(v).exists():
            if not name or not path:
                raise UserError(f"{flag} {v}: expected name=PATH")
            if name in named:
                raise UserError(f"{flag}: the name '{name}' is given twice")
            named[name] = path
        else:
            plain.append(v)
    hooked = frozenset(p for p in [*plain, *named.values()] if _check_dir(p, flag))
    if allow_named:
        if plain and named:
            raise UserError(f"mix of named and unnamed {flag}", hint="name every adapter: a=PATH1 b=PATH2")
        if len(plain) > 1:
            raise UserError(f"several unnamed {flag}", hint="name them: --adapters a=PATH1 b=PATH2")
        for name, path in named.items():
            if path in hooked:
                raise UserError(
                    f"{flag} {name}={path}: adapter/reft tuners cannot be switched per request",
                    hint=f"serve it as the model: {flag} {path}",
                )
    return Adapters(tuple(plain), named, hooked)


# -- restore ---------------------------------------------------------------------------------------------------

# RunArgs field -> (flag group, flag name) restored when the flag was not given
_RESTORED = {
    "model_type": ("model", "model_type"),
    "template": ("template", "template"),
    "system": ("template", "system"),
    "max_length": ("template", "max_length"),
    "enable_thinking": ("template", "enable_thinking"),
    "max_pixels": ("template", "max_pixels"),
    "min_pixels": ("template", "min_pixels"),
    "fps": ("template", "fps"),
    "max_frames": ("template", "max_frames"),
    "agent_template": ("template", "agent_template"),
}


@dataclass(frozen=True)
class ResolvedModel:
    """What a command runs: flags > args.json > defaults, resolved once."""

    model_args: ModelArgs  # a copy of the parsed group with --model (and --model_type) filled in
    template_args: TemplateArgs  # a copy with template, system, max_length, enable_thinking filled in
    adapters: Adapters
    tokenizer_dir: str | None = None  # a LoRA checkpoint carries the tokenizer with its training template
    saved: RunArgs | None = None

    @property
    def model(self) -> str | None:
        return self.model_args.model

    def merged(self, path: str | Path) -> ResolvedModel:
        """The same run, served from a merged model directory (adapters folded in)."""
        return dataclasses.replace(
            self,
            model_args=dataclasses.replace(self.model_args, model=str(path)),
            adapters=Adapters(),
            tokenizer_dir=None,
        )


def resolve_model(args: Args, load_args: bool, *, allow_named: bool = False) -> ResolvedModel:
    """Check `--adapters` and restore model/template flags from the first adapter's (or the model dir's) args.json.
    Reads `args`; never writes into it."""
    adapters = check_adapters(list(args.tuner.adapters), allow_named=allow_named)
    model_args, template_args = args.model, args.template
    first = adapters.paths[0] if adapters.paths else None
    source = Path(first) if first else (Path(model_args.model) if model_args.model else None)
    saved = read_run_args(source) if source is not None and source.exists() else None
    if load_args and saved is not None:
        explicit = args.explicit
        updates: dict[str, dict[str, Any]] = {"model": {}, "template": {}}
        if first and saved.model_dir and "model" not in explicit:
            updates["model"]["model"] = saved.model_dir  # a merged model's args.json names no model_dir
        for key, (group, name) in _RESTORED.items():
            value = getattr(saved, key)
            if value is not None and name not in explicit:
                updates[group][name] = value
        model_args = dataclasses.replace(model_args, **updates["model"])
        template_args = dataclasses.replace(template_args, **updates["template"])
    tok_dir = first if first and (Path(first) / "tokenizer_config.json").is_file() else None
    return ResolvedModel(model_args, template_args, adapters, tok_dir, saved)
