"""GPTQ export and LoRA on top of it, as a user runs them. GPTQModel pins numpy, so it lives in its own venv (the
`gptq` extra); where it is absent these tests skip (run them with that venv's python)."""

from __future__ import annotations

import importlib.util
import json

import pytest

from tests.conftest import run_cli
from tests.export.helpers import lora_trains_and_answers

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("gptqmodel") is None or importlib.util.find_spec("optimum") is None,
        reason="GPTQ needs gptqmodel and optimum (pip install 'lmforge[gptq]' in its own venv)",
    ),
]


def test_gptq_export_reloads_answers_and_trains_lora(tiny_llama, tmp_path):
    out = tmp_path / "gptq4"
    flags = ["--quant_method", "gptq", "--quant_bits", "4", "--group_size", "32", "--quant_n_samples", "8"]
    r = run_cli("export", "--model", str(tiny_llama), *flags, "--output_dir", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    q = json.loads((out / "config.json").read_text())["quantization_config"]
    assert q["quant_method"] == "gptq" and q["bits"] == 4 and q["group_size"] == 32
    rep = json.loads((out / "quant_report.json").read_text())
    assert rep["rows"] == 16 and "rows not used for calibration" in rep["rows_from"]
    assert abs(rep["perplexity"]["ratio"] - 1) < 0.05 and rep["top1_agreement"] >= 0.9, rep  # the stated bound

    wrapped = lora_trains_and_answers(out, tmp_path)
    assert all("Linear" in n and n != "Linear" for n in wrapped), wrapped  # LoRA on the GPTQ layers
