"""Load test of `lmforge deploy` on the embedded default model: 1 client, then N (64) concurrent streaming clients
with the official openai client, greedy by default (`--temperature 0.7`: sampled rows).

Reports aggregate generated tokens/s against one client, p50/p95 time to first token under load, and errors. The
server is a real subprocess on a free loopback port; every request loop is bounded.
Run: .venv/bin/python bench/serve_load.py [--clients 64] [--max_tokens 32] [--temperature 0.7] [--infer_backend pt]
[--cpu_linear int8]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
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


def main() -> None:
    import openai

    p = argparse.ArgumentParser()
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--infer_backend", default="pt")
    p.add_argument("--max_tokens", type=int, default=32)
    p.add_argument("--temperature", type=float, default=0.0, help="0: greedy; > 0: sampled rows")
    p.add_argument("--cpu_linear", default="default", choices=("default", "bf16_packed", "int8"))
    a = p.parse_args()
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lmforge",
            "deploy",
            "--port",
            str(port),
            "--log_level",
            "warning",
            "--max_batch_size",
            str(a.clients),
            "--infer_backend",
            a.infer_backend,
            *(["--cpu_linear", a.cpu_linear] if a.cpu_linear != "default" else []),
            "--served_model_name",
            "SmolLM2-135M-Instruct",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
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
