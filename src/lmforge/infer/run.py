"""`lmforge infer`: an interactive chat (works with piped stdin) or batch generation over a dataset."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmforge.data.converters import RowError
from lmforge.data.loader import location
from lmforge.errors import UserError, writing
from lmforge.infer.engine import sampling_from_args
from lmforge.infer.media import media_prompt, split_media_line
from lmforge.infer.metrics import METRICS
from lmforge.runargs import ResolvedModel, RunArgs, resolve_model
from lmforge.templates.encode import EncodeError

if TYPE_CHECKING:
    from lmforge.args.parser import Args
    from lmforge.infer.engine import Engine

HELP = "commands: multi-line, single-line, reset-system, clear, quit/exit"


def build_engine(args: Args, resolved: ResolvedModel) -> Engine:
    """Merge first if asked (`--merge_lora`), then load the model on the chosen backend."""
    from lmforge.infer.engines import PLACEHOLDERS, engine_from

    backend = args.infer.infer_backend
    if backend in PLACEHOLDERS:
        from lmforge.infer.engines import load_engine

        load_engine(resolved.model, backend=backend)  # says what is missing, in one line
    if args.infer.merge_lora and resolved.adapters.plain:
        from lmforge.export.merge import merge_adapters

        merged = Path(resolved.adapters.plain[0].rstrip("/") + "-merged")
        if not merged.exists():  # as ms-swift: an existing merge is reused
            merge_adapters(resolved, merged)
        resolved = resolved.merged(merged)
    return engine_from(resolved, backend, args.infer.max_batch_size, args.backend)


def run_infer(args: Args) -> int:
    resolved = resolve_model(args, args.infer.load_args)  # --adapters checked here, once
    from lmforge.infer.task_runner import saved_task

    task = saved_task(resolved)
    if task != "causal_lm":  # a classifier or embedding checkpoint (sft --task_type)
        from lmforge.infer.task_batch import check_task_infer, task_batch

        check_task_infer(args, task)
        return task_batch(args, resolved, batch_rows(args, resolved.saved), result_path(args, resolved))
    if args.infer.load_data_args or args.data.val_dataset:
        return batch(args, resolved)
    return interactive(args, resolved)


def _read(prompt: str, multi: bool) -> str | None:
    print(prompt, end="", flush=True)
    line = sys.stdin.readline()
    if not line:
        return None
    if not multi:
        return line.rstrip("\n")
    lines = [line.rstrip("\n")]
    while not lines[-1].endswith("#"):  # multi-line input ends with '#', as in ms-swift
        nxt = sys.stdin.readline()
        if not nxt:
            break
        lines.append(nxt.rstrip("\n"))
    return "\n".join(lines).removesuffix("#")


def interactive(args: Args, resolved: ResolvedModel) -> int:
    engine = build_engine(args, resolved)
    fe = engine.frontend
    cfg = sampling_from_args(args.generation, max_new_tokens=512)
    stream = True if args.generation.stream is None else args.generation.stream
    print(f"[lmforge] interactive chat; {HELP}")
    history: list[dict] = []
    system = fe.system  # reset-system replaces it for this session
    multi = False
    while True:
        query = _read("<<< ", multi)
        if query is None or query.strip() in ("quit", "exit"):
            return 0
        cmd = query.strip()
        if cmd in ("multi-line", "single-line"):
            multi = cmd == "multi-line"
            print(f"[{'multi-line: end your input with #' if multi else 'single-line'}]")
            continue
        if cmd == "clear":
            history = []
            print("[history cleared]")
            continue
        if cmd == "reset-system":
            system = _read("<<<[system] ", False) or None
            history = []
            print("[system prompt set; history cleared]")
            continue
        try:
            query, found = split_media_line(query)  # `<image>cat.png what is this?`
            turn = {"role": "user", "content": query, **{col: srcs for col, srcs in found.items() if srcs}}
            seen = {col: [p for m in [*history, turn] for p in m.get(col, [])] for col in found}
            prompt = media_prompt(
                fe, [*history, turn], seen["images"], seen["videos"], audios=seen["audios"], system=system
            )
        except (UserError, RowError, EncodeError) as e:
            print(f"[{e}]")  # a bad image path: say so and ask again
            continue
        history.append(turn)
        print(">>> ", end="", flush=True)
        if stream:
            answer = ""
            for event in engine.stream(prompt, cfg):
                answer += event.text
                print(event.text, end="", flush=True)
            print()
        else:
            answer = engine.generate([prompt], cfg)[0].text
            print(answer)
        history.append({"role": "assistant", "content": answer})


def batch_rows(args: Args, saved: RunArgs | None) -> list[dict]:
    from lmforge.data.pipeline import load_data

    data_args = args.data
    if args.infer.load_data_args:
        if not saved:
            raise UserError("--load_data_args needs a checkpoint with args.json", hint="pass --adapters CKPT")
        val_file = Path(saved.run_dir or "") / "val_dataset.jsonl"
        val = [str(val_file)] if saved.run_dir and val_file.is_file() else list(saved.val_dataset)
        if not val:
            raise UserError("the training run had no validation data", hint="pass --val_dataset FILE")
        data_args = dataclasses.replace(data_args, val_dataset=val)
    bundle = load_data(data_args, use_hf=args.model.use_hf, need_train=False)
    return [json.loads(r) for r in bundle.val["row"]]


def batch(args: Args, resolved: ResolvedModel) -> int:
    rows = batch_rows(args, resolved.saved)
    engine = build_engine(args, resolved)
    cfg = sampling_from_args(args.generation, max_new_tokens=2048)
    convs, labels = [], []
    for row in rows:
        msgs = row["messages"]
        has_answer = msgs[-1]["role"] == "assistant"
        convs.append(msgs[:-1] if has_answer else msgs)
        labels.append(_label(msgs[-1]) if has_answer else None)
    prompts = [_prompt(engine, c, row) for c, row in zip(convs, rows)]
    t0 = time.perf_counter()
    results = engine.generate(prompts, cfg)
    seconds = time.perf_counter() - t0
    generated = sum(r.completion_tokens for r in results)
    print(
        f"[lmforge] generated {generated} tokens for {len(results)} prompts in {seconds:.2f} s: "
        f"{generated / max(seconds, 1e-9):.1f} tokens/s (--max_batch_size {args.infer.max_batch_size}, "
        f"on {engine.capabilities.device})"
    )
    path = result_path(args, resolved)
    with writing("the results", path), _opened(path) as f:
        for conv, label, res, row in zip(convs, labels, results, rows):
            f.write(json.dumps(_result_row(engine, conv, label, res, row), ensure_ascii=False) + "\n")
    print(f"[lmforge] {len(results)} answers written to {path}")
    if args.infer.metric:
        pairs = [(r.text, lab) for r, lab in zip(results, labels) if lab is not None]
        score = METRICS[args.infer.metric](pairs)
        scores = score if isinstance(score, dict) else {args.infer.metric: score}
        shown = ", ".join(f"{k}: {v:.4f}" for k, v in scores.items())
        print(f"[lmforge] {shown} over {len(pairs)} rows")
    return 0


def _result_row(engine: Engine, conv: list[dict], label: str | None, res: Any, row: dict) -> dict:
    """One result line. A row with `tools` has the answer's calls parsed, as deploy does (the family's markup):
    `tool_calls` in the row and in the assistant message, whose `content` is the text outside the markup."""
    from lmforge.infer.frontend import assistant_message

    out = {"response": res.text, "labels": label, "finish_reason": res.finish_reason}
    if row.get("tools"):
        msg, called = assistant_message(res.text, engine.frontend.tool_parser)
        if called:
            out["tool_calls"] = msg["tool_calls"]
            out["finish_reason"] = "tool_calls"
    else:
        msg = {"role": "assistant", "content": res.text}
    return {**out, "messages": [*conv, msg]}


def _prompt(engine: Engine, conv: list[dict], row: dict) -> Any:
    """Prompt ids, with the row's images for a vision-language model (one line for a bad row)."""
    try:
        media = (row.get("images") or [], row.get("videos") or [], row.get("objects"))
        return media_prompt(engine.frontend, conv, *media, audios=row.get("audios") or [], tools=row.get("tools"))
    except (RowError, EncodeError) as e:
        where = location(row["_src"], row["_idx"]) if "_src" in row else "row"
        raise UserError(f"{where}: {e}")


def _label(answer: dict) -> str:
    """The reference answer: its text, or its tool calls as JSON (what `--metric toolcall` compares)."""
    return json.dumps(answer["tool_calls"], ensure_ascii=False) if answer.get("tool_calls") else answer["content"]


def result_path(args: Args, resolved: ResolvedModel) -> Path:
    if args.infer.result_path:
        return Path(args.infer.result_path)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    if resolved.adapters.paths:
        return Path(resolved.adapters.paths[0]) / "infer_result" / f"{stamp}.jsonl"
    name = Path(resolved.model or "default").name
    return Path("result") / name / "infer_result" / f"{stamp}.jsonl"


def _opened(path: Path) -> Any:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("a", encoding="utf-8")
