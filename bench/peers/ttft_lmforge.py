"""Time to first streamed token in lmforge's engine: python ttft_lmforge.py MODEL_DIR SYSTEM (prints TTFT <s>)."""

import statistics
import sys
import time

from lmforge.args import TemplateArgs
from lmforge.infer.engine import SamplingConfig
from lmforge.infer.engines import load_engine

# fp32 as before the engine seam, so the figure stays comparable with earlier runs
engine = load_engine(sys.argv[1], dtype="float32", template_args=TemplateArgs(system=sys.argv[2]))


def first(i: int) -> float:
    conv = [{"role": "user", "content": f"Write two sentences about the number {i}."}]
    t0 = time.perf_counter()
    next(iter(engine.stream(engine.frontend.prompt_ids(conv), SamplingConfig(max_new_tokens=8))))
    return time.perf_counter() - t0


first(99)
print("TTFT", statistics.median(first(i) for i in range(4)))
