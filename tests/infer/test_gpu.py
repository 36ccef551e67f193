"""On a CUDA machine the engine puts the model and every input on the GPU (never runs in CI: `-m gpu`).

Run: scripts/gpu/engine_check.sh
"""

from __future__ import annotations

import json

import pytest
import torch

from lmforge.infer.engine import SamplingConfig
from tests.conftest import run_cli

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def cuda() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device visible")


def test_engine_puts_model_and_inputs_on_cuda(cuda, tiny_llama):
    from lmforge.infer.engines import load_engine

    engine = load_engine(tiny_llama, max_batch_size=4)
    assert engine.capabilities.device.startswith("cuda")
    assert {p.device.type for p in engine.model.parameters()} == {"cuda"}
    seen: list[str] = []

    def record(module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        seen.append(ids.device.type)

    hook = engine.model.register_forward_pre_hook(record, with_kwargs=True)
    try:
        prompts = [engine.frontend.prompt_ids([{"role": "user", "content": q}]) for q in ("hi", "what is 2+2?")]
        batched = engine.generate(prompts, SamplingConfig(max_new_tokens=6))
        single = [engine.generate([p], SamplingConfig(max_new_tokens=6))[0] for p in prompts]
        events = list(engine.stream(prompts[0], SamplingConfig(max_new_tokens=4, logprobs=1)))
        scores = engine.score(prompts, [c.token_ids or [2] for c in batched])
    finally:
        hook.remove()
    assert seen and set(seen) == {"cuda"}
    assert len(batched) == 2 and events[-1].finish_reason and len(scores) == 2
    assert [c.finish_reason for c in batched] == [c.finish_reason for c in single]


def test_infer_command_runs_on_cuda(cuda, tiny_llama, tmp_path):
    val = tmp_path / "val.jsonl"
    val.write_text("".join(json.dumps({"query": q, "response": "4"}) + "\n" for q in ("2+2?", "hello")))
    r = run_cli(
        "infer", "--model", str(tiny_llama), "--val_dataset", str(val), "--max_new_tokens", "4",
        "--max_batch_size", "2", "--result_path", str(tmp_path / "res.jsonl"),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert "on cuda" in r.stdout
