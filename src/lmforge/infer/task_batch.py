"""`lmforge infer --val_dataset FILE` on a classifier or embedding checkpoint: predictions (label and
probabilities) or embeddings (`.jsonl` plus a `.npy` beside it), and `--metric` over them:
acc/f1 (classes), mse (regression), recall@k/mrr/ndcg (each query against every positive and hard negative)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmforge.errors import UserError, writing
from lmforge.infer.metrics import METRICS, TASK_METRICS

if TYPE_CHECKING:
    from lmforge.args.parser import Args
    from lmforge.infer.task_runner import TaskRunner
    from lmforge.runargs import ResolvedModel


def _seq_cls(runner: Any, rows: list[dict]) -> tuple[list[dict], list[tuple[Any, Any]], Any]:
    from lmforge.data.labels import MULTI, REGRESSION, where

    spec = runner.spec
    preds = runner.predict(runner.texts([r["messages"] for r in rows]))
    records, pairs = [], []
    for row, p in zip(rows, preds):
        gold = row.get("label")
        if gold is not None:
            target = spec.target(gold, where(row))
            if spec.problem_type == REGRESSION:
                gold = target
            elif spec.problem_type == MULTI:
                gold = [spec.id2label[i] for i, v in enumerate(target) if v]
            else:
                gold = spec.id2label[target]
            pairs.append((_key(p["label"]), _key(gold)))
        records.append({"label": p["label"], "probs": p["probs"], "labels": gold, "messages": row["messages"]})
    return records, pairs, None


def _key(label: Any) -> Any:
    """A label compared by the metrics: a class name, a joined set of names, or a number."""
    return ",".join(sorted(label)) if isinstance(label, list) and all(isinstance(x, str) for x in label) else label


def _embedding(runner: Any, rows: list[dict]) -> tuple[list[dict], list[tuple[Any, Any]], Any]:
    """Anchors embedded; with positives, each anchor's ranking of all documents (positives and negatives)."""
    import numpy as np

    from lmforge.data.pairs import columns

    cols = [columns(r) for r in rows]
    vectors = runner.embed(runner.texts([c.anchor for c in cols]))
    records = [{"embedding": v.tolist(), "messages": c.anchor} for v, c in zip(vectors, cols)]
    if not all(c.positive is not None for c in cols):
        return records, [], vectors
    docs: dict[str, int] = {}
    texts = runner.texts([d for c in cols for d in (c.positive, *c.negatives)])
    for t in texts:
        docs.setdefault(t, len(docs))
    doc_vecs = runner.embed(list(docs))
    scores = vectors @ doc_vecs.T
    pos_texts = runner.texts([c.positive for c in cols])
    pairs = [(list(np.argsort(-s, kind="stable")), docs[t]) for s, t in zip(scores, pos_texts)]
    for rec, (ranked, gold) in zip(records, pairs):
        rec["rank_of_positive"] = ranked.index(gold) + 1
    return records, pairs, vectors


def _rerank(runner: Any, rows: list[dict]) -> tuple[list[dict], list[tuple[Any, Any]], Any]:
    """Each query's own documents (positive first, then negatives) scored; the positive's rank feeds the metric."""
    from lmforge.data.pairs import columns

    records, pairs = [], []
    for row in rows:
        c = columns(row)
        docs = [d for d in (c.positive, *c.negatives) if d is not None]
        scores = runner.score(runner.pair_texts(c.anchor, docs))
        rec: dict[str, Any] = {"scores": scores, "messages": c.anchor}
        if c.positive is not None:
            # a tie puts the positive last: a model that scores everything alike earns no credit
            ranked = sorted(range(len(scores)), key=lambda i: (-scores[i], i == 0))
            pairs.append((ranked, 0))
            rec["rank_of_positive"] = ranked.index(0) + 1
        records.append(rec)
    return records, pairs, None


# task -> rows -> (records, metric pairs, vectors)
BATCH = {"seq_cls": _seq_cls, "embedding": _embedding, "reranker": _rerank, "generative_reranker": _rerank}
# tasks scored by another task's metrics: a reranker's rankings by the retrieval metrics
METRIC_TASK = {"reranker": "embedding", "generative_reranker": "embedding"}


def check_task_infer(args: Args, task: str) -> None:
    """Before anything loads: a metric that scores this task, and a dataset to answer."""
    metric = args.infer.metric
    scored_as = METRIC_TASK.get(task, task)
    if metric and TASK_METRICS.get(metric) not in (scored_as, "any"):
        usable = [m for m, t in TASK_METRICS.items() if t in (scored_as, "any")]
        raise UserError(f"--metric {metric} does not score a {task} model", hint=f"use {', '.join(usable)}")
    if not (args.infer.load_data_args or args.data.val_dataset):
        raise UserError(f"a {task} checkpoint answers a dataset, not a chat", hint="pass --val_dataset FILE")


def task_batch(
    args: Args, resolved: ResolvedModel, rows: list[dict], path: Path, runner: TaskRunner | None = None
) -> int:
    """Answer the rows (--val_dataset) with the checkpoint's task; writes `path` (and a .npy of embeddings)."""
    from lmforge.infer.task_runner import load_runner, saved_task

    task = saved_task(resolved)
    metric = args.infer.metric
    check_task_infer(args, task)
    runner = runner or load_runner(resolved, args.infer.max_batch_size)
    records, pairs, vectors = BATCH[task](runner, rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    with writing("the results", path), path.open("w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    print(f"[lmforge] {len(records)} {task} results written to {path}")
    if vectors is not None:
        npy = Path(path).with_suffix(".npy")
        import numpy as np

        with writing("the embeddings", npy):
            np.save(npy, vectors)
        print(f"[lmforge] embeddings {tuple(vectors.shape)} written to {npy}")
    if metric:
        if not pairs:
            raise UserError(f"--metric {metric}: the rows carry nothing to score against", hint="add labels/positives")
        print(f"[lmforge] {metric}: {METRICS[metric](pairs):.4f} over {len(pairs)} rows")
    return 0
