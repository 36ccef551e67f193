"""`lmforge rlhf` for every method, through the CLI on tiny random models, files from tests/fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import FIXTURES, run_cli
from tests.train.helpers import SHORT_RUN, logs, only_run, write_sft_data

STEPS = [*SHORT_RUN, "--learning_rate", "1e-2"]
CASES = {
    "dpo": ["--dataset", str(FIXTURES / "pref.jsonl")],
    "kto": ["--dataset", str(FIXTURES / "kto.jsonl")],
    "cpo": ["--dataset", str(FIXTURES / "pref.jsonl")],
    "simpo": ["--dataset", str(FIXTURES / "pref_bare.jsonl")],  # bare {"prompt", "chosen", "rejected"} rows
    "orpo": ["--dataset", str(FIXTURES / "pref.jsonl")],
    "rm": ["--dataset", str(FIXTURES / "pref.jsonl")],
    "grpo": [
        "--dataset",
        str(FIXTURES / "grpo.jsonl"),
        "--num_generations",
        "2",
        "--max_completion_length",
        "8",
        "--reward_funcs",
        "cosine",
        "format",
        "repetition",
        "--log_completions",
        "true",
    ],  # cosine varies
}


def _lora_b_norm(ckpt: Path) -> float:
    w = load_file(ckpt / "adapter_model.safetensors")
    return float(sum(v.abs().sum() for k, v in w.items() if "lora_B" in k))


def _infer_loads(ckpt: Path) -> None:
    r = run_cli("infer", "--adapters", str(ckpt), "--max_new_tokens", "3", "--stream", "false", input_text="hi\n")
    assert r.returncode == 0 and ">>> " in r.stdout, r.stderr[-2000:]


@pytest.mark.parametrize("kind", list(CASES))
def test_method_trains_and_checkpoint_loads(kind, tmp_path, tiny_qwen3):
    out = tmp_path / "out"
    r = run_cli("rlhf", "--rlhf_type", kind, "--model", str(tiny_qwen3), *CASES[kind], *STEPS, "--output_dir", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    run = only_run(out)
    ckpt = run / "checkpoint-2"
    assert _lora_b_norm(ckpt) > 0  # LoRA B starts at zero: the adapter trained
    assert (ckpt / "args.json").is_file() and (run / "images" / "train_loss.png").is_file()
    rows = [x for x in logs(run) if "loss" in x]
    assert [x["global_step"] for x in rows] == [1, 2]
    args = json.loads((run / "args.json").read_text())
    assert args["rlhf_type"] == kind and args["resolved_beta"] == {"simpo": 2.0, "grpo": 0.04}.get(
        kind, 0.1 if kind != "rm" else None
    )
    if kind == "rm":
        from peft import PeftModel
        from transformers import AutoModelForSequenceClassification

        base = AutoModelForSequenceClassification.from_pretrained(tiny_qwen3, num_labels=1)
        score = PeftModel.from_pretrained(base, ckpt).eval()(input_ids=torch.tensor([[1, 2, 3]])).logits
        assert score.shape == (1, 1)
    else:
        _infer_loads(ckpt)
    if kind == "grpo":
        lines = [json.loads(x) for x in (run / "completions.jsonl").read_text().splitlines()]
        assert lines and {"prompt", "completion", "reward", "reward_func"} <= set(lines[0])
        assert any("reward" in x for x in logs(run))


def test_gkd_with_teacher(tmp_path, tiny_qwen3):
    out = tmp_path / "gkd"
    r = run_cli(
        "rlhf",
        "--rlhf_type",
        "gkd",
        "--model",
        str(tiny_qwen3),
        "--teacher_model",
        str(tiny_qwen3),
        "--dataset",
        str(FIXTURES / "pref.jsonl"),
        "--max_completion_length",
        "8",
        "--lmbda",
        "1.0",
        "--beta",
        "0.5",
        "--temperature",
        "1.0",
        *STEPS,
        "--output_dir",
        str(out),
    )
    assert r.returncode == 0, r.stderr[-3000:]
    _infer_loads(only_run(out) / "checkpoint-2")


def test_dpo_from_sft_adapter_with_ref_adapters(tmp_path, tiny_qwen3):
    data = write_sft_data(tmp_path / "sft.jsonl", n=8)
    r = run_cli(
        "sft", "--model", str(tiny_qwen3), "--dataset", str(data), *STEPS, "--output_dir", str(tmp_path / "sft")
    )
    assert r.returncode == 0, r.stderr[-2000:]
    sft = only_run(tmp_path / "sft") / "checkpoint-2"
    r = run_cli(
        "rlhf",
        "--rlhf_type",
        "dpo",
        "--model",
        str(tiny_qwen3),
        "--adapters",
        str(sft),
        "--ref_adapters",
        str(sft),
        "--dataset",
        str(FIXTURES / "pref.jsonl"),
        *STEPS,
        "--output_dir",
        str(tmp_path / "dpo"),
    )
    assert r.returncode == 0, r.stderr[-3000:]
    run = only_run(tmp_path / "dpo")
    first = next(x for x in logs(run) if "loss" in x)
    # the reference is the SFT adapter itself: at step 1 policy == reference, so the DPO loss is exactly log(2)
    assert first["loss"] == pytest.approx(0.6931, abs=2e-3)
    before, after = (
        load_file(sft / "adapter_model.safetensors"),
        load_file(run / "checkpoint-2" / "adapter_model.safetensors"),
    )
    assert any(not torch.equal(before[k], after[k]) for k in before)  # it continued from the SFT weights


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["--rlhf_type", "dpo", "--dataset", str(FIXTURES / "kto.jsonl")], "rejected_response: missing"),
        (["--rlhf_type", "kto", "--dataset", "{bad_kto}"], "label: expected true or false, got 'yes'"),
        (["--rlhf_type", "grpo", "--dataset", str(FIXTURES / "grpo.jsonl")], "GRPO needs --reward_funcs"),
        (
            ["--rlhf_type", "grpo", "--dataset", str(FIXTURES / "grpo.jsonl"), "--reward_funcs", "nope"],
            "unknown reward function 'nope'",
        ),
        (["--rlhf_type", "gkd", "--dataset", str(FIXTURES / "pref.jsonl")], "--rlhf_type gkd needs --teacher_model"),
        (["--rlhf_type", "ppo", "--dataset", str(FIXTURES / "grpo.jsonl")], "PPO needs --reward_model"),
        (
            [
                "--rlhf_type",
                "grpo",
                "--dataset",
                str(FIXTURES / "grpo.jsonl"),
                "--reward_funcs",
                "format",
                "--use_vllm",
                "true",
            ],
            "--use_vllm needs vLLM: pip install 'lmforge[vllm]'",
        ),
    ],
)
def test_bad_input_is_one_line(argv, needle, tmp_path, tiny_qwen3):
    bad = tmp_path / "bad_kto.jsonl"
    bad.write_text(
        json.dumps(
            {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "label": "yes"}
        )
        + "\n"
    )
    argv = [a.replace("{bad_kto}", str(bad)) for a in argv]
    r = run_cli("rlhf", "--model", str(tiny_qwen3), *argv, "--max_steps", "1", "--output_dir", str(tmp_path / "o"))
    errors = [ln for ln in r.stderr.splitlines() if "error:" in ln]
    assert r.returncode != 0 and len(errors) == 1 and needle in errors[0], r.stderr[-2000:]
    assert "Traceback" not in r.stderr


DIGIT_FIRST = (
    "from lmforge.train.rewards import register_reward\n\n"
    "@register_reward('digit_first')\n"
    "def digit_first(completions, **kw):\n"
    "    return [1.0 if c.lstrip()[:1].isdigit() else 0.0 for c in completions]\n"
)


@pytest.mark.slow
def test_ppo_raises_reward_on_a_toy_task(tmp_path):
    """PPO on the embedded SmolLM2 with a plug-in reward: answers to "What is 2 plus 2?" that start with a digit
    score 1. About a third do at first; the policy learns it within a few steps (a brevity reward on 16-token
    answers, the earlier task, rose by less than a policy that does not learn drifts, at 4x the cost). Seeded, so a
    run is reproducible: with --learning_rate 1e-9 this seed's rewards stay flat and the check below fails."""
    plugin = tmp_path / "digit_first.py"
    plugin.write_text(DIGIT_FIRST)
    out = tmp_path / "ppo"
    r = run_cli(
        "rlhf",
        "--rlhf_type",
        "ppo",
        "--dataset",
        str(FIXTURES / "grpo.jsonl"),
        "--system",
        "",  # no default system prompt: half the tokens per forward
        "--reward_funcs",
        "digit_first",
        "--external_plugins",
        str(plugin),
        "--seed",
        "42",
        "--max_steps",
        "5",
        "--per_device_train_batch_size",
        "8",
        "--max_completion_length",
        "4",  # the first tokens decide the reward
        "--num_ppo_epochs",
        "2",
        "--learning_rate",
        "3e-3",
        "--temperature",
        "1.0",
        "--save_steps",
        "5",
        "--logging_steps",
        "1",
        "--log_completions",
        "true",
        "--output_dir",
        str(out),
        # one torch thread: with both cores busy (xdist, other jobs) two threads wait on each other; measured under
        # load 6, the same run took 380 s on one thread and over 720 s on two
        env={"OMP_NUM_THREADS": "1"},
    )
    assert r.returncode == 0, r.stderr[-3000:]
    run = only_run(out)
    rewards = [x["reward"] for x in logs(run)]
    assert len(rewards) == 5
    assert sum(rewards[-2:]) / 2 >= sum(rewards[:2]) / 2 + 0.3, rewards
    ck = run / "checkpoint-5"
    assert (ck / "value_head.safetensors").is_file() and (ck / "adapter_model.safetensors").is_file()
    scored = [json.loads(x) for x in (run / "completions.jsonl").read_text().splitlines()]
    assert len(scored) == 5 * 8  # every rollout, scored by the plug-in
    assert all(s["reward"] == float(s["completion"].lstrip()[:1].isdigit()) for s in scored)
