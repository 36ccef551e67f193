"""Rows per second of `lmforge eval`'s runners against EvalScope's generate route, on the same rows and the same
engine, run side by side as A B A B (so a shared machine's load falls on both sides), at 0-shot and at
few_shot_num 2 on both sides.

Rows: the shipped lmforge_mcq set (20 questions, en + zh; each subset's `_dev.csv` has 2 rows, so 2 shots is the
most both sides can take) as general_mcq, and the same questions as general_qa (reference: the right choice's text;
general_qa has no few-shot form, so it runs at 0-shot only). Model: the embedded SmolLM2-135M-Instruct (or
--model), float32, greedy, one load (not timed), `--batch` rows per engine call on both sides.

Routes, each a full pass over the rows (prompting, answering, grading):
- lmforge mcq: letter log-likelihood (the default: one forward per question, logits only where read), the same as
  PtEngine.score ran it before (a forward per choice, logits at every position), choice-text log-likelihood,
  generate + answer extraction
- lmforge qa: generate, BLEU/ROUGE
- EvalScope general_mcq / general_qa: EvalScope's prompt, generation and parsing, with answers from the same lmforge
  engine (eval/delegate.py's ModelAPI, batched) -- EvalScope's generate route

Per setting (shots) and repetition the routes run in one fixed order, so each lmforge route and its EvalScope
counterpart alternate A B A B; the figures are medians over the repetitions, the ratios lmforge / EvalScope rows/s.
Prompt and generated tokens per row are counted through a wrapper around the backend (what the engine was given).
`uptime` load is recorded before, between and after the passes.

Run (EvalScope installed, e.g. its own venv):
  OMP_NUM_THREADS=2 PYTHONPATH=src HF_HUB_OFFLINE=1 /work/venvs/evalscope/bin/python bench/eval_speed.py
Writes bench/results/eval_speed.json and .md (--out: the .json path; the .md goes beside it).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

OURS_VS_THEIRS = (  # (lmforge route, EvalScope route)
    ("lmforge mcq (loglikelihood)", "EvalScope general_mcq"),
    ("lmforge mcq (choice_text)", "EvalScope general_mcq"),
    ("lmforge mcq (generate)", "EvalScope general_mcq"),
    ("lmforge qa (generate)", "EvalScope general_qa"),
    ("lmforge mcq (loglikelihood)", "lmforge mcq (loglikelihood, as before)"),  # the grouping's gain
)


class Counting:
    """The backend as the runners see it, counting the prompt and generated tokens it is asked for."""

    def __init__(self, inner: Any):
        self.inner, self.prompt_tokens, self.generated = inner, 0, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def generate(self, convs: list, cfg: Any) -> list:
        out = self.inner.generate(convs, cfg)
        self.prompt_tokens += sum(a.prompt_tokens for a in out)
        self.generated += sum(a.completion_tokens for a in out)
        return out

    def score(self, convs: list, continuations: list) -> list:
        self.prompt_tokens += sum(len(self.inner.prompt(c)) for c in convs)
        return self.inner.score(convs, continuations)


def _qa_rows(mcq_dir: Path, qa_dir: Path) -> None:
    """The MCQ questions as QA rows: the reference answer is the right choice's text."""
    qa_dir.mkdir(parents=True, exist_ok=True)
    for val in sorted(mcq_dir.glob("*_val.csv")):
        with val.open(encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        lines = [json.dumps({"query": r["question"], "response": r[r["answer"]]}, ensure_ascii=False) for r in rows]
        (qa_dir / f"{val.name[: -len('_val.csv')]}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _load() -> str:
    out = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    return out[out.index("load average") :] if "load average" in out else out


def _routes(a: argparse.Namespace, work: Path, cfg: Any, backend: Counting) -> dict[str, Callable[[int], tuple]]:
    """Route name -> run(shots) -> (rows, score)."""
    from lmforge.eval import delegate
    from lmforge.eval.datasets import evalscope_task, load_general_mcq, load_general_qa
    from lmforge.eval.plan import DatasetPlan
    from lmforge.eval.report import behaviour
    from lmforge.eval.scorers import SCORERS

    mcq_dir, qa_dir = work / "mcq", work / "qa"

    def mean(reviews: list, metric: str) -> float:
        return sum(r.scores[metric] for r in reviews) / len(reviews)

    def ours_mcq(mode: str) -> Callable[[int], tuple]:
        def run(shots: int) -> tuple:
            rows = load_general_mcq({"local_path": str(mcq_dir), "mode": mode, "few_shot_num": shots})
            rows = rows[: a.limit] if a.limit else rows
            return len(rows), mean(SCORERS["mcq"](backend, rows, {"mode": mode}, cfg), "acc")

        return run

    def per_choice(shots: int) -> tuple:
        """The letter route as PtEngine.score ran it before: a forward per choice, logits at every position."""
        from lmforge.infer import pt

        grouped, engine = pt.score_units, backend.inner.engine
        pt.score_units = lambda ps, cs: [(list(p) + list(c), len(p) - 1, [i]) for i, (p, c) in enumerate(zip(ps, cs))]
        engine._accepts_keep = False
        try:
            return ours_mcq("loglikelihood")(shots)
        finally:
            pt.score_units, engine._accepts_keep = grouped, None

    def ours_qa(shots: int) -> tuple:
        rows = load_general_qa({"local_path": str(qa_dir)})
        rows = rows[: a.limit] if a.limit else rows
        return len(rows), mean(SCORERS["qa"](backend, rows, {}, cfg), "Rouge-L-R")

    def theirs(name: str, local: Path) -> Callable[[int], tuple]:
        def run(shots: int) -> tuple:
            opts = {"local_path": str(local), **({"few_shot_num": shots} if shots else {})}
            plan = DatasetPlan(evalscope_task(name), opts, True)
            limit = max(1, a.limit // 2) if a.limit else None  # EvalScope's limit is per subset (en, zh)
            ctx = {"sampling": cfg, "limit": limit, "batch": a.batch, "extra": {}, "behaviour": behaviour}
            report, _ = delegate.run_benchmark(backend, plan, {**ctx, "run_dir": Path(tempfile.mkdtemp(dir=work))})
            return report["metrics"][0]["num"], report["score"]

        return run

    return {
        "lmforge mcq (loglikelihood)": ours_mcq("loglikelihood"),
        "lmforge mcq (loglikelihood, as before)": per_choice,
        "lmforge mcq (choice_text)": ours_mcq("choice_text"),
        "lmforge mcq (generate)": ours_mcq("generate"),
        "EvalScope general_mcq": theirs("general_mcq", mcq_dir),
        "lmforge qa (generate)": ours_qa,
        "EvalScope general_qa": theirs("general_qa", qa_dir),
    }


def _pass(name: str, run: Callable[[int], tuple], shots: int, backend: Counting) -> dict:
    backend.prompt_tokens = backend.generated = 0
    t0 = time.perf_counter()
    rows, score = run(shots)
    dt = time.perf_counter() - t0
    one = {"rows": rows, "seconds": round(dt, 2), "rows_per_s": round(rows / dt, 3), "score": round(score, 4)}
    one["prompt_tokens_per_row"] = round(backend.prompt_tokens / rows, 1)
    one["generated_tokens_per_row"] = round(backend.generated / rows, 1)
    print(
        f"  {shots}-shot {name:<30} {rows / dt:6.2f} rows/s ({rows} rows, {dt:6.1f} s, score {score:.3f}, "
        f"prompt {one['prompt_tokens_per_row']} / generated {one['generated_tokens_per_row']} tok/row)",
        flush=True,
    )
    return one


def _summary(passes: dict[str, list[dict]]) -> tuple[dict, dict]:
    """Medians per setting and route, and the lmforge / EvalScope ratios."""
    medians: dict[str, dict] = {}
    for key, runs in passes.items():
        med = {k: statistics.median(r[k] for r in runs) for k in ("seconds", "rows_per_s")}
        medians[key] = {**runs[0], **{k: round(v, 3) for k, v in med.items()}, "reps": [r["rows_per_s"] for r in runs]}
    ratios = {}
    for setting in sorted({k.split(" | ")[0] for k in medians}):
        for ours, theirs in OURS_VS_THEIRS:
            a, b = medians.get(f"{setting} | {ours}"), medians.get(f"{setting} | {theirs}")
            if a and b:
                ratios[f"{setting} | {ours} / {theirs}"] = round(a["rows_per_s"] / b["rows_per_s"], 2)
    return medians, ratios


def _markdown(meta: dict, medians: dict, ratios: dict) -> str:
    lines = [
        "# lmforge eval runners vs EvalScope's generate route (same rows, same engine, A B A B)",
        "",
        f"Model {meta['model']}, float32, batch {meta['batch']}, max_new_tokens {meta['max_new_tokens']}, "
        f"{meta['reps']} repetitions (medians), OMP_NUM_THREADS={meta['omp_threads']}, {meta['time']}.",
        f"Load: {'; '.join(meta['load'])}.",
        "",
        "| setting | route | rows/s (median) | per rep | score | prompt tok/row | generated tok/row |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, m in medians.items():
        setting, route = key.split(" | ")
        reps = ", ".join(f"{x:.2f}" for x in m["reps"])
        lines.append(
            f"| {setting} | {route} | {m['rows_per_s']:.3f} | {reps} | {m['score']:.3f} | "
            f"{m['prompt_tokens_per_row']} | {m['generated_tokens_per_row']} |"
        )
    head = "| setting | lmforge / EvalScope (rows/s; last row of each setting: now / as before) | ratio |"
    lines += ["", head, "|---|---|---|"]
    lines += [f"| {k.split(' | ')[0]} | {k.split(' | ')[1]} | {v:.2f}x |" for k, v in ratios.items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None, help="default: the embedded SmolLM2-135M-Instruct")
    ap.add_argument("--max_new_tokens", type=int, default=32)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--shots", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--limit", type=int, default=0, help="rows per route (0: all 20); for a quick try")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "eval_speed.json"))
    a = ap.parse_args()

    import torch

    from lmforge.eval.backends import LocalBackend
    from lmforge.eval.datasets import DATA_DIR
    from lmforge.infer.engine import SamplingConfig
    from lmforge.infer.engines import load_engine
    from lmforge.models.loader import resolve_model_dir

    torch.manual_seed(0)
    work = Path(tempfile.mkdtemp(prefix="lmforge-evalspeed-"))
    shutil.copytree(DATA_DIR / "mcq", work / "mcq")
    _qa_rows(work / "mcq", work / "qa")
    model_dir = resolve_model_dir(a.model)
    engine = load_engine(model_dir, dtype=torch.float32, max_batch_size=a.batch)
    backend = Counting(LocalBackend(engine, "lmforge"))
    cfg = SamplingConfig(max_new_tokens=a.max_new_tokens, temperature=0.0)
    routes = _routes(a, work, cfg, backend)
    # warm-up, not timed: EvalScope's imports (the delegate imports it on first use), a generate and a score
    import evalscope.config  # noqa: F401
    import evalscope.run  # noqa: F401

    hi = [[{"role": "user", "content": "Hi"}]]
    backend.generate(hi, SamplingConfig(max_new_tokens=2))
    backend.score(hi * 2, [["A", "B"], ["Yes", "No"]])

    print(f"model {model_dir.name}, float32, batch {a.batch}, max_new_tokens {a.max_new_tokens}", flush=True)
    load = [f"start {_load()}"]
    passes: dict[str, list[dict]] = {}
    for shots in a.shots:
        for rep in range(a.reps):
            for name, run in routes.items():
                if shots and "qa" in name:
                    continue  # general_qa has no few-shot form
                passes.setdefault(f"{shots}-shot | {name}", []).append(_pass(name, run, shots, backend))
            load.append(f"after {shots}-shot rep {rep + 1} {_load()}")
            print(f"  {load[-1]}", flush=True)
    medians, ratios = _summary(passes)
    for k, v in ratios.items():
        print(f"  {k}: {v:.2f}x")
    meta = {
        "model": model_dir.name,
        "max_new_tokens": a.max_new_tokens,
        "batch": a.batch,
        "reps": a.reps,
        "omp_threads": os.environ.get("OMP_NUM_THREADS", "unset"),
        "time": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load": load,
    }
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**meta, "routes": medians, "ratios": ratios, "passes": passes}, indent=2) + "\n")
    out.with_suffix(".md").write_text(_markdown(meta, medians, ratios), encoding="utf-8")
    print(f"written {out} and {out.with_suffix('.md')}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
