"""`python -m build` gives a wheel and an sdist; the wheel, installed into a clean venv with torch==2.13.0 (its core
dependencies only), runs --help, check and a 2-step sft with nothing from the source tree on the path.

The install takes minutes (measured 7m54s for pip on a busy 2-core box, from the local wheel index), so the test
runs only with LMFORGE_WHEEL_TEST=1."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile

import pytest

from tests.conftest import ROOT
from tests.train.helpers import write_sft_data

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.environ.get("LMFORGE_WHEEL_TEST"), reason="set LMFORGE_WHEEL_TEST=1 (installs ~2 GB)"),
]


def _run(cmd: list[str], cwd, timeout: int = 1800) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_wheel_installs_into_a_clean_venv_and_trains(tmp_path, tiny_llama):
    dist = tmp_path / "dist"
    r = _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(ROOT)], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    (wheel,) = dist.glob("lmforge-*.whl")
    assert len(list(dist.glob("lmforge-*.tar.gz"))) == 1
    names = zipfile.ZipFile(wheel).namelist()
    assert "lmforge/train/ds_config/zero3.json" in names and "lmforge/templates/jinja/chatml.jinja" in names
    venv = tmp_path / "venv"
    assert _run([sys.executable, "-m", "venv", str(venv)], tmp_path).returncode == 0
    r = _run([str(venv / "bin/pip"), "install", "-q", str(wheel), "torch==2.13.0"], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    lmforge = str(venv / "bin/lmforge")
    work = tmp_path / "work"
    work.mkdir()
    where = _run([str(venv / "bin/python"), "-c", "import lmforge; print(lmforge.__file__)"], work).stdout
    assert where.startswith(str(venv)), where  # the installed copy, not the checkout
    assert _run([lmforge, "--help"], work).returncode == 0
    data = write_sft_data(work / "d.jsonl", n=8)
    r = _run([lmforge, "check", "--model", str(tiny_llama), "--dataset", str(data)], work)
    assert r.returncode == 0 and "all rows usable" in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]
    sft = [lmforge, "sft", "--model", str(tiny_llama), "--dataset", str(data), "--max_steps", "2"]
    sft += ["--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "1", "--output_dir", "out"]
    r = _run(sft, work)
    assert r.returncode == 0, r.stderr[-3000:]
    (run,) = (work / "out").glob("v0-*")
    assert (run / "checkpoint-2" / "adapter_model.safetensors").is_file()
    # the core install has no extras: asking for one fails before the model loads, naming it
    r = _run([*sft, "--deepspeed", "zero2"], work)
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stderr.strip().endswith("--deepspeed needs DeepSpeed: pip install 'lmforge[deepspeed]'"), r.stderr
    env = _run([lmforge, "env"], work).stdout
    assert "lmforge deploy" in env and "missing: fastapi is not installed; pip install 'lmforge[serve]'" in env
