"""`lmforge <command> [config.yaml] [--flag value ...]`: one dict of commands, each imported only when run.

Nothing here may import torch or transformers: `lmforge --help` must answer in well under a second.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lmforge.args import CheckArgs, DataArgs, ModelArgs, TemplateArgs, TrainArgs, TunerArgs, format_help, parse_flags
from lmforge.args.backend_args import BackendArgs
from lmforge.args.eval_args import EvalArgs, TrainEvalArgs
from lmforge.args.groups import (
    AdapterArgs,
    AppArgs,
    DeployArgs,
    ExportArgs,
    GenerationArgs,
    InferArgs,
    PluginArgs,
    RLHFArgs,
    TaskArgs,
    WebUIArgs,
)
from lmforge.args.parser import Args
from lmforge.args.validate import check_flags, check_rules
from lmforge.errors import UserError
from lmforge.names import check_names


@dataclass(frozen=True)
class Command:
    summary: str
    groups: dict[str, type]
    target: str  # "module:function"; the function takes the parsed Args and returns an exit code
    raw: bool = False  # the function takes (argv, each command's groups): a command whose argument is a file

    def __post_init__(self) -> None:
        # every command takes plug-ins: one may register the template, dataset or model family it is asked for
        if not self.raw:
            object.__setattr__(self, "groups", {**self.groups, "plugins": PluginArgs})


_TRAIN_GROUPS = {
    "model": ModelArgs,
    "template": TemplateArgs,
    "data": DataArgs,
    "tuner": TunerArgs,
    "train": TrainArgs,
    "task": TaskArgs,
}

COMMANDS: dict[str, Command] = {
    "check": Command(
        "Pre-flight: load the tokenizer, encode every dataset row, report lengths, drops and one sample with its "
        "trained spans marked. Exit 1 when a row is unusable.",
        {"check": CheckArgs, **_TRAIN_GROUPS},
        "lmforge.check:run",
    ),
    "sft": Command(
        "Supervised fine-tuning (LoRA or full).",
        {**_TRAIN_GROUPS, "eval": TrainEvalArgs},
        "lmforge.train.job:run_sft",
    ),
    "rlhf": Command(
        "Alignment: dpo, kto, cpo, simpo, orpo, rm, ppo, grpo, gkd (trl trainers; PPO built in).",
        {**_TRAIN_GROUPS, "rlhf": RLHFArgs, "backend": BackendArgs},
        "lmforge.train.job:run_rlhf",
    ),
    "infer": Command(
        "Chat with a model (interactive, also from a pipe) or answer a dataset in batch (--val_dataset).",
        {
            "model": ModelArgs,
            "template": TemplateArgs,
            "data": DataArgs,
            "tuner": AdapterArgs,
            "generation": GenerationArgs,
            "infer": InferArgs,
            "backend": BackendArgs,
        },
        "lmforge.infer.run:run_infer",
    ),
    "export": Command(
        "Merge LoRA adapters into the base model (--merge_lora true), quantize (--quant_method bnb|gptq|awq|fp8) "
        "or write a GGUF (--to_gguf true) with a quality report; optionally push to the hub.",
        {"model": ModelArgs, "template": TemplateArgs, "data": DataArgs, "tuner": AdapterArgs, "export": ExportArgs},
        "lmforge.export.run:run_export",
    ),
    "deploy": Command(
        "Serve an OpenAI-compatible API (chat, completions, models) with dynamic batching; multi-LoRA by name.",
        {
            "model": ModelArgs,
            "template": TemplateArgs,
            "tuner": AdapterArgs,
            "generation": GenerationArgs,
            "deploy": DeployArgs,
            "backend": BackendArgs,
        },
        "lmforge.serve.run:run_deploy",
    ),
    "app": Command(
        "A chat page in the browser (Gradio): system prompt, streaming answers, regenerate, clear.",
        {
            "model": ModelArgs,
            "template": TemplateArgs,
            "tuner": AdapterArgs,
            "generation": GenerationArgs,
            "app": AppArgs,
            "backend": BackendArgs,
        },
        "lmforge.ui.chat:run_app",
    ),
    "eval": Command(
        "Evaluate a model, a LoRA checkpoint (side by side with its base) or a server, offline: multiple choice, "
        "QA, identity; EvalScope's output layout.",
        {
            "model": ModelArgs,
            "template": TemplateArgs,
            "tuner": AdapterArgs,
            "generation": GenerationArgs,
            "eval": EvalArgs,
            "backend": BackendArgs,
        },
        "lmforge.eval.run:run_eval",
    ),
    "pt": Command(
        "Continued pre-training on text rows (loss on every token).", _TRAIN_GROUPS, "lmforge.train.job:run_pt"
    ),
    "migrate": Command(
        "Print a LLaMA-Factory training YAML as the equivalent lmforge command line and lmforge YAML.",
        {},
        "lmforge.migrate:run_migrate",
        raw=True,
    ),
    "env": Command(
        "Versions, devices, bf16 support and which optional features (extras) are installed: paste it in bug reports.",
        {},
        "lmforge.env:run_env",
    ),
    "web-ui": Command(
        "Train, align, chat, export and deploy from the browser: forms from these flags, jobs that outlive the page.",
        {"webui": WebUIArgs},
        "lmforge.ui.webui:run_webui",
    ),
}


def _usage() -> str:
    width = max(len(n) for n in COMMANDS)
    rows = "\n".join(f"  {name.ljust(width)}  {cmd.summary.split('.')[0]}" for name, cmd in COMMANDS.items())
    return (
        "usage: lmforge <command> [config.yaml] [--flag value ...]\n\n"
        "Fine-tune, align, run, export and serve LLMs.\n"
        "Flags follow ms-swift: `swift sft ...` works as `lmforge sft ...`.\n\n"
        f"commands:\n{rows}\n\n`lmforge <command> --help` lists a command's flags."
    )


def _target(cmd: Command) -> Callable[..., Any]:
    module_name, func_name = cmd.target.split(":")
    return getattr(importlib.import_module(module_name), func_name)


def checked_args(name: str, argv: list[str]) -> Args:
    """Parse a command's flags and run every pre-flight check (the web UI's forms run this same function)."""
    args = parse_flags(argv, COMMANDS[name].groups)
    check_flags(args)  # types, ranges, JSON, paths: before any user code, model, tokenizer or dataset
    from lmforge.plugins import load_plugins

    load_plugins(args.plugins.external_plugins)  # before anything is resolved
    check_names(args)  # template, dataset, reward names: a plug-in may have registered them
    check_rules(name, args)  # relations between flags
    from lmforge.features import check_features

    check_features(name, args)  # optional packages (extras) a flag or command needs
    return args


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from lmforge import __version__

        print(f"lmforge {__version__}")
        return 0
    name = argv[0].replace("_", "-")
    cmd = COMMANDS.get(name)
    if cmd is None:
        import difflib

        close = difflib.get_close_matches(name, list(COMMANDS), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        print(f"lmforge: error: unknown command '{argv[0]}'{hint}; commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    rest = argv[1:]
    if ("-h" in rest or "--help" in rest) and not cmd.raw:
        print(format_help(name, cmd.summary, cmd.groups))
        return 0
    # library deprecation notices (transformers 5 renames) are noise to a user running a command, and so is
    # bitsandbytes' notice that its optional CPU kernel package is absent (it falls back to plain PyTorch)
    warnings.filterwarnings("ignore", category=FutureWarning)
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    try:
        groups = {n: c.groups for n, c in COMMANDS.items()}
        if cmd.raw:
            return int(_target(cmd)(rest, groups) or 0)
        from lmforge.args.llamafactory import expand_config

        # a LLaMA-Factory YAML: its keys as lmforge flags, and its `stage` may switch the command (dpo -> rlhf)
        name, rest = expand_config(name, rest, groups)
        cmd = COMMANDS[name]
        args = checked_args(name, rest)
        from lmforge.train.launch import wants_torchrun

        deepspeed = getattr(getattr(args, "train", None), "deepspeed", None)
        if wants_torchrun(name, deepspeed=bool(deepspeed)):
            from lmforge.train.distributed import deepspeed_path
            from lmforge.train.launch import relaunch

            deepspeed_path(deepspeed)  # a bad --deepspeed fails here in one line, not once per rank under torchrun

            return relaunch(name, rest, args.train.output_dir, args.train.add_version)
        return int(_target(cmd)(args) or 0)
    except UserError as e:
        print(f"lmforge {name}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"lmforge {name}: interrupted", file=sys.stderr)
        return 130
    finally:
        if os.environ.get("LMFORGE_DEBUG_IMPORTS"):
            print("\n".join(sorted(sys.modules)), file=sys.stderr)


def entry() -> None:
    """The `lmforge` console script: main(), then a quick exit once torch was loaded.

    Why: after a training run the interpreter's own teardown (freeing torch's and its libraries' native state
    module by module) measured 1.5 s here, 5% of a short run's wall time. atexit handlers (tensorboard, wandb)
    still run; the quick exit is skipped while any non-daemon thread is alive, which Python would wait for."""
    import threading

    code = main()
    if "torch" in sys.modules and all(t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        from lmforge.thirdparty import run_exit_handlers

        run_exit_handlers()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise SystemExit(code)


if __name__ == "__main__":
    entry()
