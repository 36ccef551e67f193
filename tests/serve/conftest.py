"""A real `lmforge deploy` subprocess on a free loopback port, shared by the serve tests."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.train.helpers import only_run, write_sft_data


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(proc: subprocess.Popen, port: int, timeout: float = 240) -> None:
    import urllib.request

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stdout.read() if proc.stdout else ''}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError("server did not start")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@contextlib.contextmanager
def deployed(model: Path, *flags: str):
    """`lmforge deploy --model MODEL` in float32 as `tiny` on a free port, for one block; yields the port."""
    port = free_port()
    cmd = [sys.executable, "-m", "lmforge", "deploy", "--model", str(model), "--port", str(port), *flags]
    proc = subprocess.Popen(
        [*cmd, "--torch_dtype", "float32", "--log_level", "warning", "--served_model_name", "tiny"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_ready(proc, port)
        yield port
    finally:
        stop_server(proc)


@pytest.fixture(scope="session")
def two_adapters(tmp_path_factory, tiny_qwen3) -> tuple[Path, Path]:
    out = []
    for name, lr in (("a", "5e-2"), ("b", "1e-1")):
        tmp = tmp_path_factory.mktemp(f"adapter-{name}")
        data = write_sft_data(tmp / "d.jsonl", n=8)
        r = run_cli(
            "sft",
            "--model",
            str(tiny_qwen3),
            "--dataset",
            str(data),
            "--max_steps",
            "3",
            "--learning_rate",
            lr,
            "--per_device_train_batch_size",
            "2",
            "--gradient_accumulation_steps",
            "1",
            "--save_steps",
            "3",
            "--torch_dtype",
            "float32",
            "--output_dir",
            str(tmp / "o"),
        )
        assert r.returncode == 0, r.stderr[-2000:]
        out.append(only_run(tmp / "o") / "checkpoint-3")
    return out[0], out[1]


@pytest.fixture(scope="session")
def server(tiny_qwen3, two_adapters):
    port = free_port()
    a, b = two_adapters
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lmforge",
            "deploy",
            "--model",
            str(tiny_qwen3),
            "--adapters",
            f"alpha={a}",
            f"beta={b}",
            "--port",
            str(port),
            "--api_key",
            "sk-test",
            "--served_model_name",
            "tiny",
            "--log_level",
            "warning",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_ready(proc, port)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_server(proc)
