"""CPU training speed of the demo job on the embedded default model, in the settings that matter:
fp32 vs bf16 autocast, padded vs padding-free batches. Alternates settings across rounds so machine drift hits all.

Run: .venv/bin/python bench/train_speed.py [--steps 12] [--rounds 1]
Prints real (non-padding) tokens/s over the steady steps (the first logged step is warm-up and excluded).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

SETTINGS = {
    "fp32 padded": ["--torch_dtype", "float32"],
    "fp32 padding-free": ["--torch_dtype", "float32", "--padding_free", "true"],
    "bf16 padded": ["--torch_dtype", "bfloat16"],
    "bf16 padding-free": ["--torch_dtype", "bfloat16", "--padding_free", "true"],
}


def one_run(extra: list[str], steps: int) -> tuple[float, float]:
    from lmforge.cli import main

    with tempfile.TemporaryDirectory() as out:
        code = main(
            [
                "sft",
                "--dataset",
                "self-cognition",
                "lmforge-instruct-mini",
                "--model_name",
                "小锻",
                "lmforge-bot",
                "--model_author",
                "lmforge",
                "--per_device_train_batch_size",
                "4",
                "--gradient_accumulation_steps",
                "1",
                "--max_steps",
                str(steps),
                "--logging_steps",
                "1",
                "--save_steps",
                "100000",
                "--learning_rate",
                "1e-3",
                "--output_dir",
                out,
                "--add_version",
                "false",
                "--report_to",
                "none",
                *extra,
            ]
        )
        assert code == 0
        rows = [json.loads(x) for x in (Path(out) / "logging.jsonl").read_text().splitlines()]
    steady = [r for r in rows if "loss" in r and r["global_step"] > 1]
    return statistics.mean(r["tokens_per_second"] for r in steady), steady[-1]["loss"]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--rounds", type=int, default=1)
    a = p.parse_args()
    results: dict[str, list[tuple[float, float]]] = {k: [] for k in SETTINGS}
    for _ in range(a.rounds):
        for name, extra in SETTINGS.items():
            results[name].append(one_run(extra, a.steps))
    base = statistics.mean(t for t, _ in results["fp32 padded"])
    print("\n| setting | real tokens/s | vs fp32 padded | final loss |\n|---|---|---|---|")
    for name, vals in results.items():
        tps = statistics.mean(t for t, _ in vals)
        print(f"| {name} | {tps:.0f} | {tps / base:.2f}x | {statistics.mean(v for _, v in vals):.3f} |")


if __name__ == "__main__":
    main()
