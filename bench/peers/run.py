"""lmforge, ms-swift and LLaMA-Factory side by side on this machine: same model, same data, same jobs, tools
alternating so machine drift hits all of them alike.

Run: make bench-peers   (or: .venv/bin/python bench/peers/run.py [--rounds N] [--tools ...] [--jobs ...])
Needs bench/peers/setup.sh first (make bench-peers does it). Writes bench/results/<date>-<host>.json and prints
a markdown table with the lmforge/peer ratios.

How each figure is measured (identically for every tool):
- every command runs under /usr/bin/time -v (wall time, peak RSS) with its output read line by line and stamped;
  a step is done when the tool's progress bar first shows "N/20";
- tokens/s = real (non-padding) tokens of the steady steps (2..20) / their wall time. The tokens are 19 x 2 x the
  mean real length of the 200 rows (all three tools encode them to the same ids; each samples its own 40 rows, so
  this is an estimate good to ~3%, the same estimate for every tool);
- first_step_s = launch to the end of step 1; final_loss = the tool's own last logged loss.
"Fastest" settings, the same for every tool: gradient checkpointing off and LoRA dropout 0 (LLaMA-Factory's default;
dropout masks cost ~15% of a CPU step even with lmforge's cheaper masks).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
PEERS = ROOT / "bench" / ".peers"
WORK = PEERS / "work"
STEPS = 20
SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face."
BIN = {
    "lmforge": PEERS / "venv-lmforge" / "bin",  # installed as a user would (setup.sh), not the dev .venv
    "ms-swift": PEERS / "venv-swift" / "bin",
    "llamafactory": PEERS / "venv-lf" / "bin",
}
# the offline settings and in-tree caches recorded in shared/reference/peers-on-cpu.md (E6, E13, E14)
ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "MODELSCOPE_OFFLINE": "1",
    "USE_MODELSCOPE_HUB": "0",
    "USE_HF": "1",
    "DISABLE_VERSION_CHECK": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "GRADIO_ANALYTICS_ENABLED": "False",
}
COMMON = dict(rank=8, alpha=32, lr=1e-4, batch=2, max_length=512, seed=42)


def env_for(tool: str) -> dict[str, str]:
    cache = WORK / "cache" / tool
    extra = {k: str(cache / k.lower()) for k in ("HF_HOME", "HF_DATASETS_CACHE", "MODELSCOPE_CACHE", "MPLCONFIGDIR")}
    (cache / "tmp").mkdir(parents=True, exist_ok=True)
    return {**os.environ, **ENV, **extra, "TMPDIR": str(cache / "tmp"), "XDG_CACHE_HOME": str(cache / "xdg")}


# -- the jobs, per tool -----------------------------------------------------------------------------------------
def sft_command(tool: str, model: Path, data: Path, out: Path, fastest: bool) -> list[str]:
    c = COMMON
    if tool == "lmforge":
        return [
            str(BIN[tool] / "lmforge"), "sft", "--model", str(model), "--dataset", str(data / "train.jsonl"),
            "--system", SYSTEM, "--tuner_type", "lora", "--lora_rank", str(c["rank"]), "--lora_alpha",
            str(c["alpha"]), "--target_modules", "all-linear", "--learning_rate", str(c["lr"]),
            "--per_device_train_batch_size", str(c["batch"]), "--gradient_accumulation_steps", "1",
            "--max_length", str(c["max_length"]), "--max_steps", str(STEPS), "--logging_steps", "1",
            "--save_steps", str(STEPS), "--seed", str(c["seed"]), "--split_dataset_ratio", "0",
            "--output_dir", str(out), "--add_version", "false", *(["--lora_dropout", "0"] if fastest else []),
        ]  # fmt: skip
    if tool == "ms-swift":
        return [
            str(BIN[tool] / "swift"), "sft", "--model", str(model), "--model_type", "llama", "--template", "chatml",
            "--system", SYSTEM, "--check_model", "false", "--dataset", str(data / "train.jsonl"),
            "--tuner_type", "lora", "--lora_rank", str(c["rank"]), "--lora_alpha", str(c["alpha"]),
            "--target_modules", "all-linear", "--learning_rate", str(c["lr"]),
            "--per_device_train_batch_size", str(c["batch"]), "--gradient_accumulation_steps", "1",
            "--max_length", str(c["max_length"]), "--max_steps", str(STEPS), "--eval_strategy", "no",
            "--split_dataset_ratio", "0", "--logging_steps", "1", "--save_steps", str(STEPS),
            "--seed", str(c["seed"]), "--output_dir", str(out), "--add_version", "false",
            *(["--gradient_checkpointing", "false", "--lora_dropout", "0"] if fastest else []),
        ]  # fmt: skip
    cfg = {
        "model_name_or_path": str(model),
        "stage": "sft",
        "do_train": True,
        "finetuning_type": "lora",
        "lora_rank": c["rank"],
        "lora_alpha": c["alpha"],
        "lora_target": "all",
        "dataset": "smol_alpaca",
        "dataset_dir": str(data),
        "template": "smollm2",
        "cutoff_len": c["max_length"],
        "max_steps": STEPS,
        "per_device_train_batch_size": c["batch"],
        "gradient_accumulation_steps": 1,
        "learning_rate": c["lr"],
        "logging_steps": 1,
        "save_steps": STEPS,
        "seed": c["seed"],
        "output_dir": str(out),
        "overwrite_output_dir": True,
        "overwrite_cache": True,
        "report_to": "none",
        **({"disable_gradient_checkpointing": True} if fastest else {}),
    }
    path = out.parent / f"{out.name}.yaml"
    path.write_text(json.dumps(cfg))  # JSON is YAML
    return [str(BIN[tool] / "llamafactory-cli"), "train", str(path)]


def final_loss(tool: str, out: Path) -> float | None:
    name = {"lmforge": "logging.jsonl", "ms-swift": "logging.jsonl", "llamafactory": "trainer_log.jsonl"}[tool]
    path = out / name
    if not path.is_file():
        return None
    losses = [json.loads(x).get("loss") for x in path.read_text().splitlines() if x.strip()]
    losses = [v for v in losses if isinstance(v, (int, float))]
    return round(losses[-1], 4) if losses else None


def infer_command(tool: str, model: Path, data: Path, out: Path) -> list[str] | None:
    val = str(data / "val_messages.jsonl")
    if tool == "lmforge":
        return [
            str(BIN[tool] / "lmforge"), "infer", "--model", str(model), "--system", SYSTEM, "--val_dataset", val,
            "--max_new_tokens", "64", "--temperature", "0", "--max_batch_size", "16",
            "--result_path", str(out / "result.jsonl"),
        ]  # fmt: skip
    if tool == "ms-swift":  # its PyTorch backend at its default batch size
        return [
            str(BIN[tool] / "swift"), "infer", "--model", str(model), "--model_type", "llama", "--template", "chatml",
            "--system", SYSTEM, "--val_dataset", val, "--max_new_tokens", "64", "--temperature", "0",
            "--infer_backend", "transformers", "--result_path", str(out / "result.jsonl"),
        ]  # fmt: skip
    return None


def infer_tokens_per_s(tool: str, log: str) -> float | None:
    pattern = {"lmforge": r"([\d.]+) tokens/s \(--max_batch_size", "ms-swift": r"'tokens/s': ([\d.]+)"}.get(tool)
    found = re.findall(pattern, log) if pattern else []
    return float(found[-1]) if found else None


# time to first streamed token (model loaded, median of 4 prompts after a warm-up), run in each tool's own venv
TTFT = {"lmforge": HERE / "ttft_lmforge.py", "ms-swift": HERE / "ttft_swift.py"}


# -- running and measuring ----------------------------------------------------------------------------------------
def timed(cmd: list[str], env: dict[str, str], log: Path) -> dict:
    """Run under /usr/bin/time -v; stamp every output line (tqdm's \\r updates too). Returns figures + the log."""
    tfile = log.with_suffix(".time")
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        ["/usr/bin/time", "-v", "-o", str(tfile), *cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env
    )
    steps: dict[int, float] = {}
    lines: list[str] = []
    buf = b""
    assert proc.stdout is not None
    while chunk := proc.stdout.read1(4096):
        buf += chunk
        *done, buf = re.split(rb"[\r\n]", buf)
        now = time.perf_counter() - t0
        for raw in done:
            text = raw.decode("utf-8", "replace")
            lines.append(f"{now:8.2f} {text}")
            for m in re.finditer(rf"\b(\d+)/{STEPS} \[", text):
                steps.setdefault(int(m.group(1)), now)
    rc = proc.wait()
    wall = time.perf_counter() - t0
    log.write_text("\n".join(lines) + "\n")
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", tfile.read_text())
    return {"rc": rc, "wall_s": round(wall, 2), "steps": steps, "rss_mb": int(rss.group(1)) // 1024 if rss else None}


def mean_row_tokens(model: Path, data: Path) -> float:
    """Mean real tokens per training row, rendered with the shared template (lmforge's encoder)."""
    sys.path.insert(0, str(ROOT / "src"))
    from lmforge.args import ModelArgs, TemplateArgs
    from lmforge.models.setup import setup_tokenizer

    setup = setup_tokenizer(ModelArgs(model=str(model)), TemplateArgs(system=SYSTEM))
    rows = [json.loads(x) for x in (data / "train.jsonl").read_text().splitlines()]
    lengths = []
    for r in rows:
        query = r["instruction"] + ("\n" + r["input"] if r["input"] else "")
        conv = [{"role": "user", "content": query}, {"role": "assistant", "content": r["output"]}]
        lengths.append(len(setup.template.encode(conv).input_ids))
    return statistics.mean(lengths)


def run_sft(tool: str, job: str, model: Path, data: Path, row_tokens: float, n: int) -> dict:
    out = WORK / f"{tool}-{job}-{n}"
    subprocess.run(["rm", "-rf", str(out)], check=True)
    out.mkdir(parents=True)
    r = timed(sft_command(tool, model, data, out, job.endswith("fastest")), env_for(tool), out.with_suffix(".log"))
    s = r["steps"]
    ok = r["rc"] == 0 and 1 in s and STEPS in s
    steady = (s[STEPS] - s[1]) if ok else None
    return {
        "tool": tool,
        "job": job,
        "tokens_per_s": round((STEPS - 1) * COMMON["batch"] * row_tokens / steady, 1) if steady else None,
        "wall_s": r["wall_s"],
        "first_step_s": round(s[1], 2) if 1 in s else None,
        "peak_rss_mb": r["rss_mb"],
        "final_loss": final_loss(tool, out),
        "ttft_s": None,
        "log": str(out.with_suffix(".log").relative_to(ROOT)),
        **({} if r["rc"] == 0 else {"error": f"exit {r['rc']}, see the log"}),
    }


def run_infer(tool: str, model: Path, data: Path, n: int) -> dict | None:
    out = WORK / f"{tool}-infer-{n}"
    cmd = infer_command(tool, model, data, out)
    if cmd is None:
        return None
    subprocess.run(["rm", "-rf", str(out)], check=True)
    out.mkdir(parents=True)
    r = timed(cmd, env_for(tool), out.with_suffix(".log"))
    log = out.with_suffix(".log").read_text()
    ttft = None
    if tool in TTFT:
        p = subprocess.run(
            [str(BIN[tool] / "python"), str(TTFT[tool]), str(model), SYSTEM],
            capture_output=True, text=True, env=env_for(tool),
        )  # fmt: skip
        found = re.findall(r"TTFT ([\d.]+)", p.stdout)
        ttft = round(float(found[-1]), 3) if found else None
    return {
        "tool": tool,
        "job": "infer-batch16",
        "tokens_per_s": infer_tokens_per_s(tool, log),
        "wall_s": r["wall_s"],
        "first_step_s": None,
        "peak_rss_mb": r["rss_mb"],
        "final_loss": None,
        "ttft_s": ttft,
        "log": str(out.with_suffix(".log").relative_to(ROOT)),
    }


def run_help(tool: str) -> dict:
    exe = {"lmforge": "lmforge", "ms-swift": "swift", "llamafactory": "llamafactory-cli"}[tool]
    walls = []
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run([str(BIN[tool] / exe), "--help"], capture_output=True, env=env_for(tool))
        walls.append(time.perf_counter() - t0)
    keys = ("tokens_per_s", "first_step_s", "peak_rss_mb", "final_loss", "ttft_s")
    return {"tool": tool, "job": "help", "wall_s": round(statistics.median(walls), 3), **dict.fromkeys(keys)}


def matmul_peak() -> dict[str, float]:
    """Best GFLOP/s of torch matmuls at the default model's shapes (300 tokens), fp32 and bf16."""
    import torch

    shapes = [(300, 576, 1536), (300, 1536, 576), (300, 576, 576), (300, 576, 49152)]
    peak = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        best = 0.0
        for m, k, n in shapes:
            a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
            for _ in range(3):
                a @ b
            reps = max(3, int(2e10 / (2 * m * k * n)))
            t0 = time.perf_counter()
            for _ in range(reps):
                a @ b
            best = max(best, 2 * m * k * n * reps / (time.perf_counter() - t0) / 1e9)
        peak[name] = round(best, 1)
    return peak


def matmul_params(model: Path) -> int:
    """Parameters that take part in matmuls (every linear layer and the output layer), for MFU."""
    c = json.loads((model / "config.json").read_text())
    h, inter, layers, vocab = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"], c["vocab_size"]
    head = c.get("head_dim") or h // c["num_attention_heads"]
    attn = h * head * (2 * c["num_attention_heads"] + 2 * c["num_key_value_heads"])
    return layers * (attn + 3 * h * inter) + vocab * h


def prepare() -> tuple[Path, Path]:
    sys.path.insert(0, str(ROOT / "src"))
    from lmforge.models.loader import resolve_model_dir

    data = WORK / "data"
    subprocess.run([sys.executable, str(HERE / "make_data.py"), str(data)], check=True)
    return resolve_model_dir(None), data


def table(runs: list[dict], peak: dict[str, float], n_params: int) -> str:
    by = {}
    for r in runs:
        by.setdefault((r["job"], r["tool"]), []).append(r)

    def med(job: str, tool: str, key: str) -> float | None:
        vals = [r[key] for r in by.get((job, tool), []) if r.get(key) is not None]
        return statistics.median(vals) if vals else None

    lines = [
        "| job | figure | lmforge | ms-swift | LLaMA-Factory | lmforge/ms-swift | lmforge/LLaMA-Factory |",
        "|---|---|---|---|---|---|---|",
    ]
    figures = {
        "sft-lora-default": ("tokens_per_s", "wall_s", "first_step_s", "peak_rss_mb", "final_loss"),
        "sft-lora-fastest": ("tokens_per_s", "wall_s", "first_step_s", "peak_rss_mb", "final_loss"),
        "infer-batch16": ("tokens_per_s", "ttft_s", "wall_s", "peak_rss_mb"),
        "help": ("wall_s",),
    }
    for job, keys in figures.items():
        for key in keys:
            vals = [med(job, t, key) for t in ("lmforge", "ms-swift", "llamafactory")]
            if all(v is None for v in vals):
                continue
            ratios = [f"{vals[0] / v:.2f}x" if vals[0] and v else "-" for v in vals[1:]]
            if key == "final_loss":  # compared for being in the same range, not as a speed ratio
                ratios = ["", ""]
            cells = ["-" if v is None else f"{v:g}" for v in vals]
            lines.append(f"| {job} | {key} | {' | '.join(cells)} | {' | '.join(ratios)} |")
    for job in ("sft-lora-default", "sft-lora-fastest"):
        mfu = []
        for tool, dtype in (("lmforge", "bf16"), ("ms-swift", "fp32"), ("llamafactory", "fp32")):
            tps = med(job, tool, "tokens_per_s")
            mfu.append(f"{100 * tps * 4 * n_params / 1e9 / peak[dtype]:.0f}% ({dtype})" if tps else "-")
        lines.append(f"| {job} | MFU (4N/token) | {' | '.join(mfu)} | | |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--tools", nargs="+", default=["lmforge", "ms-swift", "llamafactory"])
    p.add_argument("--jobs", nargs="+", default=["sft-lora-default", "sft-lora-fastest", "infer-batch16", "help"])
    a = p.parse_args()
    missing = [t for t in a.tools if not (BIN[t] / "python").exists()]
    if missing:
        sys.exit(f"not installed: {', '.join(missing)}; run bash bench/peers/setup.sh (make bench-peers does)")
    model, data = prepare()
    row_tokens = mean_row_tokens(model, data)
    peak = matmul_peak()
    print(f"model {model}\nmean real tokens per row {row_tokens:.1f}; matmul peak GFLOP/s {peak}", flush=True)
    runs: list[dict] = []
    for n in range(a.rounds):
        for job in a.jobs:
            order = a.tools if n % 2 == 0 else a.tools[::-1]  # alternate so drift hits every tool alike
            for tool in order:
                if job == "help":
                    r = run_help(tool)
                elif job == "infer-batch16":
                    r = run_infer(tool, model, data, n)
                else:
                    r = run_sft(tool, job, model, data, row_tokens, n)
                if r is not None:
                    runs.append(r)
                    print(json.dumps(r), flush=True)
    n_params = matmul_params(model)
    result = {
        "date": dt.date.today().isoformat(),
        "machine": f"{socket.gethostname()}: {os.cpu_count()} CPUs",
        "matmul_peak_gflops": peak,
        "matmul_params": n_params,
        "mean_row_tokens": round(row_tokens, 1),
        "runs": runs,
    }
    out = ROOT / "bench" / "results" / f"{result['date']}-{socket.gethostname()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{table(runs, peak, n_params)}\n\nwritten: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
