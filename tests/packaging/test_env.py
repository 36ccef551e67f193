"""`lmforge env`: versions, devices, bf16 and the optional features, as a user pastes it into a bug report."""

from __future__ import annotations

import time
from importlib import metadata

from lmforge.env import report
from tests.conftest import run_cli
from tests.packaging.hide import hide_packages


def test_env_command_reports_versions_devices_and_features():
    t0 = time.perf_counter()
    r = run_cli("env")
    wall = time.perf_counter() - t0
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for dist in ("torch", "transformers", "peft", "trl", "datasets", "accelerate"):
        assert f"{dist} {metadata.version(dist)}" in out, dist
    assert "cpu: " in out and "bf16 " in out and "cuda" in out
    lines = {ln.split()[0] + " " + ln.split()[1]: ln for ln in out.splitlines() if ln.startswith("  --")}
    assert lines["--deepspeed ok"]
    vllm = [ln for ln in out.splitlines() if ln.strip().startswith("--use_vllm")][0]
    assert "missing: vllm is not installed; pip install 'lmforge[vllm]'" in vllm  # not in the dev install
    assert wall < 15  # torch's import is the bulk; a busy 2-core box measured ~5 s


def test_env_says_why_a_feature_is_missing(monkeypatch):
    hide_packages(monkeypatch, "bitsandbytes", "fastapi")
    out = report()
    bnb = next(ln for ln in out.splitlines() if "--quant_method bnb" in ln)
    assert bnb.endswith("missing: bitsandbytes is not installed; pip install 'lmforge[quant]'"), bnb
    deploy = next(ln for ln in out.splitlines() if "lmforge deploy" in ln)
    assert deploy.endswith("missing: fastapi is not installed; pip install 'lmforge[serve]'"), deploy
