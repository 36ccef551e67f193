"""`lmforge infer` and `lmforge export` driven as a user would: CLI subprocesses, pipes, files."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.infer.helpers import calculator_engine, train_calculator_lora

PROMPTS = ["What is 3 plus 3?", "Hello there", "Tell me a story", "你好", "List three colors"]


@pytest.fixture(scope="module")
def lora_ckpt(tmp_path_factory, tiny_llama) -> Path:
    return train_calculator_lora(tmp_path_factory.mktemp("lora"), tiny_llama)


def _prompt(engine, text: str) -> list[int]:
    return engine.frontend.prompt_ids([{"role": "user", "content": text}])


def test_interactive_through_a_pipe(lora_ckpt):
    script = "What is 1 plus 1?\nclear\nreset-system\nYou are a poet.\nWrite a line\nmulti-line\nfirst\nsecond#\nexit\n"
    r = run_cli("infer", "--adapters", str(lora_ckpt), "--max_new_tokens", "8", "--temperature", "0", input_text=script)
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout
    assert out.count(">>> ") == 3  # three questions answered
    assert "[history cleared]" in out and "[system prompt set; history cleared]" in out
    assert "multi-line: end your input with #" in out


def test_batch_mode_fields_metric_and_load_data_args(lora_ckpt, tmp_path, capsys):
    from lmforge import cli

    val = tmp_path / "val.jsonl"
    val.write_text("".join(json.dumps({"query": p, "response": "42"}) + "\n" for p in PROMPTS))
    res = tmp_path / "res.jsonl"
    # in-process (the CLI entry point, without two more interpreter + torch starts)
    argv = ["infer", "--adapters", str(lora_ckpt), "--val_dataset", str(val), "--max_batch_size", "4"]
    code = cli.main([*argv, "--max_new_tokens", "8", "--metric", "acc", "--result_path", str(res)])
    out = capsys.readouterr()
    assert code == 0, out.err[-2000:]
    rows = [json.loads(x) for x in res.read_text().splitlines()]
    assert len(rows) == 5 and all({"response", "labels", "messages"} <= set(x) for x in rows)
    assert rows[0]["labels"] == "42" and rows[0]["messages"][-1]["role"] == "assistant"
    assert "acc: " in out.out
    argv = ["infer", "--adapters", str(lora_ckpt), "--load_data_args", "true", "--metric", "rouge"]
    code = cli.main([*argv, "--max_new_tokens", "4"])
    out = capsys.readouterr()
    assert code == 0, out.err[-2000:]
    written = list((lora_ckpt / "infer_result").glob("*.jsonl"))
    assert written and len(written[0].read_text().splitlines()) == 6  # 20% of 30 rows carved for validation
    assert "rouge: " in out.out


def test_load_args_restores_system_and_template(lora_ckpt, tmp_path):
    from lmforge.args import DataArgs, ModelArgs, TemplateArgs, TunerArgs
    from lmforge.args.groups import GenerationArgs, InferArgs
    from lmforge.args.parser import Args
    from lmforge.runargs import resolve_model

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
    r = resolve_model(a, True)
    assert r.template_args.system == "You are a calculator." and r.template_args.template == "auto"
    assert r.model.endswith("tiny-llama0") and r.tokenizer_dir == str(lora_ckpt)
    assert a.template.system is None and a.model.model is None  # the parsed flags are never written
    b = make(explicit=("system",))
    assert resolve_model(b, True).template_args.system == "override"  # explicit flags win
    c = resolve_model(make(), False)
    assert c.template_args.system is None and c.model is None
    assert c.saved is not None and c.saved.stage == "sft"  # still read (for --load_data_args), not applied


def test_full_checkpoint_as_adapters_is_a_clear_error(tiny_llama):
    r = run_cli("infer", "--adapters", str(tiny_llama))
    assert r.returncode != 0 and "is a full-weight checkpoint" in r.stderr and f"--model {tiny_llama}" in r.stderr


def test_streaming_yields_before_generation_ends(lora_ckpt, tiny_llama):
    from lmforge.infer.engine import SamplingConfig

    engine = calculator_engine(tiny_llama, [str(lora_ckpt)], lora_ckpt)
    cfg = SamplingConfig(max_new_tokens=300)
    prompt = _prompt(engine, "Tell me a story")
    t0 = time.perf_counter()
    it = engine.stream(prompt, cfg)
    first = next(it)
    t_first = time.perf_counter() - t0
    rest = list(it)
    t_all = time.perf_counter() - t0
    assert first.token_id is not None and t_first < t_all / 3
    whole = engine.generate([prompt], cfg)[0]
    assert first.text + "".join(e.text for e in rest) == whole.text
    assert [first.token_id, *(e.token_id for e in rest if e.token_id is not None)] == whole.token_ids
    assert rest[-1].finish_reason == whole.finish_reason


def test_closing_a_stream_stops_generation(lora_ckpt, tiny_llama):
    from lmforge.infer.engine import SamplingConfig

    engine = calculator_engine(tiny_llama, [str(lora_ckpt)], lora_ckpt)
    prompt = _prompt(engine, "story")
    t0 = time.perf_counter()
    full = list(engine.stream(prompt, SamplingConfig(max_new_tokens=400)))
    t_full = time.perf_counter() - t0
    it = engine.stream(prompt, SamplingConfig(max_new_tokens=400))
    t0 = time.perf_counter()
    next(it)
    it.close()  # what a disconnecting client does
    short = engine.generate([prompt], SamplingConfig(max_new_tokens=2))  # the model is free again at once
    assert time.perf_counter() - t0 < t_full / 2 and full and short[0].completion_tokens == 2


def test_infer_merge_lora(lora_ckpt, capsys, monkeypatch):
    import io

    from lmforge import cli

    monkeypatch.setattr("sys.stdin", io.StringIO("hi\n"))  # in-process: one interpreter + torch start less
    argv = ["infer", "--adapters", str(lora_ckpt), "--merge_lora", "true", "--max_new_tokens", "3"]
    code = cli.main([*argv, "--stream", "false"])
    out = capsys.readouterr()
    assert code == 0 and ">>> " in out.out, out.err[-2000:]
    merged = Path(str(lora_ckpt) + "-merged")
    assert (merged / "model.safetensors").is_file() and (merged / "args.json").is_file()
