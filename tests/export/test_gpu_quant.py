"""GPU-only quantized exports (never run in CI; scripts/gpu/quant_export.sh runs them on a CUDA machine): FP8 and
AWQ through the CLI, reloaded by transformers from their own quantization config, with a sane quality report; LoRA
trained on the AWQ export and on EETQ int8 loading (QLoRA), each adapter loaded back for infer."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from tests.conftest import build_llama, run_cli
from tests.export.helpers import lora_trains_and_answers

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def llama_256(tmp_path_factory, smollm2_dir) -> Path:
    """A 2-layer random llama whose widths (256, 512) are multiples of FP8's 128x128 blocks and AWQ's groups."""
    return build_llama(tmp_path_factory.mktemp("llama-256"), smollm2_dir, hidden=256, intermediate=512)


def _export(model: Path, out: Path, *flags: str) -> dict:
    r = run_cli("export", "--model", str(model), "--output_dir", str(out), *flags)
    assert r.returncode == 0, r.stderr[-2000:]
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(out, device_map="cuda") is not None
    assert "quantization_config" in json.loads((out / "config.json").read_text())
    return json.loads((out / "quant_report.json").read_text())


def test_fp8_export(llama_256, tmp_path):
    rep = _export(llama_256, tmp_path / "fp8", "--quant_method", "fp8", "--quant_bits", "8")
    assert rep["top1_agreement"] >= 0.9 and rep["perplexity"]["ratio"] < 1.1, rep


@pytest.mark.skipif(importlib.util.find_spec("gptqmodel") is None, reason="AWQ needs gptqmodel")
def test_awq_export(llama_256, tmp_path):
    flags = ["--quant_method", "awq", "--quant_bits", "4", "--group_size", "64", "--quant_n_samples", "16"]
    rep = _export(llama_256, tmp_path / "awq", *flags)
    assert rep["top1_agreement"] >= 0.5 and rep["perplexity"]["ratio"] < 2, rep
    wrapped = lora_trains_and_answers(tmp_path / "awq", tmp_path)
    assert all(n != "Linear" for n in wrapped), wrapped  # LoRA on the AWQ layers


@pytest.mark.skipif(importlib.util.find_spec("eetq") is None, reason="QLoRA on EETQ needs the eetq package")
def test_eetq_qlora_trains_and_loads_for_infer(llama_256, tmp_path):
    wrapped = lora_trains_and_answers(llama_256, tmp_path, "--quant_method", "eetq", "--quant_bits", "8")
    assert wrapped, wrapped
