"""`lmforge eval`'s outputs, in EvalScope's layout so tools that read one read both:

    <eval_output_dir>/native/<YYYYmmdd_HHMMSS>/predictions/<model>/<dataset>_<subset>.jsonl   raw answers
                                             /reviews/<model>/<dataset>_<subset>.jsonl       per-row scores
                                             /reports/<model>/<dataset>.json                 metrics by subset

plus the behaviour checks of generated answers (stop rate, leaked special tokens or <think>, empty answers,
lengths) in each report, and the side-by-side base-vs-adapter report (compare.md + compare.png).
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from lmforge.errors import writing
from lmforge.eval.backends import Answer
from lmforge.eval.plan import DatasetPlan
from lmforge.eval.scorers import Review
from lmforge.infer.frontend import THINK_CLOSE, THINK_OPEN


def behaviour(answers: list[Answer]) -> dict[str, float]:
    """What generated answers look like, whatever their scores: a model that never stops or leaks its template
    can score well on BLEU and still be broken."""
    if not answers:
        return {}
    lengths = [a.completion_tokens for a in answers]
    return {
        "answers": len(answers),
        "stop_rate": sum(a.finish_reason == "stop" for a in answers) / len(answers),
        "leaks": sum(a.leaked for a in answers),
        "think_leaks": sum(THINK_OPEN in a.text or THINK_CLOSE in a.text for a in answers),
        "empty": sum(not a.text.strip() for a in answers),
        "mean_tokens": statistics.fmean(lengths),
        "p50_tokens": statistics.median(lengths),
        "max_tokens": max(lengths),
        "seconds_per_row": statistics.fmean(a.seconds for a in answers),
    }


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with writing("eval results", path), path.open("w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def dataset_report(run_dir: Path, model: str, plan: DatasetPlan, reviews: list[Review]) -> dict[str, Any]:
    """Write the three files of one dataset; return its report (EvalScope's schema: metrics -> subsets)."""
    task = plan.task
    by_subset: dict[str, list[Review]] = defaultdict(list)
    for r in reviews:
        by_subset[r.sample.subset].append(r)
    for subset, rows in by_subset.items():
        name = f"{task.name}_{subset}.jsonl"
        preds = []
        for r in rows:
            pred = {"index": r.sample.id, "messages": r.sample.messages, "prediction": r.prediction, **r.extra}
            if r.answer is not None:
                pred.update({k: v for k, v in dataclasses.asdict(r.answer).items() if k != "text"})
            preds.append(pred)
        _jsonl(run_dir / "predictions" / model / name, preds)
        revs = [
            {
                "index": r.sample.id,
                "target": r.sample.target,
                "choices": list(r.sample.choices),
                "prediction": r.prediction,
                "extracted_prediction": r.extracted,
                "score": r.scores,
            }
            for r in rows
        ]
        _jsonl(run_dir / "reviews" / model / name, revs)
    metrics = []
    # a scorer may grade more than its task lists (choice_text's acc_norm): reported after the task's own
    more = [k for k in (reviews[0].scores if reviews else {}) if k not in task.metrics]
    for metric in (*task.metrics, *more):
        subsets = [
            {"name": s, "score": _mean([r.scores[metric] for r in rows]), "num": len(rows)}
            for s, rows in by_subset.items()
        ]
        score = _mean([r.scores[metric] for r in reviews])
        macro = _mean([s["score"] for s in subsets])
        metrics.append(
            {
                "name": metric,
                "num": len(reviews),
                "score": score,
                "macro_score": macro,
                "categories": [{"name": ["default"], "num": len(reviews), "score": score, "subsets": subsets}],
            }
        )
    report = {
        "name": f"{model}@{task.name}",
        "dataset_name": task.name,
        "model_name": model,
        "score": metrics[0]["score"],
        "metrics": metrics,
        "options": {k: v for k, v in plan.options.items() if k != "keywords"},
        "behaviour": behaviour([r.answer for r in reviews if r.answer is not None]),
    }
    path = run_dir / "reports" / model / f"{task.name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    with writing("an eval report", path):
        path.write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
    return report


def summary(reports: list[dict], reviews: list[list[Review]]) -> dict[str, float]:
    """The numbers --fail_on tests: each dataset's main score (and every metric as dataset.metric), and the
    behaviour of all generated answers together."""
    out: dict[str, float] = {}
    for rep in reports:
        out[rep["dataset_name"]] = rep["score"]
        out.update({f"{rep['dataset_name']}.{m['name']}": m["score"] for m in rep["metrics"]})
    out.update(behaviour([r.answer for rows in reviews for r in rows if r.answer is not None]))
    return out


def append_result(path: Path, line: dict) -> None:
    """One line per eval run next to the checkpoint (ms-swift's eval_result.jsonl)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with writing("eval_result.jsonl", path), path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(line, ensure_ascii=False) + "\n")
