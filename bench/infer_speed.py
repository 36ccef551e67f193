"""Batched generation on the embedded default model: 16 prompts, 64 new tokens, greedy.

Prints generated tokens/s at --max_batch_size 1, 4 and 16, and time to first token when streaming.
Run: .venv/bin/python bench/infer_speed.py
"""

from __future__ import annotations

import statistics
import time

PROMPTS = [f"Write two sentences about the number {i}." for i in range(16)]


def main() -> None:
    import torch

    from lmforge.infer.engine import SamplingConfig
    from lmforge.infer.engines import load_engine

    cfg = SamplingConfig(max_new_tokens=64)
    for dtype in (torch.float32, torch.bfloat16):
        engine = load_engine(None, dtype=dtype)
        prompts = [engine.frontend.prompt_ids([{"role": "user", "content": p}]) for p in PROMPTS]
        print(f"dtype {str(dtype).replace('torch.', '')} on {engine.capabilities.device}:")
        for bs in (1, 4, 16):
            engine.max_batch_size = bs
            engine.generate(prompts[:1], SamplingConfig(max_new_tokens=4))  # warm-up
            t0 = time.perf_counter()
            out = engine.generate(prompts, cfg)
            dt = time.perf_counter() - t0
            tokens = sum(c.completion_tokens for c in out)
            print(f"  --max_batch_size {bs:>2}: {tokens / dt:6.1f} generated tokens/s ({tokens} tokens, {dt:.1f} s)")
        ttft = []
        for prompt in prompts[:4]:
            t0 = time.perf_counter()
            next(iter(engine.stream(prompt, SamplingConfig(max_new_tokens=8))))
            ttft.append(time.perf_counter() - t0)
        print(f"  streaming time to first token: {1000 * statistics.median(ttft):.0f} ms (median of 4)")


if __name__ == "__main__":
    main()
