"""Time to first streamed token in ms-swift's TransformersEngine (run in its venv): python ttft_swift.py DIR SYSTEM."""

import statistics
import sys
import time

from swift.infer_engine import InferRequest, RequestConfig, TransformersEngine

engine = TransformersEngine(sys.argv[1], model_type="llama", template_type="chatml")
engine.template.template_meta.default_system = sys.argv[2]


def first(i: int) -> float:
    req = InferRequest(messages=[{"role": "user", "content": f"Write two sentences about the number {i}."}])
    t0 = time.perf_counter()
    next(iter(engine.infer([req], RequestConfig(max_tokens=8, temperature=0, stream=True))[0]))
    return time.perf_counter() - t0


first(99)
print("TTFT", statistics.median(first(i) for i in range(4)))
