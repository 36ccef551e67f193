"""GPTQ export and LoRA on top of it, as a user runs them. GPTQModel pins numpy, so it lives in its own venv (the
`gptq` extra); where it is absent these tests skip (run them with that venv's python)."""

from __future__ import annotations

import importlib.util
import json

import pytest

from tests.conftest import run_cli
from tests.train.helpers import SHORT_RUN, only_run, train_losses, write_sft_data

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("gptqmodel") is None or importlib.util.find_spec("optimum") is None,
        reason="GPTQ needs gptqmodel and optimum (pip install 'lmforge[gptq]' in its own venv)",
    ),
]


def test_gptq_export_reloads_answers_and_trains_lora(tiny_llama, tmp_path):
    from lmforge.infer.engine import SamplingConfig
    from lmforge.infer.engines import load_engine

    out = tmp_path / "gptq4"
    flags = ["--quant_method", "gptq", "--quant_bits", "4", "--group_size", "32", "--quant_n_samples", "8"]
    r = run_cli("export", "--model", str(tiny_llama), *flags, "--output_dir", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    q = json.loads((out / "config.json").read_text())["quantization_config"]
    assert q["quant_method"] == "gptq" and q["bits"] == 4 and q["group_size"] == 32
    rep = json.loads((out / "quant_report.json").read_text())
    assert rep["rows"] == 16 and "rows not used for calibration" in rep["rows_from"]
    assert abs(rep["perplexity"]["ratio"] - 1) < 0.05 and rep["top1_agreement"] >= 0.9, rep  # the stated bound

    data = write_sft_data(tmp_path / "train.jsonl", n=8)
    train = ["--model", str(out), "--dataset", str(data), "--learning_rate", "1e-2"]
    r = run_cli("sft", *train, *SHORT_RUN, "--output_dir", str(tmp_path / "run"))
    assert r.returncode == 0, r.stderr[-2000:]
    run = only_run(tmp_path / "run")
    assert len(train_losses(run)) == 2
    engine = load_engine(out, base_adapters=[str(run / "checkpoint-2")], dtype="float32")
    wrapped = [type(m.base_layer).__name__ for m in engine.model.modules() if hasattr(m, "lora_A")]
    assert wrapped and all("Linear" in n and n != "Linear" for n in wrapped), wrapped  # LoRA on the GPTQ layers
    out_text = engine.chat([[{"role": "user", "content": "What is 2 plus 2?"}]], SamplingConfig(max_new_tokens=4))
    assert out_text[0].token_ids
