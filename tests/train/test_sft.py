"""`lmforge sft` / `lmforge pt` driven through the CLI on tiny random models."""

from __future__ import annotations

import json
import re

from safetensors.torch import load_file

from tests.conftest import run_cli
from tests.train.helpers import logs, only_run, write_sft_data

COMMON = [
    "--max_steps",
    "4",
    "--per_device_train_batch_size",
    "2",
    "--gradient_accumulation_steps",
    "1",
    "--logging_steps",
    "1",
    "--learning_rate",
    "1e-3",
]


def test_lora_sft_layout_logging_eval_and_limit(tmp_path, tiny_qwen3):
    data = write_sft_data(tmp_path / "train.jsonl")
    out = tmp_path / "output"
    r = run_cli(
        "sft",
        "--model",
        str(tiny_qwen3),
        "--train_type",
        "lora",
        "--dataset",
        str(data),
        "--split_dataset_ratio",
        "0.2",
        "--save_steps",
        "1",
        "--save_total_limit",
        "2",
        "--eval_steps",
        "2",
        "--output_dir",
        str(out),
        "--system",
        "You are a calculator.",
        *COMMON,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    run = only_run(out)
    assert re.fullmatch(r"v0-\d{8}-\d{6}", run.name)
    assert "[[" in r.stdout and "first encoded sample" in r.stdout  # the marked sample
    ckpts = sorted(p.name for p in run.glob("checkpoint-*"))
    assert ckpts == ["checkpoint-3", "checkpoint-4"]  # save_total_limit 2
    ck = run / "checkpoint-4"
    for f in (
        "adapter_model.safetensors",
        "adapter_config.json",
        "tokenizer_config.json",
        "args.json",
        "trainer_state.json",
        "optimizer.pt",
    ):
        assert (ck / f).is_file(), f
    assert "<think>" in (ck / "chat_template.jinja").read_text()  # the template used in training
    args = json.loads((run / "args.json").read_text())
    assert args["tuner_type"] == "lora" and args["template"] == "qwen3" and args["system"] == "You are a calculator."
    assert args["learning_rate"] == 1e-3 and {"transformers", "peft", "trl", "torch"} <= set(args["versions"])
    assert json.loads((ck / "args.json").read_text())["model_dir"] == str(tiny_qwen3)
    rows = logs(run)
    train_rows = [x for x in rows if "loss" in x]
    assert [x["global_step"] for x in train_rows] == [1, 2, 3, 4]
    for x in train_rows:
        assert isinstance(x["global_step"], int)
        assert {"loss", "learning_rate", "grad_norm", "token_acc", "tokens_per_second", "elapsed_seconds"} <= set(x)
    assert [x["global_step"] for x in rows if "eval_loss" in x] == [2, 4]
    for png in ("train_loss.png", "eval_loss.png", "train_learning_rate.png"):
        assert (run / "images" / png).read_bytes()[:4] == b"\x89PNG"
    assert (
        sum(
            load_file(ck / "adapter_model.safetensors")[k].abs().sum()
            for k in load_file(ck / "adapter_model.safetensors")
            if "lora_B" in k
        )
        > 0
    )  # B starts at 0: it trained


def test_full_sft_and_add_version_false(tmp_path, tiny_llama):
    import torch
    from safetensors.torch import load_file as lf

    data = write_sft_data(tmp_path / "train.jsonl")
    out = tmp_path / "full"
    r = run_cli(
        "sft",
        "--model",
        str(tiny_llama),
        "--train_type",
        "full",
        "--dataset",
        str(data),
        "--save_steps",
        "4",
        "--output_dir",
        str(out),
        "--add_version",
        "false",
        *COMMON,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    ck = out / "checkpoint-4"
    assert (out / "args.json").is_file() and (ck / "model.safetensors").is_file()
    before = lf(tiny_llama / "model.safetensors")
    after = lf(ck / "model.safetensors")
    key = next(k for k in before if "q_proj" in k)
    assert not torch.equal(before[key], after[key].to(before[key].dtype))


def test_pt_with_packing_and_padding_free(tmp_path, tiny_llama):
    data = tmp_path / "text.jsonl"
    data.write_text(
        "".join(json.dumps({"text": f"Story {i}: " + "once upon a time " * (i % 5 + 1)}) + "\n" for i in range(30))
    )
    for flag in ("--packing", "--padding_free"):
        out = tmp_path / flag.strip("-")
        r = run_cli(
            "pt",
            "--model",
            str(tiny_llama),
            "--dataset",
            str(data),
            flag,
            "true",
            "--max_length",
            "128",
            "--output_dir",
            str(out),
            "--save_steps",
            "4",
            *COMMON,
        )
        assert r.returncode == 0, r.stderr[-3000:]
        run = only_run(out)
        args = json.loads((run / "args.json").read_text())
        assert args["loss_scale"] == "all" and args["stage"] == "pt"
        assert all(x["loss"] > 0 for x in logs(run) if "loss" in x)
        if flag == "--packing":
            assert "packed into" in r.stdout


def test_seed_command_runs_as_written(tmp_path, tiny_qwen3):
    """The seed article's `swift sft` command, with only program name, model path and dataset paths changed."""
    zh = write_sft_data(tmp_path / "alpaca-gpt4-data-zh.jsonl")
    en = write_sft_data(tmp_path / "alpaca-gpt4-data-en.jsonl")
    r = run_cli(
        "sft",
        "--model",
        str(tiny_qwen3),
        "--train_type",
        "lora",
        "--dataset",
        f"{zh}#500",
        f"{en}#500",
        "self-cognition#500",
        "--torch_dtype",
        "bfloat16",
        "--num_train_epochs",
        "1",
        "--per_device_train_batch_size",
        "1",
        "--per_device_eval_batch_size",
        "1",
        "--learning_rate",
        "1e-4",
        "--lora_rank",
        "8",
        "--lora_alpha",
        "32",
        "--target_modules",
        "all-linear",
        "--gradient_accumulation_steps",
        "16",
        "--eval_steps",
        "50",
        "--save_steps",
        "50",
        "--save_total_limit",
        "2",
        "--logging_steps",
        "5",
        "--max_length",
        "2048",
        "--output_dir",
        str(tmp_path / "output"),
        "--system",
        "You are a helpful assistant.",
        "--warmup_ratio",
        "0.05",
        "--dataloader_num_workers",
        "4",
        "--model_author",
        "swift",
        "--model_name",
        "swift-robot",
        "--max_steps",
        "2",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    run = only_run(tmp_path / "output")
    assert (run / "checkpoint-2" / "adapter_model.safetensors").is_file()
    args = json.loads((run / "args.json").read_text())
    assert args["resolved_torch_dtype"] == "bfloat16" and args["model_name"] == ["swift-robot"]


def test_training_errors_are_one_line(tmp_path, tiny_llama):
    data = write_sft_data(tmp_path / "train.jsonl")
    r = run_cli("sft", "--model", str(tiny_llama), "--dataset", str(data), "--streaming", "true")
    assert r.returncode != 0 and "--streaming true needs --max_steps" in r.stderr and len(r.stderr.splitlines()) == 1
    r = run_cli("sft", "--model", str(tiny_llama), "--dataset", str(data), "--resume_from_checkpoint", str(tmp_path))
    assert r.returncode != 0 and "not a complete checkpoint" in r.stderr
    r = run_cli(
        "sft",
        "--model",
        str(tiny_llama),
        "--dataset",
        str(data),
        "--target_modules",
        "nothing_like_this",
        "--max_steps",
        "1",
    )
    errors = [ln for ln in r.stderr.splitlines() if "error:" in ln]  # weight-loading progress shares stderr
    assert (
        r.returncode != 0
        and len(errors) == 1
        and "has no module of that name" in errors[0]
        and "Traceback" not in r.stderr
    )


def test_pt_streaming(tmp_path, tiny_llama):
    data = tmp_path / "text.jsonl"
    data.write_text("".join(json.dumps({"text": f"Story {i}: once upon a time"}) + "\n" for i in range(40)))
    r = run_cli(
        "pt",
        "--model",
        str(tiny_llama),
        "--dataset",
        str(data),
        "--streaming",
        "true",
        "--output_dir",
        str(tmp_path / "o"),
        "--save_steps",
        "4",
        *COMMON,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    run = only_run(tmp_path / "o")
    assert [x["global_step"] for x in logs(run) if "loss" in x] == [1, 2, 3, 4]
    assert (run / "checkpoint-4" / "adapter_model.safetensors").is_file()
