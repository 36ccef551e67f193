"""Time to first streamed token in lmforge's engine: python ttft_lmforge.py MODEL_DIR SYSTEM (prints TTFT <s>)."""

import statistics
import sys
import time

from lmforge.args import ModelArgs, TemplateArgs
from lmforge.infer.engine import PtEngine, SamplingConfig
from lmforge.infer.generate import load_for_inference
from lmforge.models.setup import setup_tokenizer

setup = setup_tokenizer(ModelArgs(model=sys.argv[1]), TemplateArgs(system=sys.argv[2]))
engine = PtEngine(load_for_inference(setup.model_dir, []), setup.template)


def first(i: int) -> float:
    conv = [{"role": "user", "content": f"Write two sentences about the number {i}."}]
    t0 = time.perf_counter()
    next(iter(engine.stream(conv, SamplingConfig(max_new_tokens=8))))
    return time.perf_counter() - t0


first(99)
print("TTFT", statistics.median(first(i) for i in range(4)))
