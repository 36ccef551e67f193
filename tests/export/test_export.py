"""`lmforge export --merge_lora` driven as a user would: the merged folder answers as base+adapter did."""

from __future__ import annotations

import json

import torch

from tests.conftest import run_cli
from tests.infer.helpers import calculator_engine

PROMPTS = ["What is 3 plus 3?", "Hello there", "Tell me a story", "你好", "List three colors"]


def test_export_merge_equals_adapter(lora_ckpt, tiny_llama, tmp_path, capsys):
    from lmforge.args import ModelArgs, TemplateArgs, TunerArgs
    from lmforge.args.parser import Args
    from lmforge.cli import main
    from lmforge.infer.engine import SamplingConfig
    from lmforge.runargs import read_run_args, resolve_model

    out = tmp_path / "merged"
    r = run_cli("export", "--adapters", str(lora_ckpt), "--merge_lora", "true", "--output_dir", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    for f in ("config.json", "model.safetensors", "tokenizer_config.json", "generation_config.json", "args.json"):
        assert (out / f).is_file(), f
    assert json.loads((out / "generation_config.json").read_text())["eos_token_id"] == [2]
    assert (out / "chat_template.jinja").is_file() or "chat_template" in (out / "tokenizer_config.json").read_text()
    saved = read_run_args(out)
    assert saved.model_dir is None and saved.base_model_dir and saved.merged_from == [str(lora_ckpt)]
    assert saved.system == "You are a calculator."
    capsys.readouterr()
    assert main(["export", "--adapters", str(lora_ckpt), "--merge_lora", "true", "--output_dir", str(out)]) != 0
    assert "already exists" in capsys.readouterr().err
    # `--model MERGED` alone: args.json next to the weights gives the template and system prompt back
    args = Args({"model": ModelArgs(model=str(out)), "template": TemplateArgs(), "tuner": TunerArgs()}, {"model"})
    resolved = resolve_model(args, True)
    assert resolved.model == str(out) and resolved.template_args.system == "You are a calculator."

    base = calculator_engine(tiny_llama, [str(lora_ckpt)], lora_ckpt)
    merged = calculator_engine(out, [])
    ids = torch.tensor([base.frontend.prompt_ids([{"role": "user", "content": PROMPTS[0]}])])
    with torch.inference_mode():
        diff = (base.model(ids).logits - merged.model(ids).logits).abs().max().item()
        lora_effect = (base.model(ids).logits - calculator_engine(tiny_llama, []).model(ids).logits).abs().max().item()
    assert diff <= 1e-4 and lora_effect > 1e-3  # equal to the adapter, and the adapter does change the model
    cfg = SamplingConfig(max_new_tokens=12)
    convs = [[{"role": "user", "content": p}] for p in PROMPTS]
    assert [c.text for c in base.chat(convs, cfg)] == [c.text for c in merged.chat(convs, cfg)]


def test_push_offline_is_one_line_and_keeps_the_merge(lora_ckpt, tmp_path):
    r = run_cli(
        "export",
        "--adapters",
        str(lora_ckpt),
        "--merge_lora",
        "true",
        "--output_dir",
        str(tmp_path / "m"),
        "--push_to_hub",
        "true",
        "--hub_model_id",
        "someone/model",
        env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")},
    )
    errors = [ln for ln in r.stderr.splitlines() if "error:" in ln]
    assert r.returncode != 0 and len(errors) == 1 and "push to 'someone/model' failed" in errors[0]
    assert (tmp_path / "m" / "model.safetensors").is_file()  # the merge itself is kept


def test_export_errors_are_one_line(tiny_llama, tmp_path):
    r = run_cli("export", "--adapters", str(tiny_llama), "--merge_lora", "true")
    assert r.returncode != 0 and "is a full-weight checkpoint" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = run_cli("export", "--adapters", str(tmp_path / "nope"), "--merge_lora", "true")
    assert r.returncode != 0 and "no such folder" in r.stderr and "Traceback" not in r.stderr


def test_export_does_not_import_infer():
    import subprocess
    import sys

    code = "import sys, lmforge.export.merge; print(any(m.startswith('lmforge.infer') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
