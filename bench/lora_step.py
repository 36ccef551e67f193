"""Paired timing of one LoRA training step on the embedded default model: lmforge's fused LoRA forward against
peft's own, alternated in one process on the same batch (this machine's speed drifts by +-15% between runs, so only
same-process ratios are trusted). The step is the one `lmforge sft` runs on CPU: bf16 frozen weights, fp32 LoRA under
bf16 autocast, per-sequence attention, output layer on trained positions, fused AdamW.

Run: .venv/bin/python bench/lora_step.py [--rows 2] [--rounds 6] [--lora_dropout 0.05] [--target_modules all-linear]
Needs bench/.peers/work/data (bench/peers/make_data.py) or any --dataset.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

DATA = Path(__file__).resolve().parent / ".peers" / "work" / "data" / "train.jsonl"


def build(a: argparse.Namespace):  # noqa: ANN201
    import tempfile

    import torch

    from lmforge.cli import COMMANDS, parse_flags
    from lmforge.train.collate import FlatCollator
    from lmforge.train.job import prepare
    from lmforge.train.loading import load_policy
    from lmforge.train.methods import get_method
    from lmforge.train.sft import encode

    flags = ["--dataset", a.dataset, "--lora_rank", "8", "--lora_alpha", "32", "--lora_dropout", str(a.lora_dropout)]
    flags += ["--output_dir", tempfile.mkdtemp(), "--gradient_checkpointing", "false"]
    args = parse_flags([*flags, "--target_modules", *a.target_modules], COMMANDS["sft"].groups)
    job = prepare(args, get_method("sft"))
    train_ds, _ = encode(job)
    model = load_policy(job, fast_paths=True)
    batch = FlatCollator()([train_ds[i] for i in range(a.rows)])
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, fused=True)
    return model, batch, opt, job.precision.autocast_bf16


def main() -> None:
    import torch

    p = argparse.ArgumentParser()
    p.add_argument("--dataset", default=str(DATA))
    p.add_argument("--rows", type=int, default=2)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--lora_dropout", type=float, default=0.05)
    p.add_argument("--target_modules", nargs="+", default=["all-linear"])
    a = p.parse_args()
    model, batch, opt, autocast = build(a)
    targets = batch["labels"][:, 1:]
    keep = (targets != -100).any(0).nonzero().flatten()

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], logits_to_keep=keep)
            kept = targets[:, keep].flatten()
            loss = torch.nn.functional.cross_entropy(out.logits.float().flatten(0, 1), kept, ignore_index=-100)
        loss.backward()
        opt.step()
        model.zero_grad()

    fused = {m: m.__dict__["forward"] for m in model.modules() if "forward" in m.__dict__}  # set by use_fused_lora
    variants = {"fused LoRA (lmforge)": True, "peft forward": False}
    times: dict[str, list[float]] = {v: [] for v in variants}
    for r in range(a.rounds + 1):
        for name, on in variants.items():
            for m, fwd in fused.items():
                if on:
                    m.forward = fwd
                else:
                    m.__dict__.pop("forward", None)
            t0 = time.perf_counter()
            step()
            step()
            if r:  # round 0 warms both up
                times[name].append((time.perf_counter() - t0) / 2)
    n = batch["input_ids"].numel()
    base = statistics.median(times["peft forward"])
    print(f"\n{len(fused)} fused layers, {n} tokens per step, median of {a.rounds} rounds")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:22s} {med * 1000:7.0f} ms/step {n / med:7.0f} tokens/s  {base / med:.2f}x")


if __name__ == "__main__":
    main()
