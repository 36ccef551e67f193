"""`lmforge export --quant_method / --to_gguf` driven as a user would: LoRA merged first, the output reloads in
transformers (its own quantization config, or its GGUF loader), and the quality report holds real numbers."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import torch

from lmforge.cli import main
from tests.conftest import run_cli
from tests.infer.helpers import calculator_engine


def _report(out: Path) -> dict:
    r = json.loads((out / "quant_report.json").read_text())
    assert (out / "quant_report.md").read_text().startswith(f"# Quality report: {r['export']}")
    return r


def test_bnb4_export_of_a_lora_run_reloads_and_reports(lora_ckpt, tmp_path):
    from lmforge.infer.engine import SamplingConfig
    from lmforge.runargs import read_run_args

    out = tmp_path / "bnb4"
    r = run_cli(
        "export", "--adapters", str(lora_ckpt), "--quant_method", "bnb", "--quant_bits", "4", "--output_dir", str(out)
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "quality (bnb-int4" in r.stdout and "top-1 agreement" in r.stdout
    cfg = json.loads((out / "config.json").read_text())["quantization_config"]
    assert cfg["quant_method"] == "bitsandbytes" and cfg["load_in_4bit"] and cfg["bnb_4bit_quant_type"] == "nf4"
    assert json.loads((out / "generation_config.json").read_text())["eos_token_id"] == [2]
    saved = read_run_args(out)
    assert saved.system == "You are a calculator." and saved.merged_from == [str(lora_ckpt)]
    assert saved.raw["quant_method"] == "bnb" and saved.raw["quant_bits"] == 4
    assert not Path(str(out) + ".work").exists() and not Path(str(out) + ".tmp").exists()

    rep = _report(out)
    assert rep["rows"] > 0 and rep["tokens"] > 0 and len(rep["greedy"]) == 3
    assert 0.7 <= rep["top1_agreement"] <= 1 and rep["mean_logit_drift"] > 0  # nf4 changes the model, a little
    assert rep["perplexity"]["ratio"] < 1.5, rep["perplexity"]
    assert rep["size_bytes"]["after"] < rep["size_bytes"]["before"]

    engine = calculator_engine(out, [])  # transformers reloads it from its own quantization_config
    assert any(type(m).__name__ == "Linear4bit" for m in engine.model.modules())
    first = rep["greedy"][0]
    answer = engine.chat([[{"role": "user", "content": first["prompt"]}]], SamplingConfig(max_new_tokens=16))[0]
    assert answer.text == first["after"] and answer.token_ids


def test_bnb8_export_reloads_with_small_drift(tiny_llama, tmp_path):
    from transformers import AutoModelForCausalLM

    from lmforge.export.quant import QuantJob, export_bnb

    out = tmp_path / "bnb8"
    export_bnb(QuantJob(tiny_llama, out, 8, 128, torch.float32, None))
    q = AutoModelForCausalLM.from_pretrained(out)
    assert any(type(m).__name__ == "Linear8bitLt" for m in q.modules())
    ref = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32)
    ids = torch.tensor([[1, 400, 2000, 30, 9]])
    with torch.inference_mode():
        a, b = ref(ids).logits, q(ids).logits
    assert 0 < (a - b).abs().max().item() < 0.5


HAS_LLAMA_CPP = importlib.util.find_spec("llama_cpp") is not None
READER = "llama.cpp" if HAS_LLAMA_CPP else "transformers"  # the report reads a GGUF back as llama.cpp runs it


def _gguf_field(path: Path, key: str) -> str:
    from gguf import GGUFReader

    field = GGUFReader(path).fields[key]
    return bytes(field.parts[field.data[0]]).decode()


def test_gguf_f16_export_answers_as_the_original(lora_ckpt, tiny_llama, tmp_path):
    out = tmp_path / "gguf"
    r = run_cli("export", "--adapters", str(lora_ckpt), "--to_gguf", "true", "--output_dir", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    gguf_name = f"{tiny_llama.name}-f16.gguf"  # named after the model, and so is general.name inside
    assert {gguf_name, "Modelfile", "quant_report.json", "quant_report.md"} == {p.name for p in out.iterdir()}
    modelfile = (out / "Modelfile").read_text()
    assert f"FROM ./{gguf_name}" in modelfile and 'PARAMETER stop "<|im_end|>"' in modelfile
    assert 'SYSTEM """You are a calculator."""' in modelfile
    template = _gguf_field(out / gguf_name, "tokenizer.chat_template")
    assert (lora_ckpt / "chat_template.jinja").read_text().strip() == template.strip()
    assert _gguf_field(out / gguf_name, "general.name") == tiny_llama.name
    rep = _report(out)
    assert rep["reader"] == READER and f"via {READER}" in r.stdout
    assert all(g["same"] for g in rep["greedy"]) and any(g["before"] for g in rep["greedy"]), rep["greedy"]
    assert rep["top1_agreement"] >= 0.99 and abs(rep["perplexity"]["ratio"] - 1) < 0.01, rep


def _export_in_process(capsys, *argv: str) -> str:
    """`lmforge export ...` in this process (the CLI itself is driven by the f16 test); its stdout."""
    capsys.readouterr()
    assert main(["export", *argv]) == 0, capsys.readouterr().err[-2000:]
    return capsys.readouterr().out


def test_gguf_q8_0_agrees_on_top1(lora_ckpt, tmp_path, capsys):
    out = tmp_path / "q8"
    _export_in_process(
        capsys, "--adapters", str(lora_ckpt), "--to_gguf", "true", "--gguf_type", "q8_0", "--output_dir", str(out)
    )
    rep = _report(out)
    assert rep["export"] == "gguf-q8_0" and rep["reader"] == READER and rep["top1_agreement"] >= 0.95, rep
    assert rep["size_bytes"]["after"] < rep["size_bytes"]["before"] / 2  # 8.5 bits a weight against fp32


@pytest.mark.skipif(not HAS_LLAMA_CPP, reason="q4_k_m needs llama.cpp's quantizer (llama-cpp-python)")
def test_gguf_q4_k_m_through_llama_cpp(tiny_llama, tmp_path, capsys):
    out = tmp_path / "q4"
    stdout = _export_in_process(
        capsys, "--model", str(tiny_llama), "--to_gguf", "true", "--gguf_type", "q4_k_m", "--output_dir", str(out)
    )
    rep = _report(out)
    assert rep["export"] == "gguf-q4_k_m" and rep["reader"] == "llama.cpp", rep
    assert _gguf_field(out / f"{tiny_llama.name}-q4_k_m.gguf", "general.name") == tiny_llama.name
    assert "greedy answers equal on" in stdout and len(rep["greedy"]) == 3
    # widths of 64 are no multiple of 256: llama.cpp falls back to 8-bit-ish types on this tiny model
    assert rep["size_bytes"]["after"] < rep["size_bytes"]["before"] / 2
    assert rep["top1_agreement"] >= 0.5 and rep["perplexity"]["ratio"] < 1.5, rep


def _toy_family(tiny_llama: Path, tmp: Path) -> Path:
    """tiny_llama's tokenizer and config under an architecture name llama.cpp's converter does not register."""
    d = tmp / "toy"
    d.mkdir()
    for f in tiny_llama.iterdir():
        if f.suffix != ".safetensors":
            shutil.copy(f, d / f.name)
    cfg = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**cfg, "architectures": ["ToyForCausalLM"]}))
    return d


BAD = [
    (["--quant_method", "gptq4"], "--quant_method gptq4: unknown quantization method; known: awq, bnb, fp8, gptq"),
    (["--quant_method", "bnb", "--quant_bits", "2"], "--quant_method bnb needs --quant_bits 4 or 8 (got 2)"),
    (["--quant_method", "bnb"], "--quant_method bnb needs --quant_bits 4 or 8"),
    (["--quant_bits", "4"], "--quant_bits without --quant_method"),
    (["--gguf_type", "q8_0"], "--gguf_type needs --to_gguf true"),
    (["--quant_method", "awq", "--quant_bits", "4"], "--quant_method awq: its kernels and calibration need CUDA"),
    (["--quant_method", "fp8", "--quant_bits", "8"], "--quant_method fp8: FP8 quantization needs a GPU or XPU"),
    (["--gguf_type", "q9"], "q9"),
    (["--quant_method", "gptq", "--quant_bits", "4"], "--group_size 128 does not divide the model's hidden_size (64)"),
    (
        ["--quant_method", "gptq", "--quant_bits", "4", "--group_size", "32", "--quant_n_samples", "500"],
        "24 usable rows, --quant_n_samples asks for 500 calibration rows",
    ),
    (["--to_gguf", "true", "TOY"], "llama.cpp's converter does not know the ToyForCausalLM family"),
    (["--to_gguf", "true", "--output_dir", "EXISTING"], "already exists (hint: pass --exist_ok true"),
]


@pytest.mark.parametrize(("argv", "needle"), BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_export_flags_are_one_line(argv, needle, tiny_llama, tmp_path, capsys, monkeypatch):
    if "cuda" in needle.lower() or "GPU" in needle:
        monkeypatch.setattr("lmforge.export.methods.cuda_available", lambda: False)
    model = str(_toy_family(tiny_llama, tmp_path)) if "TOY" in argv else str(tiny_llama)
    argv = [str(tmp_path) if a == "EXISTING" else a for a in argv if a != "TOY"]
    monkeypatch.chdir(tmp_path)
    code = main(["export", "--model", model, *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and needle in err[0], err
    assert not list(tmp_path.glob("*-int*")) and not list(tmp_path.glob("*-gguf"))  # nothing was written


def test_gguf_is_named_after_the_model_not_its_cache_folder():
    from lmforge.export.gguf import model_name

    assert model_name(None) == model_name("smollm2") == "SmolLM2-135M-Instruct"  # not SmolLM2-...-<hash>
    assert model_name("Qwen/Qwen3-0.6B") == "Qwen3-0.6B" and model_name("/m/llama.Q4_1.gguf") == "llama.Q4_1"
    assert model_name("output/v0-1/checkpoint-6-merged/") == "checkpoint-6-merged"
