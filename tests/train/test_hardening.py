"""A run stopped the way schedulers stop it (SIGTERM) saves and resumes exactly; a disk that fills up during a save
is one line and leaves the earlier checkpoints intact."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import default_sigint, run_cli
from tests.train.helpers import train_losses, write_sft_data


def _args(model: Path, data: Path, out: Path, steps: int, save: int) -> list[str]:
    return [
        "sft", "--model", str(model), "--dataset", str(data), "--max_steps", str(steps), "--save_steps", str(save),
        "--logging_steps", "1", "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "1",
        "--learning_rate", "5e-3", "--lora_dropout", "0.1", "--torch_dtype", "float32", "--report_to", "none",
        "--output_dir", str(out), "--add_version", "false",
    ]  # fmt: skip


def _logged_steps(out: Path) -> list[int]:
    path = out / "logging.jsonl"
    rows = [json.loads(x) for x in path.read_text().splitlines()] if path.is_file() else []
    return [r["global_step"] for r in rows if "loss" in r]


def _interrupt_training(argv: list[str], out: Path, after_steps: int, sig: int) -> tuple[int, str, float]:
    """Start `lmforge <argv>`, send `sig` once `after_steps` steps are logged; (exit code, stderr, seconds to exit)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "lmforge", *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
    )
    deadline = time.time() + 300
    while time.time() < deadline and len(_logged_steps(out)) < after_steps and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(sig)
    t0 = time.time()
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err, time.time() - t0


def test_sigterm_saves_the_current_step_and_resume_continues_exactly(tmp_path, tiny_llama):
    data = write_sft_data(tmp_path / "train.jsonl", n=40)
    r = run_cli(*_args(tiny_llama, data, tmp_path / "whole", 14, 100))
    assert r.returncode == 0, r.stderr[-2000:]

    out = tmp_path / "stopped"
    code, err, seconds = _interrupt_training(_args(tiny_llama, data, out, 14, 100), out, 3, signal.SIGTERM)
    assert code == 128 + signal.SIGTERM, err[-2000:]
    assert seconds < 60
    lines = [ln for ln in err.splitlines() if "stopped by SIGTERM" in ln]
    assert len(lines) == 1 and "--resume_from_checkpoint" in lines[0] and "Traceback" not in err
    saved = sorted(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*"))
    assert saved and saved[-1] < 14 and saved[-1] == _logged_steps(out)[-1]  # the step it was in, saved
    ckpt = out / f"checkpoint-{saved[-1]}"

    resumed = tmp_path / "resumed"
    r = run_cli(*_args(tiny_llama, data, resumed, 14, 100), "--resume_from_checkpoint", str(ckpt))
    assert r.returncode == 0, r.stderr[-2000:]
    want, got = train_losses(tmp_path / "whole"), train_losses(resumed)
    later = [s for s in want if s > saved[-1]]
    assert later and all(got[s] == pytest.approx(want[s], abs=1e-6) for s in later)


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs of a chosen size (root and mount rights needed; skipped elsewhere)."""
    mounts = []

    def make(size_kb: int) -> Path:
        path = tmp_path / f"disk{len(mounts)}"
        path.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(path)], capture_output=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
        mounts.append(path)
        return path

    yield make
    for path in mounts:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def test_full_disk_during_a_save_is_one_line_and_keeps_earlier_checkpoints(tmp_path, tiny_llama, small_disk):
    data = write_sft_data(tmp_path / "train.jsonl", n=16)
    probe = tmp_path / "probe"
    assert run_cli(*_args(tiny_llama, data, probe, 2, 2)).returncode == 0
    ckpt_kb = sum(f.stat().st_size for f in (probe / "checkpoint-2").rglob("*") if f.is_file()) // 1024
    run_kb = sum(f.stat().st_size for f in probe.rglob("*") if f.is_file()) // 1024
    disk = small_disk(run_kb + ckpt_kb // 2)  # room for the first checkpoint, not for the second
    shutil.rmtree(probe)
    out = disk / "out"
    r = run_cli(*_args(tiny_llama, data, out, 6, 2))
    errors = [ln for ln in r.stderr.splitlines() if "error:" in ln]
    assert r.returncode == 2 and len(errors) == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert "cannot write" in errors[0] and "No space left on device" in errors[0], errors[0]
    assert (out / "checkpoint-2" / "trainer_state.json").is_file()  # the earlier checkpoint is whole
    assert not (out / ".staging").exists() and not (out / "checkpoint-4").exists()
    resumed = tmp_path / "resumed"
    r = run_cli(*_args(tiny_llama, data, resumed, 3, 3), "--resume_from_checkpoint", str(out / "checkpoint-2"))
    assert r.returncode == 0, r.stderr[-2000:]


def test_full_disk_for_an_export_or_results_file_is_one_line(tmp_path, tiny_llama, small_disk):
    data = write_sft_data(tmp_path / "train.jsonl", n=8)
    assert run_cli(*_args(tiny_llama, data, tmp_path / "run", 2, 2)).returncode == 0
    ckpt = str(tmp_path / "run" / "checkpoint-2")
    disk = small_disk(1024)  # the merged tiny model needs ~15 MB
    r = run_cli("export", "--adapters", ckpt, "--merge_lora", "true", "--output_dir", str(disk / "merged"))
    errors = [ln for ln in r.stderr.splitlines() if "error:" in ln]
    assert r.returncode == 2 and len(errors) == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert "cannot write the merged model" in errors[0] and "No space left" in errors[0]
    assert not list(disk.iterdir())  # neither the model nor its .tmp half
    try:  # fill the disk, then ask for a results file on it
        (disk / "filler").write_bytes(b"\0" * (1024 * 1024))
    except OSError:
        pass
    val = tmp_path / "val.jsonl"
    val.write_text(json.dumps({"query": "What is 1 plus 1?", "response": "2"}) + "\n")
    r = run_cli("infer", "--adapters", ckpt, "--val_dataset", str(val), "--max_new_tokens", "2",
                "--result_path", str(disk / "results.jsonl"))  # fmt: skip
    errors = [ln for ln in r.stderr.splitlines() if "error:" in ln]
    assert r.returncode == 2 and len(errors) == 1 and "cannot write the results" in errors[0], r.stderr[-3000:]


def test_ctrl_c_during_training_saves_and_during_inference_ends_in_one_line(tmp_path, tiny_llama):
    data = write_sft_data(tmp_path / "train.jsonl", n=40)
    out = tmp_path / "out"
    code, err, _ = _interrupt_training(_args(tiny_llama, data, out, 200, 1000), out, 2, signal.SIGINT)
    assert code == 128 + signal.SIGINT and "Traceback" not in err, err[-2000:]
    assert "stopped by SIGINT" in err and list(out.glob("checkpoint-*"))

    rows = [{"query": f"Tell a long story number {i}.", "response": "ok"} for i in range(64)]
    val = tmp_path / "val.jsonl"
    val.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cmd = ["infer", "--model", str(tiny_llama), "--val_dataset", str(val), "--max_new_tokens", "2000"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "lmforge", *cmd, "--result_path", str(tmp_path / "r.jsonl")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
    )
    time.sleep(8)  # loading and generating
    assert proc.poll() is None, "inference ended before the interrupt could test anything"
    proc.send_signal(signal.SIGINT)
    t0 = time.time()
    _, err = proc.communicate(timeout=60)
    assert time.time() - t0 < 30 and proc.returncode == 130, err[-2000:]
    lines = [ln for ln in err.splitlines() if ln.strip() and "it/s" not in ln]
    assert "Traceback" not in err and any("interrupted" in ln for ln in lines), err[-2000:]
