"""Batch-1 greedy decode on the embedded model, side by side in one run: today's PyTorch engine path (HF
`generate` behind the dynamic-batching scheduler), the continuous-batching loop (infer/continuous.py), and
llama.cpp (`--infer_backend llamacpp`, the Q4_1 GGUF itself) when llama-cpp-python is installed.

Same prompts and token ids for every engine. Per engine: decode tokens/s (tokens after the first, over the time
after the first), time to first token, the ratio to today's path, and whether the greedy tokens agree with it.
Run: OMP_NUM_THREADS=2 .venv/bin/python bench/decode_speed.py [--prompts 3] [--max_new_tokens 64]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time


def _timed(engine, prompt, cfg):  # noqa: ANN001, ANN202
    t0 = time.perf_counter()
    stamps, ids = [], []
    for event in engine.stream(prompt, cfg):
        if event.token_id is not None:
            stamps.append(time.perf_counter())
            ids.append(event.token_id)
    return ids, stamps[0] - t0, (len(stamps) - 1) / max(stamps[-1] - stamps[0], 1e-9)


def _engines(dtype: str):  # noqa: ANN202
    """(name, engine) pairs: the continuous and the scheduler path share one loaded model."""
    from lmforge.infer.engines import load_engine
    from lmforge.infer.pt import PtEngine

    fast = load_engine(None, dtype=dtype, max_batch_size=1)
    yield f"pt {dtype} today (scheduler)", PtEngine(fast.model, fast.frontend, max_batch_size=1)
    yield f"pt {dtype} continuous", fast
    if importlib.util.find_spec("llama_cpp"):
        yield "llamacpp Q4_1", load_engine(None, backend="llamacpp")


def main() -> None:
    from lmforge.infer.engine import SamplingConfig

    p = argparse.ArgumentParser()
    p.add_argument("--prompts", type=int, default=3)
    p.add_argument("--max_new_tokens", type=int, default=64)
    p.add_argument("--dtype", default="float32")
    a = p.parse_args()
    cfg = SamplingConfig(max_new_tokens=a.max_new_tokens)
    questions = [f"Write two sentences about the number {i}." for i in range(a.prompts)]
    rows, ref = [], None
    for name, engine in _engines(a.dtype):
        prompts = [engine.frontend.prompt_ids([{"role": "user", "content": q}]) for q in questions]
        engine.generate(prompts[:1], SamplingConfig(max_new_tokens=4))  # warm-up
        runs = [_timed(engine, prompt, cfg) for prompt in prompts]  # batch 1, one after another
        speed, ttft = statistics.mean(r[2] for r in runs), statistics.median(r[1] for r in runs)
        ref = ref or (runs, speed)
        same = sum(r[0] == want[0] for r, want in zip(runs, ref[0]))
        rows.append((name, speed, ttft, speed / ref[1], same))
        print(f"  {name}: {speed:.1f} tokens/s", flush=True)
    print(f"\n{'engine':<30} {'decode tok/s':>12} {'TTFT ms':>8} {'x today':>8}  greedy tokens equal to today's")
    for name, speed, ttft, ratio, same in rows:
        print(f"{name:<30} {speed:12.1f} {1000 * ttft:8.0f} {ratio:8.2f}  {same}/{len(questions)}")


if __name__ == "__main__":
    main()
