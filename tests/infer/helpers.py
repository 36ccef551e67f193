"""A LoRA checkpoint trained through the CLI, shared by the infer and export tests."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import run_cli
from tests.train.helpers import only_run, write_sft_data


def train_calculator_lora(tmp: Path, tiny_llama: Path) -> Path:
    """B matrices far from 0 (high lr), a system prompt, and a carved validation split."""
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


def calculator_engine(model_dir: Path, adapters: list[str], tokenizer_dir: Path | None = None):  # noqa: ANN201
    """The PyTorch engine on `model_dir` + adapters, fp32, with the calculator system prompt the LoRA learnt."""
    from lmforge.args import TemplateArgs
    from lmforge.infer.engines import load_engine

    return load_engine(
        model_dir,
        base_adapters=adapters,
        dtype="float32",
        template_args=TemplateArgs(system="You are a calculator."),
        tokenizer_dir=tokenizer_dir,
        max_batch_size=8,
    )


def liven(engine):  # noqa: ANN001, ANN201
    """Scale a tiny random model's weights up in place: at init it answers greedily with newlines only."""
    import torch

    torch.manual_seed(1)
    with torch.no_grad():
        for p in engine.model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.3)
    return engine
