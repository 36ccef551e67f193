"""The CLI as a user runs it: help without torch, flag parsing, one-line errors."""

from __future__ import annotations

import json
import resource
import subprocess
import sys

import pytest

from lmforge.args import DataArgs, ModelArgs, TrainArgs, TunerArgs, parse_flags
from lmforge.args.groups import PluginArgs
from lmforge.errors import UserError
from tests.conftest import run_cli

GROUPS = {"model": ModelArgs, "data": DataArgs, "tuner": TunerArgs, "train": TrainArgs, "plugins": PluginArgs}


def test_help_is_fast_and_imports_no_torch():
    # CPU time, not wall time: the suite runs on busy machines (and beside itself under xdist); importing torch alone
    # costs well over a second of CPU, so these bounds still catch a heavy import on the --help path.
    code = (
        "import sys, time; t=time.process_time(); from lmforge.cli import main; main(['sft', '--help']);"
        "main(['--help']); print(time.process_time()-t); print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[-1] == "False False"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-m", "lmforge", "--help"], capture_output=True, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert cpu < 1.0  # interpreter start included; the in-process cost is printed above
    assert float(out[-2]) < 0.3


def test_every_command_has_help():
    from lmforge.cli import COMMANDS

    for name in COMMANDS:
        r = run_cli(name, "--help")
        assert r.returncode == 0 and "--" in r.stdout, name


def test_flags_aliases_kebab_lists_bools():
    a = parse_flags(
        [
            "--train_type",
            "full",
            "--lora-rank",
            "4",
            "--dataset",
            "a.jsonl",
            "b.jsonl#5",
            "--use_hf",
            "true",
            "--max_steps",
            "-1",
            "--add_version",
            "--custom_register_path",
            "p.py",
        ],
        GROUPS,
    )
    assert a.tuner.tuner_type == "full" and a.tuner.lora_rank == 4
    assert a.data.dataset == ["a.jsonl", "b.jsonl#5"] and a.model.use_hf is True
    assert a.train.max_steps == -1 and a.train.add_version is True and a.plugins.external_plugins == ["p.py"]
    assert {"tuner_type", "lora_rank", "dataset"} <= a.explicit


def test_config_file_then_cli_override(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("lora_rank: 16\ndataset: [x.jsonl, y.jsonl]\nuse_hf: true\n")
    a = parse_flags([str(cfg), "--lora_rank", "2"], GROUPS)
    assert a.tuner.lora_rank == 2 and a.data.dataset == ["x.jsonl", "y.jsonl"] and a.model.use_hf
    j = tmp_path / "c.json"
    j.write_text(json.dumps({"learning_rate": 0.5, "columns": {"a": "b"}}))
    b = parse_flags([str(j)], GROUPS)
    assert b.train.learning_rate == 0.5 and json.loads(b.data.columns) == {"a": "b"}


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["--lora_rnk", "3"], "unknown flag --lora_rnk (hint: did you mean --lora_rank?)"),
        (["--lora_rank", "x"], "--lora_rank: expected an integer, got 'x'"),
        (["--use_hf", "maybe"], "--use_hf: expected true or false"),
        (["--lora_bias", "magic"], "--lora_bias: 'magic' is not one of"),
        (["stray"], "unexpected argument 'stray'"),
        (["--output_dir"], "--output_dir needs a value"),
    ],
)
def test_bad_flags_are_one_line_errors(argv, needle):
    with pytest.raises(UserError) as e:
        parse_flags(argv, GROUPS)
    assert needle in str(e.value) and "\n" not in str(e.value)


def _one_line_error(r, needle):
    assert r.returncode != 0
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert needle in lines[0], lines[0]


def test_cli_errors_exit_nonzero_with_one_line(tmp_path):
    _one_line_error(run_cli("sft", "--lora_rnk", "3"), "did you mean --lora_rank")
    _one_line_error(run_cli("chek"), "unknown command 'chek'")
    _one_line_error(
        run_cli("check", "--model", str(tmp_path / "nope"), "--dataset", "self-cognition#2"), "no such file"
    )
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF\x03\x00\x00\x00garbage" * 10)
    _one_line_error(
        run_cli(
            "check", "--model", str(bad), "--dataset", "self-cognition#2", env={"LMFORGE_HOME": str(tmp_path / "home")}
        ),
        "not a readable GGUF model",
    )


def test_unknown_template_and_offline_hub(tiny_llama, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"query": "q", "response": "r"}\n')
    _one_line_error(
        run_cli("check", "--model", str(tiny_llama), "--template", "nope", "--dataset", str(data)),
        "unknown template 'nope'",
    )
    r = run_cli(
        "check",
        "--model",
        "Qwen/Qwen3-8B",
        "--use_hf",
        "true",
        "--dataset",
        str(data),
        env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")},
    )
    _one_line_error(r, "could not fetch model 'Qwen/Qwen3-8B' from Hugging Face")
    assert "--model /path/to/model" in r.stderr
