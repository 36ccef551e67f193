"""`lmforge check --estimate true` against the measured peak RSS of the same training (LoRA, full, QLoRA nf4) on
the embedded default model and the benchmark's data (bench/peers/make_data.py), batch 2, 6 steps.

Run: .venv/bin/python bench/estimate_vs_rss.py   (prints one row per tuner: estimate, measured, error)
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LMFORGE = str(ROOT / ".venv" / "bin" / "lmforge")
SETTINGS = {
    "LoRA": ["--tuner_type", "lora"],
    "full": ["--tuner_type", "full"],
    "QLoRA nf4": ["--tuner_type", "lora", "--quant_method", "bnb", "--quant_bits", "4"],
}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, str(ROOT / "bench" / "peers" / "make_data.py"), tmp], check=True)
        common = ["--dataset", f"{tmp}/train.jsonl", "--per_device_train_batch_size", "2"]
        print("| tuner | estimate MB | measured peak RSS MB | estimate / measured |\n|---|---|---|---|")
        for name, flags in SETTINGS.items():
            check = subprocess.run(
                [LMFORGE, "check", *common, *flags, "--estimate", "true"], capture_output=True, text=True
            )
            est = float(re.search(r"peak memory ~([\d,]+) MB", check.stdout).group(1).replace(",", ""))
            train = [LMFORGE, "sft", *common, *flags, "--max_steps", "6", "--gradient_accumulation_steps", "1"]
            train += [
                "--save_steps",
                "100",
                "--split_dataset_ratio",
                "0",
                "--output_dir",
                f"{tmp}/out",
                "--report_to",
                "none",
            ]
            run = subprocess.run(["/usr/bin/time", "-f", "PEAK %M", *train], capture_output=True, text=True)
            peak = int(re.search(r"PEAK (\d+)", run.stderr).group(1)) / 1024
            print(f"| {name} | {est:,.0f} | {peak:,.0f} | {est / peak:.2f} |", flush=True)


if __name__ == "__main__":
    main()
