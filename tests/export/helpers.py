"""LoRA trained on a quantized model (a GPTQ/AWQ export, or EETQ loading) and loaded back for infer, as a user runs
both: shared by the GPTQ test (its own venv) and the GPU tests."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import run_cli
from tests.train.helpers import SHORT_RUN, only_run, train_losses, write_sft_data


def lora_trains_and_answers(model: Path, tmp: Path, *flags: str) -> list[str]:
    """`lmforge sft --model MODEL --train_type lora` (2 steps), then the engine with the adapter answers; returns
    the class names of the layers LoRA wrapped (the quantized linears, not plain nn.Linear)."""
    from lmforge.infer.engine import SamplingConfig
    from lmforge.infer.engines import load_engine

    data = write_sft_data(tmp / "train.jsonl", n=8)
    train = ["--model", str(model), "--train_type", "lora", "--dataset", str(data), "--learning_rate", "1e-2"]
    r = run_cli("sft", *train, *flags, *SHORT_RUN, "--output_dir", str(tmp / "run"))
    assert r.returncode == 0, r.stderr[-2000:]
    run = only_run(tmp / "run")
    assert len(train_losses(run)) == 2
    engine = load_engine(model, base_adapters=[str(run / "checkpoint-2")], dtype="float32")
    wrapped = [type(m.base_layer).__name__ for m in engine.model.modules() if hasattr(m, "lora_A")]
    answer = engine.chat([[{"role": "user", "content": "What is 2 plus 2?"}]], SamplingConfig(max_new_tokens=4))
    assert wrapped and answer[0].token_ids, wrapped
    return wrapped
