"""Batch-1 greedy decode on the embedded model: the PyTorch engine (fp32 and bf16) against llama.cpp
(`--infer_backend llamacpp`, the Q4_1 GGUF itself), same prompts and token ids, side by side in one run.

Prints decode tokens/s per engine, the ratio to PyTorch fp32, and whether the greedy tokens agree.
Run: OMP_NUM_THREADS=2 .venv/bin/python bench/llamacpp_speed.py
"""

from __future__ import annotations

import time

PROMPTS = [f"Write two sentences about the number {i}." for i in range(4)]


def _run(engine, prompts, cfg):  # noqa: ANN001, ANN202
    engine.generate(prompts[:1], type(cfg)(max_new_tokens=4))  # warm-up
    t0 = time.perf_counter()
    out = [engine.generate([p], cfg)[0] for p in prompts]  # batch 1, one after another
    dt = time.perf_counter() - t0
    return out, sum(c.completion_tokens for c in out) / dt


def main() -> None:
    from lmforge.infer.engine import SamplingConfig
    from lmforge.infer.engines import load_engine

    cfg = SamplingConfig(max_new_tokens=64)
    rows, ref = [], None
    for name, kw in (("pt float32", {"dtype": "float32"}), ("pt bfloat16", {"dtype": "bfloat16"}), ("llamacpp", {})):
        engine = load_engine(None, backend="llamacpp" if name == "llamacpp" else "pt", **kw)
        prompts = [engine.frontend.prompt_ids([{"role": "user", "content": p}]) for p in PROMPTS]
        out, speed = _run(engine, prompts, cfg)
        ref = ref or (out, speed)
        same = sum(a.token_ids == b.token_ids for a, b in zip(out, ref[0]))
        rows.append((name, speed, speed / ref[1], same))
        del engine
    print(f"{'engine':<12} {'tokens/s':>9} {'x pt fp32':>9}  greedy tokens equal to pt fp32")
    for name, speed, ratio, same in rows:
        print(f"{name:<12} {speed:9.1f} {ratio:9.2f}  {same}/{len(PROMPTS)}")


if __name__ == "__main__":
    main()
