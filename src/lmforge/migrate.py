"""`lmforge migrate lf.yaml`: a LLaMA-Factory training YAML as the lmforge command line and YAML that run the same."""

from __future__ import annotations

import shlex
from typing import Any

from lmforge.errors import UserError


def command_line(command: str, flags: dict[str, Any]) -> str:
    """`lmforge <command> --flag value ...`, quoted for a POSIX shell (the parser reads it back as the same flags)."""
    from lmforge.args.parser import dict_tokens

    return shlex.join(["lmforge", command, *dict_tokens(flags)])


def run_migrate(argv: list[str], groups: dict[str, dict[str, type]]) -> int:
    """Print the command line, then the YAML; `groups` is each command's flag groups (from the CLI)."""
    if "-h" in argv or "--help" in argv:
        print("usage: lmforge migrate config.yaml\n\nPrint a LLaMA-Factory training YAML as lmforge flags (--help).")
        return 0
    if len(argv) != 1:
        raise UserError("migrate takes one LLaMA-Factory config file", hint="lmforge migrate llama3_lora_sft.yaml")
    import yaml

    from lmforge.args.llamafactory import is_llamafactory, resolve
    from lmforge.args.parser import read_config

    data = read_config(argv[0])
    if not is_llamafactory(data):
        raise UserError(f"{argv[0]}: not a LLaMA-Factory config (no model_name_or_path, stage or finetuning_type)")
    command, flags, t = resolve("sft", argv[0], data, groups)
    unused = f"; keys with no effect here: {', '.join(t.no_effect)}" if t.no_effect else ""
    print(f"# lmforge equivalent of {argv[0]} (LLaMA-Factory){unused}")
    print(command_line(command, flags))
    print(f"\n# the same as an lmforge config file: lmforge {command} this.yaml")
    print(yaml.safe_dump(flags, sort_keys=False, allow_unicode=True).rstrip())
    return 0
