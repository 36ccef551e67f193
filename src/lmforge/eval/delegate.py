"""EvalScope as a delegate (`pip install 'lmforge[eval]'`, in a venv of its own: it downgrades `datasets`).

A name `--eval_dataset` gets that lmforge has no set for, but EvalScope's registry has (gsm8k, mmlu, ceval, arc,
ifeval, ... on local data), runs through EvalScope's own adapter, prompt and metric; `--eval_backend EvalScope`
sends every set there (general_mcq, general_qa, humaneval too, to get EvalScope's numbers). The answers come from
the same backend lmforge's own sets use, through `LmforgeModel` (an EvalScope ModelAPI): the local engine
in-process (chat template, adapters, GGUF, --compare_base, --enable_thinking as in infer; rows batched), or the
server of `--eval_url`. EvalScope writes its files into the same run folder (its layout: predictions/, reviews/,
reports/<model>/<dataset>.json); lmforge adds the behaviour checks of the answers it served.

Two offline traps are handled, not reported as scores: BLEU is silently 0 without nltk's `punkt_tab` data
(thirdparty.nltk_without_punkt), and general_mcq/general_qa ask every question in Chinese by default (an English
prompt is set for data that is not Chinese, unless the dataset's options give `prompt_template`).

Names are checked without importing EvalScope (its benchmarks' metadata files), so a typo is one line at once.
"""

from __future__ import annotations

import importlib.util
import json
import queue
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmforge.errors import UserError, writing

if TYPE_CHECKING:
    from lmforge.eval.backends import Answer
    from lmforge.eval.plan import DatasetPlan
    from lmforge.eval.scorers import Review
    from lmforge.infer.engine import SamplingConfig

INSTALL = "pip install 'lmforge[eval]' (EvalScope; in its own venv: it downgrades datasets)"
# EvalScope's prompts for its custom sets are Chinese; for other data lmforge asks in English
ENGLISH_PROMPTS = {"general_qa": "{question}"}  # general_mcq: EvalScope's own English SINGLE_ANSWER template
MAX_WAIT = 0.05  # seconds the batcher waits for more rows before running a batch


def installed() -> bool:
    return importlib.util.find_spec("evalscope") is not None


def benchmark_names() -> dict[str, str]:
    """EvalScope's registry benchmarks, lower-cased name -> name ({} when EvalScope is not installed). Read from
    the metadata files it ships, so no import (seconds, and a datasets downgrade's warnings) is needed to check."""
    spec = importlib.util.find_spec("evalscope")
    if spec is None or spec.origin is None:
        return {}
    meta = Path(spec.origin).parent / "benchmarks" / "_meta"
    if meta.is_dir():
        return {p.stem.lower(): p.stem for p in meta.glob("*.json")}
    import evalscope.benchmarks  # noqa: F401  (fills the registry)
    from evalscope.api.registry import BENCHMARK_REGISTRY

    return {k.lower(): k for k in BENCHMARK_REGISTRY}


def _is_chinese(texts: list[str]) -> bool:
    zh = sum(any("\u4e00" <= ch <= "\u9fff" for ch in t) for t in texts)
    return zh * 2 > len(texts)


def _question_texts(name: str, opts: dict) -> list[str]:
    """The questions of a local general_mcq (`question` column) or general_qa set (query/question/messages), to
    pick the prompt language; rows are read, not checked (EvalScope checks its own)."""
    import csv

    root = Path(str(opts.get("local_path") or "")).expanduser()
    if not opts.get("local_path") or not root.is_dir():
        return []
    texts: list[str] = []
    if name == "general_mcq":
        for path in sorted(root.glob("*_val.csv")):
            with path.open(encoding="utf-8-sig", newline="") as f:
                texts += [row.get("question") or "" for row in csv.DictReader(f)]
        return texts
    for path in sorted(root.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line) if line.strip() else {}
            msgs = row.get("messages") or [{}]
            texts.append(str(row.get("query") or row.get("question") or msgs[0].get("content", "")))
    return texts


def dataset_args(name: str, opts: dict) -> dict:
    """The dataset's --eval_dataset_args entry as EvalScope takes it, with an English prompt for English data."""
    args = dict(opts)
    if name in ("general_mcq", "general_qa") and args.get("local_path") and not args.get("subset_list"):
        # EvalScope reads only the subsets it is told (default: 'default'); lmforge's runner takes every file
        pattern = "*_val.csv" if name == "general_mcq" else "*.jsonl"
        found = sorted(p.name[: -len(pattern) + 1] for p in Path(args["local_path"]).expanduser().glob(pattern))
        args["subset_list"] = found or ["default"]
    if name in ("general_mcq", "general_qa") and "prompt_template" not in args:
        if not _is_chinese(_question_texts(name, args)):
            if name == "general_mcq":
                from evalscope.utils.multi_choices import MultipleChoiceTemplate

                args["prompt_template"] = MultipleChoiceTemplate.SINGLE_ANSWER
            else:
                args["prompt_template"] = ENGLISH_PROMPTS[name]
    return args


def generate_config(cfg: SamplingConfig) -> dict:
    """lmforge's sampling as EvalScope's GenerateConfig fields (every one set: no backend default leaks in)."""
    out: dict[str, Any] = {
        "max_tokens": cfg.max_new_tokens,
        "temperature": cfg.temperature,
        "top_p": cfg.top_p,
        "repetition_penalty": cfg.repetition_penalty,
    }
    if cfg.top_k:
        out["top_k"] = cfg.top_k
    if cfg.seed is not None:
        out["seed"] = cfg.seed
    if cfg.stop:
        out["stop_seqs"] = list(cfg.stop)
    return out


def _sampling(base: SamplingConfig, config: Any) -> SamplingConfig:
    """A request's GenerateConfig (a benchmark may set its own max_tokens or stops) over lmforge's sampling."""
    import dataclasses

    fields = {
        "max_new_tokens": config.max_tokens,
        "temperature": config.temperature,
        "top_p": config.top_p,
        "top_k": config.top_k,
        "repetition_penalty": config.repetition_penalty,
        "seed": config.seed,
        "stop": tuple(config.stop_seqs) if config.stop_seqs else None,
    }
    return dataclasses.replace(base, **{k: v for k, v in fields.items() if v is not None})


class Batcher:
    """EvalScope asks for one row per call from `eval_batch_size` threads; this gathers the waiting calls with the
    same sampling into one `backend.generate` (the local engine decodes a batch at once). One worker thread."""

    def __init__(self, backend: Any, size: int):
        self.backend, self.size = backend, size
        self.todo: queue.Queue = queue.Queue()
        self.answers: list[Answer] = []  # every answer served, for the behaviour checks
        threading.Thread(target=self._work, daemon=True).start()

    def ask(self, messages: list[dict], cfg: SamplingConfig) -> Answer:
        done = threading.Event()
        slot: dict[str, Any] = {}
        self.todo.put((messages, cfg, slot, done))
        done.wait()
        if "error" in slot:
            raise slot["error"]
        return slot["answer"]

    def _work(self) -> None:
        while True:
            batch = [self.todo.get()]
            while len(batch) < self.size:
                try:
                    item = self.todo.get(timeout=MAX_WAIT)
                except queue.Empty:
                    break
                if item[1] != batch[0][1]:  # another sampling: next batch
                    self.todo.put(item)
                    break
                batch.append(item)
            try:
                answers = self.backend.generate([m for m, *_ in batch], batch[0][1])
                self.answers.extend(answers)
                for (_, _, slot, _), a in zip(batch, answers):
                    slot["answer"] = a
            except Exception as e:  # noqa: BLE001  (handed to the asking thread, which EvalScope reports)
                for _, _, slot, _ in batch:
                    slot["error"] = e
            for *_, done in batch:
                done.set()


def model_api(backend: Any, sampling: SamplingConfig, batch: int) -> Any:
    """An EvalScope ModelAPI whose answers come from `backend` (LocalBackend or RemoteBackend)."""
    from evalscope.api.model import ModelAPI, ModelOutput
    from evalscope.api.model.model_output import ModelUsage

    batcher = Batcher(backend, batch)

    class LmforgeModel(ModelAPI):
        answers = batcher.answers

        def generate(self, input, tools, tool_choice, config):  # noqa: A002, ANN001, ANN201  (EvalScope's names)
            messages = [{"role": m.role, "content": m.text} for m in input]
            a = batcher.ask(messages, _sampling(sampling, config))
            out = ModelOutput.from_content(
                self.model_name, a.text, stop_reason="stop" if a.finish_reason == "stop" else "max_tokens"
            )
            total = a.prompt_tokens + a.completion_tokens
            out.usage = ModelUsage(input_tokens=a.prompt_tokens, output_tokens=a.completion_tokens, total_tokens=total)
            return out

    return LmforgeModel(model_name=backend.name)


def run_benchmark(backend: Any, p: DatasetPlan, ctx: dict) -> tuple[dict, list[Review]]:
    """One EvalScope benchmark on `backend`; its report (EvalScope's, plus lmforge's behaviour checks). `ctx`:
    sampling, limit, batch, run_dir, extra (--extra_eval_args) and behaviour (eval/report.py's)."""
    from evalscope.config import TaskConfig
    from evalscope.run import run_task

    from lmforge.thirdparty import nltk_without_punkt

    nltk_without_punkt()
    name = p.task.name
    api = model_api(backend, ctx["sampling"], ctx["batch"])
    extra = dict(ctx["extra"])
    cfg = TaskConfig(
        model=api,
        model_id=backend.name,
        datasets=[name],
        dataset_args={name: dataset_args(name, p.options)},
        limit=ctx["limit"],
        eval_batch_size=ctx["batch"],
        generation_config=generate_config(ctx["sampling"]),
        work_dir=str(ctx["run_dir"]),
        no_timestamp=True,
        **extra,
    )
    try:
        run_task(task_cfg=cfg)
    except (ValueError, FileNotFoundError) as e:  # e.g. no local data and no hub: one line, not a traceback
        raise UserError(f"--eval_dataset {name} (EvalScope): {str(e).splitlines()[0][:300]}")
    path = Path(ctx["run_dir"]) / "reports" / backend.name / f"{name}.json"
    if not path.is_file():
        raise UserError(f"--eval_dataset {name} (EvalScope): no report at {path}", hint="see logs/eval_log.log")
    original = json.loads(path.read_text(encoding="utf-8"))
    # one key added to EvalScope's report: lmforge's checks (report.behaviour, passed in: no import cycle)
    original["behaviour"] = ctx["behaviour"](api.answers)
    with writing("an eval report", path):
        path.write_text(json.dumps(original, ensure_ascii=False, indent=2), encoding="utf-8")
    return summarise(original, name), []


def _metric_name(metric: dict) -> str:
    """EvalScope 1.14's metric identity ({'name': 'rouge', 'dimensions': {'statistic': 'recall', 'variant': 'l'}})
    as one name (rouge-recall-l); its legacy name when it has one."""
    if metric.get("legacy_name"):
        return str(metric["legacy_name"])
    ident = metric.get("identity") or {}
    dims = ident.get("dimensions") or {}
    return "-".join([str(ident.get("name", metric.get("name", "score"))), *(str(dims[k]) for k in sorted(dims))])


def summarise(report: dict, name: str) -> dict:
    """EvalScope's report with what lmforge's table and --fail_on read: each metric's `name`, the primary metric
    first, and its `score` at the top (the file on disk stays EvalScope's)."""
    metrics = [{**m, "name": m.get("name") or _metric_name(m)} for m in report.get("metrics", [])]
    if not metrics:
        raise UserError(f"--eval_dataset {name} (EvalScope): its report has no metrics")
    primary = report.get("primary_metric_identity")
    metrics.sort(key=lambda m: m.get("identity") != primary)  # stable: the primary first
    return {
        **report,
        "dataset_name": report.get("dataset_name") or name,
        "metrics": metrics,
        "score": metrics[0]["score"],
    }
