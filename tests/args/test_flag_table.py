"""Generated over the whole flag table: for every command and every flag, a wrong-typed value and each out-of-range
value end with exit code 2, one error line naming the flag, no traceback, and no model loaded (in-process through
`lmforge.cli.main`, the CLI entry; a few real console runs at the end). A new flag is covered by construction."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from lmforge import cli
from lmforge.args.parser import FlagSpec, flag_specs, parse_flags
from lmforge.args.validate import check_flags
from lmforge.names import REGISTRY_KINDS, check_names
from tests.conftest import run_cli

# string flags with nothing to check before a model loads: names, hub ids, free text, model-dependent module names
# (checked on the config by tuners/targets.py). A new string flag fails test_free_text_flags_are_known until it
# gets a check in groups.py or is added here.
FREE_TEXT = {
    "model", "model_revision", "gguf_file", "hub_token", "attn_impl", "device_map", "system", "model_name",
    "model_author", "target_modules", "modules_to_save", "trainable_parameters", "stop_words", "hub_model_id",
    "commit_message", "host", "api_key", "served_model_name", "server_name", "studio_title", "ref_model", "loss_type",
    "reward_model", "teacher_model",
    "labels",  # seq_cls class names
    "generative_reranker_positive_token", "generative_reranker_negative_token",  # any one-token word
    "infer_backend_python", "vllm_server_host", "vllm_quantization",  # a path, a host, a backend's method name
}  # fmt: skip


def _specs(groups: dict[str, type]) -> list[FlagSpec]:
    return list({id(s): s for s in flag_specs(groups).values()}.values())


def wrong_value(spec: FlagSpec, tmp: Path) -> str | None:
    """A value of the wrong type or shape for the flag; None when any string is fine (FREE_TEXT)."""
    m = spec.meta
    if spec.kind is bool:
        return "maybe"
    if spec.kind in (int, float):
        return "x1"
    if spec.choices:
        return "__bogus__"
    if "pattern" in m:
        return "!!bogus"
    kind = m.get("kind")
    a_file = tmp / "a_file"
    return {
        "json": "{bad",
        "regex": "(unclosed",
        "file": str(tmp / "missing.py"),
        "path": str(tmp / "missing"),
        "adapter": str(tmp / "missing"),
        "json_file": str(tmp / "missing.json"),
        "dir_out": str(a_file / "sub"),
        "file_out": str(a_file / "sub" / "x.jsonl"),
        "template": "__bogus__",
        "model_type": "__bogus__",
        "reward": "__bogus__",
        "dataset": "missing.jsonl",
        "eval_dataset": "__bogus__",
        **dict.fromkeys(REGISTRY_KINDS, "__bogus__"),
    }.get(kind)


def out_of_range(spec: FlagSpec) -> list[str]:
    """One value past each declared bound (a sentinel `off` value is not one)."""
    m, step = spec.meta, 1 if spec.kind is int else 0.5
    vals = []
    if "ge" in m:
        vals.append(m["ge"] - step)
    if "gt" in m:
        vals.append(m["gt"])
    if "le" in m:
        vals.append(m["le"] + step)
    if "lt" in m:
        vals.append(m["lt"])
    return [str(v) for v in vals if v != m.get("off")]


def cases(command: str, tmp: Path) -> list[tuple[str, str, str]]:
    """(flag, what, value) for one command."""
    out = []
    for spec in _specs(cli.COMMANDS[command].groups):
        wrong = wrong_value(spec, tmp)
        if wrong is not None:
            out.append((spec.name, "wrong", wrong))
        out += [(spec.name, "range", v) for v in out_of_range(spec)]
    return out


def test_free_text_flags_are_known():
    free = set()
    for cmd in cli.COMMANDS.values():
        free |= {s.name for s in _specs(cmd.groups) if wrong_value(s, Path("/t")) is None}
    assert free == FREE_TEXT


@pytest.mark.parametrize("command", [n for n, c in cli.COMMANDS.items() if not c.raw])  # raw: takes a file
def test_every_flag_rejects_bad_values_in_one_line(command, no_command_runs, capsys):
    t0 = time.process_time()  # CPU time: the machine may be busy
    todo = cases(command, no_command_runs)
    assert todo  # `lmforge env` has only --external_plugins; web-ui a few; training commands over a hundred
    failures = []
    for name, what, value in todo:
        rc = cli.main([command, f"--{name}", value])
        out, err = capsys.readouterr()
        lines = [ln for ln in err.splitlines() if ln.strip()]
        ok = rc == 2 and len(lines) == 1 and lines[0].startswith(f"lmforge {command}: error: --{name}")
        if not ok or "Traceback" in err or out:
            failures.append(f"--{name} {value!r} ({what}): rc {rc}, stderr {err!r}")
    assert not failures, "\n".join(failures)
    assert time.process_time() - t0 < 10  # no model, tokenizer or dataset: milliseconds per case


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_defaults_pass_the_flag_checks(command, no_command_runs):
    args = parse_flags([], cli.COMMANDS[command].groups)
    check_flags(args)
    check_names(args)


def test_range_message_is_the_documented_one(no_command_runs, capsys):
    assert cli.main(["sft", "--per_device_train_batch_size", "0"]) == 2
    assert capsys.readouterr().err == "lmforge sft: error: --per_device_train_batch_size 0: must be >= 1\n"
    assert cli.main(["sft", "--lora_dropout", "1"]) == 2
    assert "--lora_dropout 1.0: must be in [0, 1)" in capsys.readouterr().err


def test_values_inside_the_ranges_pass(no_command_runs):
    argv = ["--max_steps", "-1", "--lora_dropout", "0", "--split_dataset_ratio", "0.1", "--max_length", "1"]
    argv += ["--columns", '{"a": "b"}', "--deepspeed", "default-zero2", "--init_weights", "pissa_niter_4"]
    argv += ["--output_dir", str(no_command_runs / "new" / "deeper"), "--dataset", "self-cognition#3", "org/hub-set"]
    check_flags(parse_flags(argv, cli.COMMANDS["sft"].groups))
    check_names(parse_flags(argv, cli.COMMANDS["sft"].groups))
    assert not (no_command_runs / "new").exists()  # validation creates nothing


def test_console_runs_fail_in_one_line_without_torch(tmp_path):
    (tmp_path / "a_file").write_text("x")
    runs = [
        (["sft", "--per_device_train_batch_size", "0"], "--per_device_train_batch_size 0: must be >= 1"),
        (["sft", "--dataset", "self-cognition", "--columns", "{bad"], "--columns {bad: invalid JSON"),
        (["pt", "--output_dir", str(tmp_path / "a_file" / "o"), "--dataset", "x"], "is not a folder"),
        (["infer", "--max_new_tokens", "0"], "--max_new_tokens 0: must be >= 1"),
    ]
    for argv, needle in runs:
        r = run_cli(*argv, env={"LMFORGE_DEBUG_IMPORTS": "1"}, cwd=tmp_path)
        assert r.returncode == 2, r.stderr
        lines = r.stderr.splitlines()
        assert lines[0].startswith(f"lmforge {argv[0]}: error: ") and needle in lines[0], lines[0]
        modules = set(lines[1:])  # LMFORGE_DEBUG_IMPORTS lists sys.modules after the error line
        assert "lmforge.cli" in modules and "torch" not in modules and "transformers" not in modules
        assert "Traceback" not in r.stderr


def test_validation_alone_imports_no_torch():
    code = (
        "import sys; from lmforge.cli import main; rc = main(['rlhf', '--rlhf_type', 'grpo', '--dataset', "
        "'self-cognition', '--reward_funcs', 'nope']); print(rc, 'torch' in sys.modules, 'datasets' in sys.modules)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.split() == ["2", "False", "False"] and "unknown reward function 'nope'" in r.stderr
