"""Quantized and GGUF exports of the embedded default model (SmolLM2-135M-Instruct) through the CLI, with each
export's own quality report collected into one table (markdown on stdout, JSON with --json PATH).

Run: .venv/bin/python bench/quant_export.py [--only bnb4,q8_0,...] [--json bench/results/quant-export.json]
GPTQ runs where gptqmodel + optimum import (their own venv: /path/to/gptq-venv/bin/python bench/quant_export.py
--only gptq4). q4_k_m runs where llama-cpp-python imports.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CALIB = ["--quant_n_samples", "16"]  # the built-in instruct set has 24 rows: 16 calibrate, 8 are held out
EXPORTS = {
    "f16": ["--to_gguf", "true", "--gguf_type", "f16"],
    "q8_0": ["--to_gguf", "true", "--gguf_type", "q8_0"],
    "q4_k_m": ["--to_gguf", "true", "--gguf_type", "q4_k_m"],
    "bnb8": ["--quant_method", "bnb", "--quant_bits", "8"],
    "bnb4": ["--quant_method", "bnb", "--quant_bits", "4"],
    "gptq4": ["--quant_method", "gptq", "--quant_bits", "4", "--group_size", "64", *CALIB],
}
NEEDS = {"q4_k_m": ("llama_cpp",), "gptq4": ("gptqmodel", "optimum")}


def run(name: str, flags: list[str], tmp: Path) -> dict | None:
    missing = [m for m in NEEDS.get(name, ()) if importlib.util.find_spec(m) is None]
    if missing:
        print(f"{name}: skipped ({', '.join(missing)} not importable)", file=sys.stderr)
        return None
    out = tmp / name
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "lmforge", "export", *flags, "--output_dir", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "GPTQMODEL_CPU_WORKERS": "2"})
    if r.returncode != 0:
        print(f"{name}: failed: {r.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    rep = json.loads((out / "quant_report.json").read_text())
    rep["wall_seconds"] = time.perf_counter() - t0
    return rep


def table(reports: dict[str, dict]) -> str:
    rows = [
        "| export | read back by | ppl before | ppl after | top-1 agree | mean abs drift | MB before | MB after "
        "| export s | check s | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in reports.items():
        p, s = r["perplexity"], r["size_bytes"]
        rows.append(
            f"| {name.split(' via ')[0]} | {r.get('reader', 'transformers')} | {p['before']:.3f} | {p['after']:.3f} | "
            f"{r['top1_agreement']:.3f} | "
            f"{r['mean_logit_drift']:.4f} | {s['before'] / 1e6:.0f} | {s['after'] / 1e6:.0f} | "
            f"{r['seconds']['export']:.1f} | {r['seconds']['check']:.1f} | {r['wall_seconds']:.0f} |"
        )
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default=",".join(EXPORTS))
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    reports = {}
    with tempfile.TemporaryDirectory(prefix="lmforge-quant-bench-") as tmp:
        for name in a.only.split(","):
            rep = run(name, EXPORTS[name], Path(tmp))
            if rep is not None:
                reports[f"{name} via {rep.get('reader', 'transformers')}"] = rep  # a GGUF may be read both ways
                print(f"{name}: done in {rep['wall_seconds']:.0f} s", file=sys.stderr)
    if a.json:  # rows already in the file are kept: one export can be rerun with --only
        path = Path(a.json)
        reports = {**(json.loads(path.read_text()) if path.is_file() else {}), **reports}
        path.write_text(json.dumps(reports, indent=2, ensure_ascii=False) + "\n")
    print(table(reports))


if __name__ == "__main__":
    main()
