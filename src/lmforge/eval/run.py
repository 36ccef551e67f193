"""`lmforge eval`: score a model (or a LoRA checkpoint, or a server) on evaluation sets, offline.

Order: check every flag and read every row (plan.py, datasets.py), then load the model once, then for each
model (base and adapter with --compare_base, both from one engine) and dataset: generate or score, grade, write
EvalScope's layout; finally the table, eval_result.jsonl, the comparison and --fail_on.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmforge.errors import UserError
from lmforge.eval.compare import Side, write_compare
from lmforge.eval.plan import EvalPlan, make_plan
from lmforge.eval.report import append_result, behaviour, dataset_report, summary
from lmforge.eval.scorers import SCORERS
from lmforge.runargs import ResolvedModel, resolve_model

if TYPE_CHECKING:
    from lmforge.args.parser import Args
    from lmforge.eval.table import Sample

ADAPTER = "adapter"  # the name the checkpoint is loaded under when the base runs beside it


def load_samples(plan: EvalPlan) -> list[list[Sample]]:
    """Every dataset's rows (the first --eval_limit of each subset), read before any model loads."""
    out = []
    for p in plan.datasets:
        if p.task.runs is not None:  # EvalScope reads its own rows
            out.append([])
            continue
        rows = p.task.load(p.options)
        if plan.limit:
            seen: dict[str, int] = {}
            kept = []
            for s in rows:
                seen[s.subset] = seen.get(s.subset, 0) + 1
                if seen[s.subset] <= plan.limit:
                    kept.append(s)
            rows = kept
        if not rows:
            raise UserError(f"--eval_dataset {p.task.name}: no rows to evaluate")
        out.append(rows)
    return out


def _plain_name(path: str) -> str:
    return re.sub(r"-[0-9a-f]{12}$", "", Path(path.rstrip("/")).name)  # the embedded model's cache-folder suffix


def _adapter_name(ckpt: str) -> str:
    p = Path(ckpt.rstrip("/")).absolute()
    return f"{p.parent.name}-{p.name}" if p.name.startswith("checkpoint") else p.name


def _check_compare_base(resolved: ResolvedModel) -> None:
    plain = resolved.adapters.plain
    if len(plain) != 1 or plain[0] in resolved.adapters.hooked:
        raise UserError(
            "--compare_base needs exactly one LoRA-family checkpoint in --adapters",
            hint="adapter/reft tuners cannot be switched off; evaluate the base in a separate run",
        )


def served_backends(args: Args, resolved: ResolvedModel, stack: contextlib.ExitStack) -> list[Any]:
    """--eval_deploy: a `lmforge deploy` of the model (eval/service.py) for as long as `stack` is open, and a
    client per model (with --compare_base: the base and the adapter, served by name). The system prompt and
    thinking switch are the server's (its template, from the same flags or args.json)."""
    from lmforge.eval.backends import RemoteBackend
    from lmforge.eval.service import ADAPTER, deploy_argv, owned_server
    from lmforge.infer.sidecar import free_port

    e, plain = args.eval, resolved.adapters.plain
    if e.compare_base:
        _check_compare_base(resolved)
    label = _adapter_name(plain[-1]) if plain else None
    port = free_port()
    argv = deploy_argv(args, port, None if e.compare_base else label)
    url = stack.enter_context(owned_server(argv, port, args.backend.infer_backend_timeout))
    base = RemoteBackend(url, None, None, e.eval_num_proc, None)
    if base.served != label:
        base.name = _plain_name(base.served)  # the name an in-process run reports (the model's folder)
    if not e.compare_base:
        return [base]
    adapter = RemoteBackend(url, None, ADAPTER, e.eval_num_proc, None)
    adapter.name = label
    return [base, adapter]


def local_backends(args: Args, resolved: ResolvedModel) -> list[Any]:
    """One backend, or with --compare_base the base and the adapter on one engine (the adapter switched per call)."""
    from lmforge.eval.backends import LocalBackend
    from lmforge.infer.engines import engine_from, load_engine

    size = args.eval.eval_num_proc
    plain = resolved.adapters.plain
    if not args.eval.compare_base:
        engine = engine_from(resolved, args.eval.infer_backend, size, args.backend)
        return [LocalBackend(engine, _adapter_name(plain[-1]) if plain else _plain_name(engine.model_path))]
    _check_compare_base(resolved)
    engine = load_engine(
        resolved.model,
        {ADAPTER: plain[0]},
        model_args=resolved.model_args,
        template_args=resolved.template_args,
        tokenizer_dir=resolved.tokenizer_dir,
        max_batch_size=size,
        backend=args.eval.infer_backend,
        backend_args=args.backend,
    )
    base = LocalBackend(engine, _plain_name(engine.model_path))
    return [base, LocalBackend(engine, _adapter_name(plain[0]), adapter=ADAPTER)]


def _print_table(name: str, reports: list[dict]) -> None:
    print(f"[lmforge] {name}")
    for rep in reports:
        m = rep["metrics"][0]
        line = f"  {rep['dataset_name']:<18} {m['name']:<10} {m['score']:.4f}  ({m['num']} rows)"
        b = rep["behaviour"]
        if b:
            line += (
                f"  stop {b['stop_rate']:.0%}, leaks {b['leaks']}, think {b['think_leaks']}, empty {b['empty']}, "
                f"tokens mean {b['mean_tokens']:.0f} max {b['max_tokens']}"
            )
        print(line)


def _result_file(args: Args, resolved: ResolvedModel | None) -> Path:
    if resolved is not None and resolved.adapters.plain:
        return Path(resolved.adapters.plain[-1]) / "eval_result.jsonl"
    if resolved is not None and resolved.saved is not None and resolved.model and Path(resolved.model).is_dir():
        return Path(resolved.model) / "eval_result.jsonl"  # a full-weight checkpoint
    return Path(args.eval.eval_output_dir) / "eval_result.jsonl"


def run_eval(args: Args) -> int:
    e = args.eval
    resolved = None if e.eval_url else resolve_model(args, e.load_args)
    # log-likelihoods need the engine in-process; a server answers multiple choice by generation
    in_process = resolved is not None and not e.eval_deploy
    plan = make_plan(args, resolved.saved if resolved else None, can_score=in_process)
    samples = load_samples(plan)
    with contextlib.ExitStack() as stack:  # --eval_deploy's server lives as long as this block
        if e.eval_url:
            from lmforge.eval.backends import RemoteBackend

            t = args.template
            url, key, n = e.eval_url, e.api_key, e.eval_num_proc
            backends = [RemoteBackend(url, key, args.model.model, n, t.system, t.enable_thinking)]
        elif e.eval_deploy:
            backends = served_backends(args, resolved, stack)
        else:
            backends = local_backends(args, resolved)
        sides, numbers, run_dir = _run_all(args, plan, samples, backends)
    return _finish(args, resolved, plan, sides, numbers, run_dir)


def _run_all(args: Args, plan: EvalPlan, samples: list[list[Sample]], backends: list[Any]) -> tuple:
    """Every dataset on every backend: the sides of the comparison, the last one's numbers, the run folder."""
    e = args.eval
    run_dir = Path(e.eval_output_dir) / "native" / dt.datetime.now().strftime("%Y%m%d_%H%M%S")
    sides: list[Side] = []
    # what an EvalScope benchmark runs with (eval/delegate.py)
    context = {"sampling": plan.sampling, "limit": plan.limit, "batch": e.eval_num_proc}
    context.update(run_dir=run_dir, extra=plan.extra, behaviour=behaviour)
    for backend in backends:
        t0 = time.perf_counter()
        reports, reviews = [], []
        for p, rows in zip(plan.datasets, samples):
            if p.task.runs is not None:
                report, graded = p.task.runs(backend, p, context)
            else:
                graded = SCORERS[p.task.scorer](backend, rows, p.options, plan.sampling)
                report = dataset_report(run_dir, backend.name, p, graded)
            reviews.append(graded)
            reports.append(report)
        _print_table(f"{backend.name}: {time.perf_counter() - t0:.1f} s", reports)
        sides.append(
            Side(
                backend.name,
                [(r["dataset_name"], r["metrics"][0]["name"], r["score"], rv) for r, rv in zip(reports, reviews)],
            )
        )
        numbers = summary(reports, reviews)
    return sides, numbers, run_dir


def _finish(
    args: Args, resolved: ResolvedModel | None, plan: EvalPlan, sides: list[Side], numbers: dict, run_dir: Path
) -> int:
    """eval_result.jsonl, the side-by-side report and --fail_on's exit code."""
    line = {
        "time": dt.datetime.now().isoformat(timespec="seconds"),
        "model": sides[-1].name,
        "output_dir": str(run_dir),
        "result": {s.name: {ds: score for ds, _, score, _ in s.rows} for s in sides},
    }
    append_result(_result_file(args, resolved), line)
    print(f"[lmforge] results in {run_dir}")
    if len(sides) == 2:
        print(write_compare(run_dir, *sides))
        print(f"[lmforge] side by side: {run_dir / 'compare.md'}, {run_dir / 'compare.png'}")
    failed = [c for c in plan.fail_on if c.holds(numbers.get(c.key, 0.0))]
    for c in failed:
        print(f"lmforge eval: --fail_on {c}: {c.key} is {numbers.get(c.key, 0.0):g}", file=sys.stderr)
    return 1 if failed else 0
