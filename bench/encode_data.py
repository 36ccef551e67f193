"""Data benchmark: convert + encode 50k synthetic alpaca rows with the default model's tokenizer.

Prints rows/s for --dataset_num_proc 1 and 2, each run twice: the second run of a setting reads the datasets cache.
Run: .venv/bin/python bench/encode_data.py [--rows 50000]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path


def make_rows(path: Path, n: int) -> None:
    rng = random.Random(0)
    words = "the model learns to answer questions about data tokens training speed memory layers".split()
    with path.open("w") as f:
        for i in range(n):
            f.write(
                json.dumps(
                    {
                        "instruction": f"Task {i}: " + " ".join(rng.choices(words, k=rng.randint(8, 30))),
                        "input": "" if i % 3 else " ".join(rng.choices(words, k=10)),
                        "output": " ".join(rng.choices(words, k=rng.randint(20, 120))),
                    }
                )
                + "\n"
            )


def run(path: Path, num_proc: int, cache_dir: Path) -> float:
    import datasets

    from lmforge.args import DataArgs, ModelArgs, TemplateArgs
    from lmforge.data.pipeline import encode_rows, load_data
    from lmforge.models.setup import setup_tokenizer

    datasets.config.HF_DATASETS_CACHE = str(cache_dir)
    setup = setup_tokenizer(ModelArgs(), TemplateArgs())
    t0 = time.perf_counter()
    bundle = load_data(DataArgs(dataset=[str(path)], dataset_num_proc=num_proc, dataset_shuffle=False))
    enc = encode_rows(bundle.train, setup.template, "sft", num_proc=num_proc)
    assert len(enc) == sum(1 for _ in path.open())
    return len(enc) / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=50_000)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"alpaca-{a.rows}.jsonl"
        make_rows(path, a.rows)
        print(f"{a.rows} synthetic alpaca rows, SmolLM2 tokenizer")
        for num_proc in (1, 2):
            cache = Path(tmp) / f"cache-{num_proc}"
            cold = run(path, num_proc, cache)
            warm = run(path, num_proc, cache)
            print(f"--dataset_num_proc {num_proc}: {cold:,.0f} rows/s cold, {warm:,.0f} rows/s from cache")


if __name__ == "__main__":
    main()
