"""`lmforge infer` and `lmforge export` driven as a user would: CLI subprocesses, pipes, files."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import run_cli
from tests.train.helpers import only_run, write_sft_data

PROMPTS = ["What is 3 plus 3?", "Hello there", "Tell me a story", "你好", "List three colors"]


@pytest.fixture(scope="module")
def lora_ckpt(tmp_path_factory, tiny_llama) -> Path:
    """A LoRA trained through the CLI, with B matrices far from 0 (high lr), and a carved validation split."""
    tmp = tmp_path_factory.mktemp("lora")
    data = write_sft_data(tmp / "train.jsonl", n=30)
    r = run_cli(
        "sft",
        "--model",
        str(tiny_llama),
        "--dataset",
        str(data),
        "--max_steps",
        "6",
        "--learning_rate",
        "5e-2",
        "--per_device_train_batch_size",
        "2",
        "--gradient_accumulation_steps",
        "1",
        "--save_steps",
        "6",
        "--split_dataset_ratio",
        "0.2",
        "--system",
        "You are a calculator.",
        "--torch_dtype",
        "float32",
        "--output_dir",
        str(tmp / "out"),
    )
    assert r.returncode == 0, r.stderr[-2000:]
    return only_run(tmp / "out") / "checkpoint-6"


def _engine(model_dir: Path, adapters: list[str], tokenizer_dir: Path | None = None):
    from lmforge.args import ModelArgs, TemplateArgs
    from lmforge.infer.engine import PtEngine
    from lmforge.infer.generate import load_for_inference
    from lmforge.models.setup import setup_tokenizer

    setup = setup_tokenizer(
        ModelArgs(model=str(model_dir)), TemplateArgs(system="You are a calculator."), tokenizer_dir
    )
    return PtEngine(load_for_inference(model_dir, adapters, torch.float32), setup.template, max_batch_size=8)


def test_export_merge_equals_adapter(lora_ckpt, tiny_llama, tmp_path):
    from lmforge.infer.engine import SamplingConfig

    out = tmp_path / "merged"
    r = run_cli("export", "--adapters", str(lora_ckpt), "--merge_lora", "true", "--output_dir", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    for f in ("config.json", "model.safetensors", "tokenizer_config.json", "generation_config.json", "args.json"):
        assert (out / f).is_file(), f
    assert json.loads((out / "generation_config.json").read_text())["eos_token_id"] == [2]
    assert (out / "chat_template.jinja").is_file() or "chat_template" in (out / "tokenizer_config.json").read_text()
    again = run_cli("export", "--adapters", str(lora_ckpt), "--merge_lora", "true", "--output_dir", str(out))
    assert again.returncode != 0 and "already exists" in again.stderr

    base = _engine(tiny_llama, [str(lora_ckpt)], lora_ckpt)
    merged = _engine(out, [])
    ids = torch.tensor([base.template.prompt_ids([{"role": "user", "content": PROMPTS[0]}])])
    with torch.inference_mode():
        diff = (base.model(ids).logits - merged.model(ids).logits).abs().max().item()
        lora_effect = (base.model(ids).logits - _engine(tiny_llama, []).model(ids).logits).abs().max().item()
    assert diff <= 1e-4 and lora_effect > 1e-3  # equal to the adapter, and the adapter does change the model
    cfg = SamplingConfig(max_new_tokens=12)
    convs = [[{"role": "user", "content": p}] for p in PROMPTS]
    assert [c.text for c in base.generate(convs, cfg)] == [c.text for c in merged.generate(convs, cfg)]


def test_interactive_through_a_pipe(lora_ckpt):
    script = "What is 1 plus 1?\nclear\nreset-system\nYou are a poet.\nWrite a line\nmulti-line\nfirst\nsecond#\nexit\n"
    r = run_cli("infer", "--adapters", str(lora_ckpt), "--max_new_tokens", "8", "--temperature", "0", input_text=script)
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout
    assert out.count(">>> ") == 3  # three questions answered
    assert "[history cleared]" in out and "[system prompt set; history cleared]" in out
    assert "multi-line: end your input with #" in out


def test_batch_mode_fields_metric_and_load_data_args(lora_ckpt, tmp_path):
    val = tmp_path / "val.jsonl"
    val.write_text("".join(json.dumps({"query": p, "response": "42"}) + "\n" for p in PROMPTS))
    res = tmp_path / "res.jsonl"
    r = run_cli(
        "infer",
        "--adapters",
        str(lora_ckpt),
        "--val_dataset",
        str(val),
        "--max_batch_size",
        "4",
        "--max_new_tokens",
        "8",
        "--metric",
        "acc",
        "--result_path",
        str(res),
    )
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [json.loads(x) for x in res.read_text().splitlines()]
    assert len(rows) == 5 and all({"response", "labels", "messages"} <= set(x) for x in rows)
    assert rows[0]["labels"] == "42" and rows[0]["messages"][-1]["role"] == "assistant"
    assert "acc: " in r.stdout
    r2 = run_cli(
        "infer", "--adapters", str(lora_ckpt), "--load_data_args", "true", "--metric", "rouge", "--max_new_tokens", "4"
    )
    assert r2.returncode == 0, r2.stderr[-2000:]
    written = list((lora_ckpt / "infer_result").glob("*.jsonl"))
    assert written and len(written[0].read_text().splitlines()) == 6  # 20% of 30 rows carved for validation
    assert "rouge: " in r2.stdout


def test_load_args_restores_system_and_template(lora_ckpt, tmp_path):
    from lmforge.args import DataArgs, ModelArgs, TemplateArgs, TunerArgs
    from lmforge.args.groups import GenerationArgs, InferArgs
    from lmforge.args.parser import Args
    from lmforge.infer.restore import restore_args

    def make(explicit=()):
        return Args(
            {
                "model": ModelArgs(),
                "template": TemplateArgs(system="override" if explicit else None),
                "data": DataArgs(),
                "tuner": TunerArgs(adapters=[str(lora_ckpt)]),
                "generation": GenerationArgs(),
                "infer": InferArgs(),
            },
            set(explicit),
        )

    a = make()
    restore_args(a, True)
    assert a.template.system == "You are a calculator." and a.template.template == "auto"
    assert a.model.model.endswith("tiny-llama0")
    b = make(explicit=("system",))
    restore_args(b, True)
    assert b.template.system == "override"  # explicit flags win
    c = make()
    restore_args(c, False)
    assert c.template.system is None and c.model.model is None


def test_full_checkpoint_as_adapters_is_a_clear_error(tiny_llama):
    r = run_cli("infer", "--adapters", str(tiny_llama))
    assert r.returncode != 0 and "is a full-weight checkpoint" in r.stderr and f"--model {tiny_llama}" in r.stderr


def test_streaming_yields_before_generation_ends(lora_ckpt, tiny_llama):
    from lmforge.infer.engine import SamplingConfig

    engine = _engine(tiny_llama, [str(lora_ckpt)], lora_ckpt)
    cfg = SamplingConfig(max_new_tokens=300)
    cfg_full = SamplingConfig(max_new_tokens=300)
    t0 = time.perf_counter()
    it = engine.stream([{"role": "user", "content": "Tell me a story"}], cfg)
    first = next(it)
    t_first = time.perf_counter() - t0
    rest = "".join(it)
    t_all = time.perf_counter() - t0
    assert first and t_first < t_all / 3
    assert first + rest == engine.generate([[{"role": "user", "content": "Tell me a story"}]], cfg_full)[0].text


def test_other_backends_say_what_is_missing(lora_ckpt):
    r = run_cli("infer", "--adapters", str(lora_ckpt), "--infer_backend", "vllm")
    assert r.returncode != 0 and "--infer_backend vllm needs" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_closing_a_stream_stops_generation(lora_ckpt, tiny_llama):
    from lmforge.infer.engine import SamplingConfig

    engine = _engine(tiny_llama, [str(lora_ckpt)], lora_ckpt)
    t0 = time.perf_counter()
    full = "".join(engine.stream([{"role": "user", "content": "story"}], SamplingConfig(max_new_tokens=400)))
    t_full = time.perf_counter() - t0
    it = engine.stream([{"role": "user", "content": "story"}], SamplingConfig(max_new_tokens=400))
    t0 = time.perf_counter()
    next(it)
    it.close()  # what a disconnecting client does
    assert time.perf_counter() - t0 < t_full / 2 and full
    assert engine._lock.acquire(timeout=1)  # the model is free again
    engine._lock.release()


def test_infer_merge_lora_and_push_offline(lora_ckpt, tmp_path):
    r = run_cli(
        "infer",
        "--adapters",
        str(lora_ckpt),
        "--merge_lora",
        "true",
        "--max_new_tokens",
        "3",
        "--stream",
        "false",
        input_text="hi\n",
    )
    assert r.returncode == 0 and ">>> " in r.stdout, r.stderr[-2000:]
    merged = Path(str(lora_ckpt) + "-merged")
    assert (merged / "model.safetensors").is_file() and (merged / "args.json").is_file()
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
