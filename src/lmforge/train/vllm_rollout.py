"""GRPO rollouts with vLLM (`--use_vllm`, GPU only): trl's own two modes, configured from ms-swift's flags.

- `--vllm_mode colocate`: vLLM inside the trainer process; `--vllm_gpu_memory_utilization`,
  `--vllm_tensor_parallel_size` and `--vllm_max_model_len` pass through to trl.
- `--vllm_mode server`: trl's `vllm-serve` server, which trl syncs the weights into after each step. With
  `--vllm_server_host` lmforge uses that server; without it lmforge starts one itself from
  `--infer_backend_python` (vLLM pins its own torch) as a sidecar it owns (infer/sidecar.py), on a free port.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lmforge.train.job import Job


def vllm_rollout(job: Job) -> dict[str, Any]:
    """trl GRPOConfig fields for `--use_vllm`."""
    r, b = job.args.rlhf, job.args.backend
    out: dict[str, Any] = {"vllm_mode": r.vllm_mode, "vllm_server_timeout": r.vllm_server_timeout}
    if r.vllm_mode == "colocate":
        out.update(
            vllm_gpu_memory_utilization=b.vllm_gpu_memory_utilization,
            vllm_tensor_parallel_size=b.vllm_tensor_parallel_size,
            vllm_max_model_length=b.vllm_max_model_len,
        )
    elif r.vllm_server_host:
        out.update(vllm_server_host=r.vllm_server_host, vllm_server_port=r.vllm_server_port)
    else:
        out["vllm_server_base_url"] = start_trl_server(job)
    return out


def start_trl_server(job: Job) -> str:
    """trl's `vllm-serve` for the policy's base model, from the vLLM environment, owned by lmforge."""
    from lmforge.infer.sidecar import HOST, Sidecar, check_installed, find_python, free_port

    b = job.args.backend
    python = find_python(b.infer_backend_python)
    for package in ("vllm", "trl"):
        check_installed("--use_vllm --vllm_mode server", package, f"pip install {package}", python)
    port = free_port()
    argv = [python, "-m", "trl.scripts.vllm_serve", "--model", str(job.setup.model_dir), "--host", HOST]
    argv += ["--port", str(port), "--gpu_memory_utilization", str(b.vllm_gpu_memory_utilization)]
    argv += ["--tensor_parallel_size", str(b.vllm_tensor_parallel_size)]
    if b.vllm_max_model_len:
        argv += ["--max_model_len", str(b.vllm_max_model_len)]
    server = Sidecar("vllm (trl vllm-serve)", argv, port, ready_path="/health/")
    server.wait_ready(b.infer_backend_timeout)
    return server.url
