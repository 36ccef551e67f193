"""Small shared pieces for the training tests."""

from __future__ import annotations

import json
from pathlib import Path

SHORT_RUN = [
    "--max_steps",
    "2",
    "--per_device_train_batch_size",
    "2",
    "--gradient_accumulation_steps",
    "1",
    "--save_steps",
    "2",
    "--logging_steps",
    "1",
]  # two optimizer steps, one checkpoint at the end


def write_sft_data(path: Path, n: int = 24) -> Path:
    rows = [{"query": f"What is {i} plus {i}?", "response": f"{i} plus {i} is {2 * i}."} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def logs(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "logging.jsonl").read_text().splitlines()]


def train_losses(run_dir: Path) -> dict[int, float]:
    return {r["global_step"]: r["loss"] for r in logs(run_dir) if "loss" in r}


def only_run(output_dir: Path) -> Path:
    runs = [p for p in output_dir.iterdir() if p.is_dir() and p.name.startswith("v")]
    assert len(runs) == 1, runs
    return runs[0]
