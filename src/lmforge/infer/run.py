"""`lmforge infer`: an interactive chat (works with piped stdin) or batch generation over a dataset."""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Any

from lmforge.errors import UserError
from lmforge.infer.engine import ENGINES, SamplingConfig
from lmforge.infer.metrics import METRICS
from lmforge.infer.restore import restore_args, tokenizer_source

HELP = "commands: multi-line, single-line, reset-system, clear, quit/exit"


def sampling(args: Any, batch: bool) -> SamplingConfig:
    g = args.generation
    return SamplingConfig(
        max_new_tokens=g.max_new_tokens or (2048 if batch else 512),
        temperature=0.0 if g.temperature is None else g.temperature,
        top_p=1.0 if g.top_p is None else g.top_p,
        top_k=g.top_k or 0,
        repetition_penalty=g.repetition_penalty or 1.0,
        stop=list(g.stop_words),
    )


def build_engine(args: Any) -> Any:
    """Restore flags from the checkpoint, merge if asked, load the model and wrap it in the chosen engine."""

    from lmforge.infer.generate import load_for_inference
    from lmforge.models.loader import resolve_dtype
    from lmforge.models.setup import setup_tokenizer

    if args.infer.infer_backend not in ("pt", "transformers"):
        ENGINES[args.infer.infer_backend]()  # says what is missing, in one line
    restore_args(args, args.infer.load_args)
    adapters = list(args.tuner.adapters)
    tok_dir = tokenizer_source(args)
    if args.infer.merge_lora and adapters:
        from lmforge.export.merge import merge_adapters

        merged = Path(adapters[0].rstrip("/") + "-merged")
        if not merged.exists():  # as ms-swift: an existing merge is reused
            merge_adapters(args, merged)
        args.model.model, adapters, tok_dir = str(merged), [], None
        args.tuner.adapters = []
    setup = setup_tokenizer(args.model, args.template, tok_dir)
    dtype = resolve_dtype(args.model.torch_dtype)  # bf16 where the hardware has bf16 units (1.7x on this CPU)
    model = load_for_inference(setup.model_dir, adapters, dtype=dtype)
    return ENGINES[args.infer.infer_backend](model, setup.template, args.infer.max_batch_size)


def run_infer(args: Any) -> int:
    if args.infer.load_data_args or args.data.val_dataset:
        return batch(args)
    return interactive(args)


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


def interactive(args: Any) -> int:
    engine = build_engine(args)
    cfg = sampling(args, batch=False)
    stream = True if args.generation.stream is None else args.generation.stream
    print(f"[lmforge] interactive chat; {HELP}")
    history: list[dict] = []
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
            system = _read("<<<[system] ", False)
            engine.template.system = system or None
            history = []
            print("[system prompt set; history cleared]")
            continue
        history.append({"role": "user", "content": query})
        print(">>> ", end="", flush=True)
        if stream:
            answer = ""
            for piece in engine.stream(history, cfg):
                answer += piece
                print(piece, end="", flush=True)
            print()
        else:
            answer = engine.generate([history], cfg)[0].text
            print(answer)
        history.append({"role": "assistant", "content": answer})


def _batch_rows(args: Any, saved: dict | None) -> list[dict]:
    from lmforge.data.pipeline import load_data

    data_args = args.data
    if args.infer.load_data_args:
        if not saved:
            raise UserError("--load_data_args needs a checkpoint with args.json", hint="pass --adapters CKPT")
        run_dir = Path(saved.get("run_dir", ""))
        val_file = run_dir / "val_dataset.jsonl"
        data_args.val_dataset = [str(val_file)] if val_file.is_file() else list(saved.get("val_dataset") or [])
        if not data_args.val_dataset:
            raise UserError("the training run had no validation data", hint="pass --val_dataset FILE")
    bundle = load_data(data_args, use_hf=args.model.use_hf, need_train=False)
    return [json.loads(r) for r in bundle.val["row"]]


def batch(args: Any) -> int:
    saved = restore_args(args, args.infer.load_args)
    rows = _batch_rows(args, saved)
    engine = build_engine(args)
    cfg = sampling(args, batch=True)
    convs, labels = [], []
    for row in rows:
        msgs = row["messages"]
        has_answer = msgs[-1]["role"] == "assistant"
        convs.append(msgs[:-1] if has_answer else msgs)
        labels.append(msgs[-1]["content"] if has_answer else None)
    t0 = time.perf_counter()
    results = engine.generate(convs, cfg)
    seconds = time.perf_counter() - t0
    generated = sum(r.completion_tokens for r in results)
    print(
        f"[lmforge] generated {generated} tokens for {len(results)} prompts in {seconds:.2f} s: "
        f"{generated / max(seconds, 1e-9):.1f} tokens/s (--max_batch_size {args.infer.max_batch_size})"
    )
    path = _result_path(args)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        for conv, label, res in zip(convs, labels, results):
            f.write(
                json.dumps(
                    {
                        "response": res.text,
                        "labels": label,
                        "messages": [*conv, {"role": "assistant", "content": res.text}],
                        "finish_reason": res.finish_reason,
                    },
                    ensure_ascii=False,
                )
                + "\n"
            )
    print(f"[lmforge] {len(results)} answers written to {path}")
    if args.infer.metric:
        pairs = [(r.text, lab) for r, lab in zip(results, labels) if lab is not None]
        score = METRICS[args.infer.metric](pairs)
        print(f"[lmforge] {args.infer.metric}: {score:.4f} over {len(pairs)} rows")
    return 0


def _result_path(args: Any) -> Path:
    if args.infer.result_path:
        return Path(args.infer.result_path)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    if args.tuner.adapters:
        return Path(args.tuner.adapters[0]) / "infer_result" / f"{stamp}.jsonl"
    name = Path(args.model.model or "default").name
    return Path("result") / name / "infer_result" / f"{stamp}.jsonl"
