"""Exact resume: SIGKILL a real run after a checkpoint, resume, and match an unbroken run step for step."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.conftest import run_cli
from tests.train.helpers import train_losses, write_sft_data

MAX_STEPS = 16


def _args(model: Path, data: Path, out: Path) -> list[str]:
    return [
        "sft",
        "--model",
        str(model),
        "--dataset",
        str(data),
        "--max_steps",
        str(MAX_STEPS),
        "--save_steps",
        "3",
        "--logging_steps",
        "1",
        "--per_device_train_batch_size",
        "2",
        "--gradient_accumulation_steps",
        "2",
        "--learning_rate",
        "5e-3",
        "--lora_dropout",
        "0.1",
        "--output_dir",
        str(out),
        "--add_version",
        "false",
        "--torch_dtype",
        "float32",
    ]


def _complete(out: Path) -> list[int]:
    return sorted(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*"))


def test_sigkill_then_resume_matches_unbroken_run(tmp_path, tiny_llama):
    data = write_sft_data(tmp_path / "train.jsonl", n=40)
    full = tmp_path / "full"
    r = run_cli(*_args(tiny_llama, data, full))
    assert r.returncode == 0, r.stderr[-2000:]

    broken = tmp_path / "broken"
    proc = subprocess.Popen(
        [sys.executable, "-m", "lmforge", *_args(tiny_llama, data, broken)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 300
    while time.time() < deadline and not _complete(broken) and proc.poll() is None:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = _complete(broken)
    assert done and done[-1] < MAX_STEPS, f"the kill came too late to test anything: {done}"
    ckpt = broken / f"checkpoint-{done[-1]}"

    resumed = tmp_path / "resumed"
    r = run_cli(*_args(tiny_llama, data, resumed), "--resume_from_checkpoint", str(ckpt))
    assert r.returncode == 0, r.stderr[-2000:]
    want, got = train_losses(full), train_losses(resumed)
    later = [s for s in want if s > done[-1]]
    assert later and all(s in got for s in later)
    for s in later:
        assert got[s] == pytest.approx(want[s], abs=1e-6), s
    a = load_file(full / f"checkpoint-{MAX_STEPS}" / "adapter_model.safetensors")
    b = load_file(resumed / f"checkpoint-{MAX_STEPS}" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-6


def test_kill_during_save_leaves_no_half_checkpoint(tmp_path, tiny_llama, monkeypatch):
    """A save that dies half-way (here: the optimizer write raises) leaves no checkpoint-N and no staged half."""
    from transformers import Trainer

    from lmforge.cli import main

    def boom(self, output_dir):  # noqa: ANN001
        raise KeyboardInterrupt  # what SIGINT mid-save looks like inside the save

    data = write_sft_data(tmp_path / "train.jsonl")
    out = tmp_path / "out"
    monkeypatch.setattr(Trainer, "_save_optimizer_and_scheduler", boom)
    code = main(_args(tiny_llama, data, out)[:-2] + ["--max_steps", "3"])
    assert code == 130
    assert _complete(out) == []  # nothing a resume could pick up
    assert not (out / ".staging").exists()  # the half-written save is removed
    half = out / "checkpoint-x"
    half.mkdir()
    (half / "adapter_model.safetensors").write_bytes(b"")
    code = main(_args(tiny_llama, data, tmp_path / "again") + ["--resume_from_checkpoint", str(half)])
    assert code != 0  # refused with a one-line error, not a silent half resume
