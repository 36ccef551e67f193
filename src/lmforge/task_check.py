"""`lmforge check --task_type seq_cls|embedding|reranker|generative_reranker`: every row validated as training
would read it (labels: type, range, number of classes; embedding rows: positives, pair labels; reranker rows: a
positive and a negative), each problem one line naming file:row:field."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from lmforge.errors import DataError, UserError


def _rows(data: Any) -> list[dict]:
    out = []
    for ds in (data.train, data.val):
        if ds is not None:
            out += [json.loads(r) for r in ds["row"]]
    return sorted(out, key=lambda r: (r.get("_src", ""), r.get("_idx", 0)))  # file order, not the shuffle


def _seq_cls(args: Any, setup: Any, rows: list[dict]) -> list[str]:
    from lmforge.data.labels import label_spec, where

    spec = label_spec(args.task, [r.get("label") for r in rows])
    print(f"seq_cls: {spec.problem_type}, {spec.num_labels} labels {list(spec.id2label.values())}")
    problems, seen = [], Counter()
    for row in rows:
        try:
            target = spec.target(row.get("label"), where(row))
        except DataError as e:
            problems.append(str(e))
            continue
        seen.update([spec.id2label[target]] if isinstance(target, int) else [])
    if seen:
        print("  labels: " + ", ".join(f"{name} {n}" for name, n in sorted(seen.items())))
    return problems


def _embedding(args: Any, setup: Any, rows: list[dict]) -> list[str]:
    from lmforge.data.pairs import columns
    from lmforge.train.embedding import EMBEDDING_LOSSES

    name = args.train.loss_type or "infonce"
    if name not in EMBEDDING_LOSSES:
        raise UserError(f"--loss_type {name}: not an embedding loss", hint=f"one of {', '.join(EMBEDDING_LOSSES)}")
    from lmforge.data.labels import where

    pairwise, problems = EMBEDDING_LOSSES[name].pairwise, []
    negatives = Counter()
    for row in rows:
        c = columns(row)
        negatives[len(c.negatives)] += 1
        if c.positive is None:
            problems.append(f"{where(row)}: response: --loss_type {name} needs a positive for each anchor")
        elif pairwise and not isinstance(c.label, (int, float)):
            problems.append(f"{where(row)}: label: --loss_type {name} needs a number per pair")
    print(f"embedding: --loss_type {name}; hard negatives per row: {dict(sorted(negatives.items()))}")
    return problems


def _reranker(args: Any, setup: Any, rows: list[dict]) -> list[str]:
    from lmforge.data.pairs import columns
    from lmforge.train.reranker import loss_name, row_problem

    name = loss_name_of(args, loss_name)
    negatives = Counter(len(columns(r).negatives) for r in rows)
    print(f"{args.task.task_type}: --loss_type {name}; negatives per row: {dict(sorted(negatives.items()))}")
    return [p for p in map(row_problem, rows) if p is not None]


def loss_name_of(args: Any, pick: Any) -> str:
    """The reranker loss the flags name (pick() reads a job's args; check has the args alone)."""
    from types import SimpleNamespace

    return pick(SimpleNamespace(args=args))


TASK_CHECKS = {"seq_cls": _seq_cls, "embedding": _embedding, "reranker": _reranker, "generative_reranker": _reranker}


def check_task(args: Any, setup: Any, data: Any) -> int:
    """The task's row checks; exit 1 when a row is unusable (--strict: stop at the first)."""
    rows = _rows(data)
    problems = TASK_CHECKS[args.task.task_type](args, setup, rows)
    if problems and args.data.strict:
        raise DataError(problems[0], hint="--strict false lists every bad row")
    for p in problems[:5]:
        print(f"  unusable: {p}")
    if problems:
        print(f"check: {len(problems)} unusable row(s)")
        return 1
    print(f"check: all {len(rows)} rows usable for --task_type {args.task.task_type}")
    return 0
