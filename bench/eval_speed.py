"""Rows per second of `lmforge eval`'s runners against EvalScope's generate route, on the same rows, in one run.

Rows: the shipped lmforge_mcq set (20 questions, en + zh) as general_mcq, and the same questions as general_qa
(reference: the right choice's text). Model: the embedded SmolLM2-135M-Instruct (or --model), greedy, one load.

Routes (each row counted once; the model load is not timed):
- lmforge mcq, letter log-likelihood (the default), choice-text log-likelihood, and generate + extraction
- lmforge qa, generate (BLEU/ROUGE)
- EvalScope general_mcq / general_qa with answers from the same lmforge engine (eval/delegate.py's ModelAPI,
  batched), i.e. EvalScope's prompt, generation and parsing on the same rows
- EvalScope's own transformers route (`eval_type=llm_ckpt`: it loads the model itself), when --llm_ckpt is given

Run (EvalScope installed, e.g. its own venv):
  OMP_NUM_THREADS=2 /work/venvs/evalscope/bin/python bench/eval_speed.py [--max_new_tokens 32] [--llm_ckpt]
Writes bench/results/eval_speed.json (--out) with the rows/s and the ratios to EvalScope's route.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import tempfile
import time
from pathlib import Path


def _qa_rows(mcq_dir: Path, qa_dir: Path) -> None:
    """The MCQ questions as QA rows: the reference answer is the right choice's text."""
    qa_dir.mkdir(parents=True, exist_ok=True)
    for val in sorted(mcq_dir.glob("*_val.csv")):
        with val.open(encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        lines = [json.dumps({"query": r["question"], "response": r[r["answer"]]}, ensure_ascii=False) for r in rows]
        (qa_dir / f"{val.name[: -len('_val.csv')]}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None, help="default: the embedded SmolLM2-135M-Instruct")
    ap.add_argument("--max_new_tokens", type=int, default=32)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--llm_ckpt", action="store_true", help="also EvalScope's own transformers route")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "eval_speed.json"))
    a = ap.parse_args()

    import torch

    from lmforge.eval import delegate
    from lmforge.eval.backends import LocalBackend
    from lmforge.eval.datasets import DATA_DIR, load_general_mcq, load_general_qa
    from lmforge.eval.plan import DatasetPlan
    from lmforge.eval.scorers import SCORERS
    from lmforge.infer.engine import SamplingConfig
    from lmforge.infer.engines import load_engine
    from lmforge.models.loader import resolve_model_dir

    torch.manual_seed(0)
    work = Path(tempfile.mkdtemp(prefix="lmforge-evalspeed-"))
    mcq_dir, qa_dir = work / "mcq", work / "qa"
    shutil.copytree(DATA_DIR / "mcq", mcq_dir)
    _qa_rows(mcq_dir, qa_dir)
    model_dir = resolve_model_dir(a.model)
    engine = load_engine(model_dir, dtype=torch.float32, max_batch_size=a.batch)
    backend = LocalBackend(engine, "lmforge")
    cfg = SamplingConfig(max_new_tokens=a.max_new_tokens, temperature=0.0)
    mcq = load_general_mcq({"local_path": str(mcq_dir)})
    qa = load_general_qa({"local_path": str(qa_dir)})
    backend.generate([mcq[0].messages], SamplingConfig(max_new_tokens=2))  # warm-up

    results: dict[str, dict] = {}

    def record(name: str, seconds: float, rows: int, score: float) -> None:
        results[name] = {"rows": rows, "seconds": round(seconds, 2), "rows_per_s": round(rows / seconds, 3)}
        results[name]["score"] = round(score, 4)
        print(f"  {name:<40} {rows / seconds:7.2f} rows/s  ({rows} rows, {seconds:6.1f} s, score {score:.3f})")

    def mean(reviews, metric: str) -> float:  # noqa: ANN001
        return sum(r.scores[metric] for r in reviews) / len(reviews)

    print(f"model {model_dir.name}, float32, batch {a.batch}, max_new_tokens {a.max_new_tokens}")
    for mode in ("loglikelihood", "choice_text", "generate"):
        rows = load_general_mcq({"local_path": str(mcq_dir), "mode": mode}) if mode == "choice_text" else mcq
        t0 = time.perf_counter()
        graded = SCORERS["mcq"](backend, rows, {"mode": mode}, cfg)
        dt = time.perf_counter() - t0
        record(f"lmforge mcq ({mode})", dt, len(rows), mean(graded, "acc"))
    t0 = time.perf_counter()
    graded = SCORERS["qa"](backend, qa, {}, cfg)
    dt = time.perf_counter() - t0
    record("lmforge qa (generate)", dt, len(qa), mean(graded, "Rouge-L-R"))

    from lmforge.eval.datasets import evalscope_task
    from lmforge.eval.report import behaviour

    ctx = {"sampling": cfg, "limit": None, "batch": a.batch, "extra": {}, "behaviour": behaviour}
    for name, local, n in (("general_mcq", mcq_dir, len(mcq)), ("general_qa", qa_dir, len(qa))):
        plan = DatasetPlan(evalscope_task(name), {"local_path": str(local)}, True)
        t0 = time.perf_counter()
        report, _ = delegate.run_benchmark(backend, plan, {**ctx, "run_dir": work / name})
        dt = time.perf_counter() - t0
        record(f"EvalScope {name} (lmforge engine)", dt, n, report["score"])
    if a.llm_ckpt:
        from evalscope.config import TaskConfig
        from evalscope.run import run_task

        for name, local, n in (("general_mcq", mcq_dir, len(mcq)), ("general_qa", qa_dir, len(qa))):
            args = delegate.dataset_args(name, {"local_path": str(local)})
            task = TaskConfig(
                model=str(model_dir),
                eval_type="llm_ckpt",
                model_args={"precision": "float32", "device_map": "cpu"},
                datasets=[name],
                dataset_args={name: args},
                eval_batch_size=a.batch,
                generation_config=delegate.generate_config(cfg),
                work_dir=str(work / f"ckpt-{name}"),
                no_timestamp=True,
            )
            t0 = time.perf_counter()
            run_task(task_cfg=task)
            dt = time.perf_counter() - t0  # includes EvalScope's own model load
            (rep,) = (work / f"ckpt-{name}" / "reports").glob(f"*/{name}.json")
            record(f"EvalScope {name} (llm_ckpt, incl. load)", dt, n, json.loads(rep.read_text())["score"])

    ratios = {}
    for ours, theirs in (
        ("lmforge mcq (loglikelihood)", "EvalScope general_mcq (lmforge engine)"),
        ("lmforge mcq (choice_text)", "EvalScope general_mcq (lmforge engine)"),
        ("lmforge mcq (generate)", "EvalScope general_mcq (lmforge engine)"),
        ("lmforge qa (generate)", "EvalScope general_qa (lmforge engine)"),
    ):
        ratios[f"{ours} / {theirs}"] = round(results[ours]["rows_per_s"] / results[theirs]["rows_per_s"], 2)
        print(f"  {ours} is {ratios[f'{ours} / {theirs}']:.2f}x {theirs}")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"model": model_dir.name, "max_new_tokens": a.max_new_tokens, "batch": a.batch, "time": time.ctime()}
    out.write_text(json.dumps({**meta, "routes": results, "ratios": ratios}, indent=2) + "\n", encoding="utf-8")
    print(f"written {out}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
