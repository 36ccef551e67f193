"""`lmforge check --estimate true`: parameter counts match what training builds; memory parts follow the flags."""

from __future__ import annotations

import re

import pytest

from tests.conftest import run_cli
from tests.train.helpers import SHORT_RUN, write_sft_data


def _estimate(out: str) -> dict[str, float]:
    found = dict(re.findall(r"(weights|gradients|optimizer|activations) ([\d,]+) MB", out))
    values = {k: float(v.replace(",", "")) for k, v in found.items()}
    total, trainable = re.search(r"parameters: ([\d,]+) \(([\d,]+) trainable", out).groups()
    values["total"], values["trainable"] = int(total.replace(",", "")), int(trainable.replace(",", ""))
    values["peak"] = float(re.search(r"peak memory ~([\d,]+) MB", out).group(1).replace(",", ""))
    return values


@pytest.mark.parametrize("tuner", ["lora", "full"])
def test_estimate_counts_what_training_trains(tmp_path, tiny_llama, tuner):
    data = write_sft_data(tmp_path / "d.jsonl")
    flags = ["--model", str(tiny_llama), "--dataset", str(data), "--tuner_type", tuner]
    check = run_cli("check", *flags, "--estimate", "true")
    assert check.returncode == 0, check.stderr[-2000:]
    est = _estimate(check.stdout)
    train = run_cli("sft", *flags, *SHORT_RUN, "--output_dir", str(tmp_path / "out"))
    assert train.returncode == 0, train.stderr[-2000:]
    trainable, total = re.search(r"trainable parameters: ([\d,]+) of ([\d,]+)", train.stdout).groups()
    assert est["trainable"] == int(trainable.replace(",", ""))
    assert est["total"] == int(total.replace(",", ""))
    assert "peak memory ~" in train.stdout  # shown before training starts too


def test_estimate_follows_tuner_quantisation_and_zero(smollm2_dir, monkeypatch):
    """On the default model's config (a weightless meta model: nothing is loaded)."""
    from lmforge.args import TrainArgs, TunerArgs
    from lmforge.estimate import estimate

    rows = [(200, 120), (180, 100)]

    def est(bf16: bool = True, batch: list = rows, **flags):
        tuner = TunerArgs(**{k: v for k, v in flags.items() if k != "deepspeed"})
        return estimate(smollm2_dir, tuner, TrainArgs(deepspeed=flags.get("deepspeed")), batch, bf16=bf16)

    lora, full = est(), est(tuner_type="full", bf16=False)
    assert lora.trainable_params == 2_442_240 and full.trainable_params == full.total_params == 134_515_008
    assert full.optimizer_mb == 8 * full.trainable_params / 2**20  # two fp32 AdamW moments
    assert full.gradients_mb == 4 * full.trainable_params / 2**20
    assert lora.optimizer_mb < full.optimizer_mb / 50
    q4 = est(quant_method="bnb", quant_bits=4)
    assert q4.weights_mb < lora.weights_mb < est(bf16=False).weights_mb
    monkeypatch.setenv("NPROC_PER_NODE", "2")
    z2, z3 = (
        est(tuner_type="full", bf16=False, deepspeed="zero2"),
        est(tuner_type="full", bf16=False, deepspeed="zero3"),
    )
    assert z2.optimizer_mb == z3.optimizer_mb == full.optimizer_mb / 2 and z2.gradients_mb == full.gradients_mb / 2
    assert z2.weights_mb == full.weights_mb and z3.weights_mb == full.weights_mb / 2
    assert est(batch=rows * 4).activations_mb > 3.5 * lora.activations_mb
