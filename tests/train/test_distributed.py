"""Distributed training through torchrun (gloo on CPU): NPROC_PER_NODE=2, and two "nodes" on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tests.serve.conftest import free_port
from tests.train.helpers import SHORT_RUN, logs, only_run, write_sft_data

ARGS = SHORT_RUN


def _run(env: dict, *argv: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "lmforge", *argv],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_nproc_per_node_2(tmp_path, tiny_llama):
    data = write_sft_data(tmp_path / "d.jsonl", n=16)
    p = _run(
        {"NPROC_PER_NODE": "2", "MASTER_PORT": str(free_port())},
        "sft",
        "--model",
        str(tiny_llama),
        "--dataset",
        str(data),
        *ARGS,
        "--output_dir",
        str(tmp_path / "out"),
    )
    out, _ = p.communicate(timeout=600)
    assert p.returncode == 0, out[-3000:]
    assert "torch.distributed.run --nproc_per_node=2" in out
    assert "rank 0/2 trained 2 steps" in out and "rank 1/2 trained 2 steps" in out
    run = only_run(tmp_path / "out")  # one run folder, written by rank 0 alone
    assert json.loads((run / "args.json").read_text())["world_size"] == 2
    assert [x["global_step"] for x in logs(run) if "loss" in x] == [1, 2]  # one logger, not two
    ck = run / "checkpoint-2"
    assert (ck / "adapter_model.safetensors").is_file() and (ck / "rng_state_1.pth").is_file()


def test_two_nodes_on_loopback(tmp_path, tiny_llama):
    data = write_sft_data(tmp_path / "d.jsonl", n=16)
    port = str(free_port())
    out_dir = tmp_path / "out"
    procs = [
        _run(
            {
                "NNODES": "2",
                "NODE_RANK": str(rank),
                "NPROC_PER_NODE": "1",
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": port,
            },
            "sft",
            "--model",
            str(tiny_llama),
            "--dataset",
            str(data),
            *ARGS,
            "--output_dir",
            str(out_dir),
        )
        for rank in (0, 1)
    ]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs[0][-2000:] + outs[1][-2000:]
    assert "rank 0/2 trained 2 steps" in outs[0] and "rank 1/2 trained 2 steps" in outs[1]
    assert (out_dir / "args.json").is_file() and (out_dir / "checkpoint-2" / "adapter_model.safetensors").is_file()
    assert not [p for p in out_dir.iterdir() if p.name.startswith("v")]  # no stray per-node folders


def test_resume_under_another_world_size(tmp_path, tiny_llama):
    """A checkpoint written by two ranks resumes in one process (and keeps counting steps)."""
    data = write_sft_data(tmp_path / "d.jsonl", n=16)
    common = ["sft", "--model", str(tiny_llama), "--dataset", str(data), "--per_device_train_batch_size", "2"]
    common += [
        "--gradient_accumulation_steps",
        "1",
        "--logging_steps",
        "1",
        "--save_steps",
        "2",
        "--add_version",
        "false",
    ]
    p = _run(
        {"NPROC_PER_NODE": "2", "MASTER_PORT": str(free_port())},
        *common,
        "--max_steps",
        "2",
        "--output_dir",
        str(tmp_path / "a"),
    )
    out, _ = p.communicate(timeout=600)
    assert p.returncode == 0, out[-3000:]
    ck = tmp_path / "a" / "checkpoint-2"
    p = _run({}, *common, "--max_steps", "4", "--output_dir", str(tmp_path / "b"), "--resume_from_checkpoint", str(ck))
    out, _ = p.communicate(timeout=600)
    assert p.returncode == 0, out[-3000:]
    steps = [x["global_step"] for x in logs(tmp_path / "b") if "loss" in x]
    assert steps == [3, 4], steps  # continued from step 2, not restarted
    assert (tmp_path / "b" / "checkpoint-4" / "adapter_model.safetensors").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["zero2", "zero3"])
def test_deepspeed_zero_on_cpu(tmp_path, tiny_llama, stage):
    """DeepSpeed through the Trainer on CPU (gloo, DS_ACCELERATOR=cpu); the first run JIT-builds DeepSpeed's
    shared-memory comm op (about a minute)."""
    data = write_sft_data(tmp_path / "d.jsonl", n=16)
    p = _run(
        {"NPROC_PER_NODE": "2", "MASTER_PORT": str(free_port())},
        "sft", "--model", str(tiny_llama), "--dataset", str(data), *ARGS, "--deepspeed", stage,
        "--output_dir", str(tmp_path / "out"),
    )  # fmt: skip
    out, _ = p.communicate(timeout=900)
    assert p.returncode == 0, out[-3000:]
    assert "rank 0/2 trained 2 steps" in out and "rank 1/2 trained 2 steps" in out
    run = only_run(tmp_path / "out")
    saved = json.loads((run / "args.json").read_text())
    assert saved["deepspeed"] == stage and saved["world_size"] == 2
    assert [x["global_step"] for x in logs(run) if "loss" in x] == [1, 2]
    assert (run / "checkpoint-2" / "adapter_model.safetensors").is_file()


def test_fsdp_on_cpu_says_what_to_use(tmp_path, tiny_llama):
    from tests.conftest import run_cli

    data = write_sft_data(tmp_path / "d.jsonl", n=8)
    r = run_cli("sft", "--model", str(tiny_llama), "--dataset", str(data), "--fsdp", "fsdp2", *ARGS,
                "--output_dir", str(tmp_path / "out"))  # fmt: skip
    assert r.returncode != 0
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and "--fsdp needs GPUs" in err[0] and "--deepspeed zero3" in err[0]


def test_device_map_auto_trains(tmp_path, tiny_llama):
    from tests.conftest import run_cli

    data = write_sft_data(tmp_path / "d.jsonl", n=8)
    r = run_cli("sft", "--model", str(tiny_llama), "--dataset", str(data), "--device_map", "auto", *ARGS,
                "--output_dir", str(tmp_path / "out"))  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    run = only_run(tmp_path / "out")
    assert json.loads((run / "args.json").read_text())["device_map"] == "auto"
    assert (run / "checkpoint-2" / "adapter_model.safetensors").is_file()


@pytest.mark.parametrize("value,needle", [("zero9", "no such config"), ("BAD_JSON", "invalid JSON at line 1")])
def test_bad_deepspeed_is_one_line_before_torchrun(tmp_path, tiny_llama, value, needle):
    from tests.conftest import run_cli

    if value == "BAD_JSON":
        value = str(tmp_path / "ds.json")
        (tmp_path / "ds.json").write_text("{bad")
    data = write_sft_data(tmp_path / "d.jsonl", n=4)
    r = run_cli("sft", "--model", str(tiny_llama), "--dataset", str(data), "--deepspeed", value,
                "--output_dir", str(tmp_path / "out"))  # fmt: skip
    assert r.returncode != 0 and "torch.distributed.run" not in r.stdout
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and needle in err[0]


def test_zero3_keeps_peft_forward(tmp_path):
    """ZeRO-3 shards the weights and gathers them in each module's own forward hooks, so lmforge's fused LoRA
    forward (which reads the base weight directly) stays off there; ZeRO-0/1/2 keep whole weights."""
    from lmforge.train.distributed import partitions_params

    custom = tmp_path / "ds.json"
    custom.write_text(json.dumps({"zero_optimization": {"stage": 3}}))
    assert [partitions_params(v) for v in ("zero3", "zero3_offload", str(custom))] == [True, True, True]
    assert [partitions_params(v) for v in (None, "zero0", "zero1", "zero2", "default-zero2_offload")] == [False] * 5


def test_sigterm_to_the_launcher_stops_every_rank_after_a_saved_step(tmp_path, tiny_llama):
    import signal

    data = write_sft_data(tmp_path / "d.jsonl", n=64)
    out = tmp_path / "out"
    argv = ["sft", "--model", str(tiny_llama), "--dataset", str(data), "--max_steps", "200", "--save_steps", "1000"]
    argv += ["--logging_steps", "1", "--per_device_train_batch_size", "1", "--gradient_accumulation_steps", "1"]
    p = _run({"NPROC_PER_NODE": "2", "MASTER_PORT": str(free_port())}, *argv, "--output_dir", str(out))
    deadline = time.time() + 300
    while time.time() < deadline and p.poll() is None:
        runs = list(out.glob("v*/logging.jsonl"))
        if runs and sum(1 for line in runs[0].read_text().splitlines() if '"loss"' in line) >= 2:
            break
        time.sleep(0.1)
    p.send_signal(signal.SIGTERM)
    text, _ = p.communicate(timeout=180)
    assert p.returncode == 128 + signal.SIGTERM, text[-3000:]
    assert "Traceback" not in text and text.count("stopped by SIGTERM") == 1, text[-3000:]
    run = only_run(out)
    assert list(run.glob("checkpoint-*/rng_state_1.pth"))  # both ranks wrote the same step's checkpoint
    time.sleep(1)
    ranks = subprocess.run(["pgrep", "-f", f"lmforge sft.*{out}"], capture_output=True, text=True).stdout.split()
    assert not ranks, f"ranks outlived the launcher: {ranks}"
