"""The one training driver: every method honours the shared loading and reporting flags, refuses the flags it does
not use, and PPO resumes exactly after a SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lmforge.cli import main
from tests.conftest import FIXTURES, run_cli
from tests.train.helpers import SHORT_RUN, logs, only_run

PPO_PLUGIN = (
    "from lmforge.plugins import register_reward\n\n"
    "@register_reward('brevity')\n"
    "def brevity(completions, **kw):\n"
    "    return [1.0 - min(len(c), 40) / 40 for c in completions]\n"
)


def _ppo_args(model: Path, plugin: Path, out: Path) -> list[str]:
    return [
        "rlhf",
        "--rlhf_type",
        "ppo",
        "--model",
        str(model),
        "--dataset",
        str(FIXTURES / "grpo.jsonl"),
        "--reward_funcs",
        "brevity",
        "--external_plugins",
        str(plugin),
        "--max_steps",
        "4",
        "--save_steps",
        "2",
        "--logging_steps",
        "1",
        "--per_device_train_batch_size",
        "2",
        "--max_completion_length",
        "6",
        "--temperature",
        "1.0",
        "--learning_rate",
        "1e-2",
        "--output_dir",
        str(out),
    ]


def _by_step(run: Path) -> dict[int, dict]:
    return {r["global_step"]: r for r in logs(run)}


def test_ppo_sigkill_then_resume_matches_unbroken_run(tmp_path, tiny_llama):
    plugin = tmp_path / "brevity.py"
    plugin.write_text(PPO_PLUGIN)
    r = run_cli(*_ppo_args(tiny_llama, plugin, tmp_path / "whole"))
    assert r.returncode == 0, r.stderr[-3000:]
    whole = _by_step(only_run(tmp_path / "whole"))
    assert sorted(whole) == [1, 2, 3, 4] and any(abs(s["loss"]) > 0 for s in whole.values())

    broken = tmp_path / "broken"
    proc = subprocess.Popen(
        [sys.executable, "-m", "lmforge", *_ppo_args(tiny_llama, plugin, broken)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 300
    while not list(broken.glob("v*/checkpoint-2")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    ckpt = next(broken.glob("v*/checkpoint-2"))
    r = run_cli(*_ppo_args(tiny_llama, plugin, broken), "--resume_from_checkpoint", str(ckpt))
    assert r.returncode == 0, r.stderr[-3000:]
    resumed = _by_step(max(broken.glob("v*"), key=lambda p: p.name))
    assert sorted(resumed) == [3, 4]
    for step in (3, 4):
        for key in ("loss", "reward", "kl", "policy_loss", "value_loss"):
            assert abs(resumed[step][key] - whole[step][key]) <= 1e-6, (step, key, resumed[step], whole[step])


def test_qlora_dpo_trains_a_quantized_model(tmp_path, tiny_llama):
    import bitsandbytes as bnb
    from safetensors.torch import load_file

    from lmforge.args.parser import parse_flags
    from lmforge.cli import COMMANDS
    from lmforge.train.job import prepare
    from lmforge.train.methods import get_method

    argv = ["--rlhf_type", "dpo", "--model", str(tiny_llama), "--dataset", str(FIXTURES / "pref.jsonl")]
    argv += [*SHORT_RUN, "--learning_rate", "1e-2", "--quant_method", "bnb", "--quant_bits", "4"]
    args = parse_flags([*argv, "--output_dir", str(tmp_path / "o")], COMMANDS["rlhf"].groups)
    job = prepare(args, get_method("dpo"))
    trainer = job.method.build(job)
    quantized = [m for m in trainer.model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert quantized, "the DPO policy was not loaded in 4 bits"
    trainer.train()
    weights = load_file(job.run_dir / "checkpoint-2" / "adapter_model.safetensors")
    assert sum(float(v.abs().sum()) for k, v in weights.items() if "lora_B" in k) > 0  # B starts at zero: it trained


def test_rlhf_report_to_tensorboard_writes_events(tmp_path, tiny_llama):
    pytest.importorskip("tensorboard")
    out = tmp_path / "o"
    argv = ["rlhf", "--rlhf_type", "orpo", "--model", str(tiny_llama), "--dataset", str(FIXTURES / "pref.jsonl")]
    assert main([*argv, *SHORT_RUN, "--report_to", "tensorboard", "--output_dir", str(out)]) == 0
    assert list(only_run(out).rglob("events.out.tfevents.*"))


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--rlhf_type", "dpo", "--packing", "true"], "--packing is not supported by rlhf --rlhf_type dpo"),
        (
            ["--rlhf_type", "dpo", "--num_generations", "4"],
            "--num_generations is not supported by rlhf --rlhf_type dpo",
        ),
        (["--rlhf_type", "rm", "--beta", "0.2"], "--beta is not supported by rlhf --rlhf_type rm"),
        (["--rlhf_type", "ppo", "--reward_funcs", "format", "--fsdp", "fsdp2"], "--fsdp is not supported"),
        (["--rlhf_type", "ppo", "--reward_funcs", "format", "--report_to", "wandb"], "--report_to wandb is not"),
    ],
)
def test_a_flag_the_method_does_not_use_is_refused(argv, needle, tmp_path, tiny_llama, capsys):
    data = ["--dataset", str(FIXTURES / "pref.jsonl"), "--model", str(tiny_llama)]
    assert main(["rlhf", *argv, *data, "--output_dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err


def test_gkd_refuses_prompt_only_rows_in_one_line(tmp_path, tiny_llama, capsys):
    argv = ["rlhf", "--rlhf_type", "gkd", "--model", str(tiny_llama), "--teacher_model", str(tiny_llama)]
    argv += ["--dataset", str(FIXTURES / "grpo.jsonl"), "--max_steps", "1", "--output_dir", str(tmp_path / "o")]
    assert main(argv) != 0
    err = [ln for ln in capsys.readouterr().err.splitlines() if "error:" in ln]
    assert len(err) == 1 and "grpo.jsonl:1" in err[0] and "assistant answer" in err[0], err


def test_every_method_is_one_table_entry():
    from lmforge.args.groups import RLHFArgs
    from lmforge.train.methods import METHODS, get_method

    get_method("sft")
    kinds = json.loads(json.dumps(RLHFArgs.__dataclass_fields__["rlhf_type"].metadata["choices"]))
    assert set(kinds) | {"sft", "pt"} == set(METHODS)


def test_grpo_rollouts_go_through_the_engine(tmp_path, tiny_llama):
    from lmforge.args.parser import parse_flags
    from lmforge.cli import COMMANDS
    from lmforge.train.job import prepare
    from lmforge.train.methods import get_method
    from lmforge.train.rlhf import EngineRollout

    argv = ["--rlhf_type", "grpo", "--model", str(tiny_llama), "--dataset", str(FIXTURES / "grpo.jsonl")]
    argv += [*SHORT_RUN, "--num_generations", "2", "--max_completion_length", "4", "--reward_funcs", "format"]
    args = parse_flags([*argv, "--max_steps", "1", "--output_dir", str(tmp_path / "o")], COMMANDS["rlhf"].groups)
    job = prepare(args, get_method("grpo"))
    trainer = job.method.build(job)
    assert isinstance(trainer.rollout_func, EngineRollout)
    trainer.train()
    engine = trainer.rollout_func.engine
    assert engine is not None and engine.model is trainer.accelerator.unwrap_model(trainer.model)
