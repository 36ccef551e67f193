"""Flags of the sidecar backends (`--infer_backend vllm|sglang|lmdeploy`): which Python runs the backend's own
server, how long to wait for it, and ms-swift's `--vllm_*` / `--sglang_*` / `--lmdeploy_*` engine settings, passed
through to the server's command line. A group like the others in groups.py (its own file so it stays small);
torch-free."""

from __future__ import annotations

from dataclasses import dataclass

from lmforge.args.groups import POSITIVE, flag

SIDECAR_BACKENDS = ("vllm", "sglang", "lmdeploy")
ALL_BACKENDS = ("pt", "transformers", "llamacpp", *SIDECAR_BACKENDS)
BACKEND_HELP = "pt/transformers (PyTorch), llamacpp (a GGUF via llama-cpp-python), vllm, sglang, lmdeploy (servers)"


@dataclass
class BackendArgs:
    cpu_linear: str = flag(
        "default",
        "pt on CPU, no adapters: how linear layers run: default (as loaded), bf16_packed (oneDNN-prepacked bf16"
        " weights, same greedy tokens), int8 (weight-only int8, per-channel scales; tokens may differ), int4 (bf16"
        " weights to 4 bits per 32-block, the head int8: fastest decode, exact for a Q4_1 GGUF's layers)",
        choices=("default", "bf16_packed", "int8", "int4"),
    )
    infer_backend_python: str | None = flag(
        None, "vllm/sglang/lmdeploy: the Python whose environment has the backend (default: this one)"
    )
    infer_backend_timeout: int = flag(900, "seconds to wait for the backend's server to answer", **POSITIVE)
    vllm_gpu_memory_utilization: float = flag(0.9, "vLLM: fraction of GPU memory it may take", gt=0, le=1)
    vllm_tensor_parallel_size: int = flag(1, "vLLM: GPUs per model replica (tensor parallel)", **POSITIVE)
    vllm_pipeline_parallel_size: int = flag(1, "vLLM: pipeline stages", **POSITIVE)
    vllm_data_parallel_size: int = flag(1, "vLLM: model replicas", **POSITIVE)
    vllm_max_num_seqs: int = flag(256, "vLLM: sequences per batch", **POSITIVE)
    vllm_max_model_len: int | None = flag(None, "vLLM: context length (default: the model's)", **POSITIVE)
    vllm_enforce_eager: bool = flag(False, "vLLM: no CUDA graphs (less memory, slower)")
    vllm_max_lora_rank: int = flag(16, "vLLM: largest LoRA rank served; must be >= every adapter's r", **POSITIVE)
    vllm_enable_prefix_caching: bool = flag(False, "vLLM: reuse the KV cache of shared prompt prefixes")
    vllm_quantization: str | None = flag(None, "vLLM: weight quantization method (awq, gptq, fp8, ...)")
    vllm_engine_kwargs: str | None = flag(
        None, 'vLLM: JSON of more server flags, e.g. \'{"kv_cache_dtype": "fp8"}\'', kind="json", json_type=dict
    )
    sglang_tp_size: int = flag(1, "SGLang: tensor parallel size", **POSITIVE)
    sglang_mem_fraction_static: float | None = flag(None, "SGLang: fraction of GPU memory for weights + KV", gt=0, le=1)
    sglang_context_length: int | None = flag(None, "SGLang: context length (default: the model's)", **POSITIVE)
    lmdeploy_tp: int = flag(1, "LMDeploy: tensor parallel size", **POSITIVE)
    lmdeploy_session_len: int | None = flag(None, "LMDeploy: context length (default: the model's)", **POSITIVE)
    lmdeploy_cache_max_entry_count: float = flag(
        0.8, "LMDeploy: fraction of free GPU memory for the KV cache", gt=0, le=1
    )
