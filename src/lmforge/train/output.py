"""ms-swift's output layout: `<output_dir>/vN-YYYYmmdd-HHMMSS/` with args.json, logging.jsonl, images/, runs/ and
checkpoint-N/ folders."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from pathlib import Path
from typing import Any

from lmforge.errors import writing
from lmforge.train.ranks import is_rank_zero


def make_run_dir(output_dir: str, add_version: bool) -> Path:
    if os.environ.get("LMFORGE_RUN_DIR"):  # chosen once by the torchrun launcher for every rank
        run = Path(os.environ["LMFORGE_RUN_DIR"])
        run.mkdir(parents=True, exist_ok=True)
        return run
    root = Path(output_dir)
    if not add_version:
        root.mkdir(parents=True, exist_ok=True)
        return root
    root.mkdir(parents=True, exist_ok=True)
    versions = [int(m.group(1)) for p in root.iterdir() if (m := re.match(r"v(\d+)-\d{8}-\d{6}$", p.name))]
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    run = root / f"v{max(versions, default=-1) + 1}-{stamp}"
    run.mkdir()
    return run


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("lmforge", "torch", "transformers", "peft", "trl", "datasets", "accelerate"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def write_rows(path: Path, rows: Any) -> None:
    """Standard rows (a dataset's `row` column) as JSON lines, without our bookkeeping keys."""
    if not is_rank_zero():
        return
    with path.open("w", encoding="utf-8") as f:
        for text in rows["row"]:
            row = {k: v for k, v in json.loads(text).items() if not k.startswith("_")}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _bookkeeping(key: str) -> bool:
    return (
        key in ("global_step", "max_steps", "epoch", "elapsed_seconds", "total_flos", "num_tokens")
        or key.endswith(("_runtime", "_per_second", "train_loss"))
        or key.startswith("eval_steps")
    )


def draw_plots(run_dir: Path) -> list[Path]:
    """PNG curves of train loss, eval loss and learning rate from logging.jsonl into images/.

    matplotlib's Figure and Agg canvas directly, with fixed margins: pyplot's figure manager and tight_layout (which
    draws each figure twice) made the plots at the end of a run take ~0.4 s more."""
    from lmforge.features import has_module

    if not has_module("matplotlib"):  # plots are the `plot` extra; logging.jsonl holds the same curves
        return []
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = read_jsonl(run_dir / "logging.jsonl")
    out_dir = run_dir / "images"
    out_dir.mkdir(exist_ok=True)
    keys: list[str] = []
    for r in rows:  # every logged curve: loss, lr, token accuracy, and trl's rewards/margins, kl, reward, ...
        keys += [k for k, v in r.items() if k not in keys and isinstance(v, (int, float)) and not _bookkeeping(k)]
    written = []
    for key in keys:
        points = [(r["global_step"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
        if not points:
            continue
        name = key.replace("/", "_") if key.startswith("eval_") else "train_" + key.replace("/", "_")
        fig = Figure(figsize=(6, 4), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="." if len(points) < 50 else None)
        ax.set_xlabel("step")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4), useOffset=False)  # short labels fit the margin
        fig.subplots_adjust(left=0.13, right=0.97, bottom=0.12, top=0.92)
        path = out_dir / f"{name}.png"
        with writing("a plot", path):
            fig.savefig(path)
        written.append(path)
    return written
