"""The engine table: `--infer_backend NAME` -> a factory building an `Engine` (infer/engine.py) from paths.

The PyTorch engine and llama.cpp (`llamacpp`, a GGUF through llama-cpp-python) are in-process; vLLM, SGLang and
LMDeploy run as sidecar servers from their own environments (each pins its own torch) behind the same interface
(infer/sidecar.py, infer/remote.py); `backend_args` carries their flags (args/backend_args.py).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmforge.errors import UserError
from lmforge.infer.engine import Engine

if TYPE_CHECKING:
    from lmforge.args import ModelArgs, TemplateArgs
    from lmforge.runargs import ResolvedModel


EngineFactory = Callable[..., Engine]
ENGINES: dict[str, EngineFactory] = {}


def register_engine(*names: str) -> Callable[[EngineFactory], EngineFactory]:
    """Register a factory `(model, adapters, *, dtype, device, ...) -> Engine` under `--infer_backend` names."""

    def deco(fn: EngineFactory) -> EngineFactory:
        for name in names:
            ENGINES[name] = fn
        return fn

    return deco


@register_engine("pt", "transformers")
def _pt_engine(model: str | Path, adapters: dict[str, str] | None = None, **kw: Any) -> Engine:
    from lmforge.infer.loading import load_pt_engine

    opts = kw.pop("backend_args", None)  # the server backends' flags, and --cpu_linear
    return load_pt_engine(model, adapters or {}, cpu_linear=getattr(opts, "cpu_linear", "default"), **kw)


@register_engine("llamacpp")
def _llamacpp_engine(model: str | Path | None, adapters: dict[str, str] | None = None, **kw: Any) -> Engine:
    from lmforge.infer.llamacpp import load_llamacpp_engine

    return load_llamacpp_engine(model, adapters, **kw)


PLACEHOLDERS: set[str] = set()  # backends that only say what is missing (a command may ask them first)


def _sidecar(backend: str) -> EngineFactory:
    def make(model: str | Path | None, adapters: dict[str, str] | None = None, **kw: Any) -> Engine:
        from lmforge.infer.sidecar import load_sidecar_engine

        return load_sidecar_engine(backend, model, adapters or {}, **kw)

    return make


def register_sidecar(name: str, launcher: Any) -> None:
    """A server backend (an infer.sidecar.Launcher) under `--infer_backend NAME` (plug-ins; the tests' stand-in)."""
    from lmforge.infer.sidecar import SIDECARS

    SIDECARS[name] = launcher
    register_engine(name)(_sidecar(name))


for _name in ("vllm", "sglang", "lmdeploy"):  # their own OpenAI servers, from their own Python (infer/sidecar.py)
    register_engine(_name)(_sidecar(_name))


def load_engine(
    model: str | Path | None,
    adapters: dict[str, str] | None = None,
    backend: str = "pt",
    dtype: Any = None,
    device: str | None = None,
    *,
    base_adapters: list[str] | tuple[str, ...] = (),
    model_args: ModelArgs | None = None,
    template_args: TemplateArgs | None = None,
    tokenizer_dir: str | Path | None = None,
    max_batch_size: int = 16,
    backend_args: Any = None,
) -> Engine:
    """An engine from paths: `model` (None: the embedded default), named `adapters` {name: path} a request picks
    by name, `base_adapters` applied always (in order). `dtype` is a torch dtype or a `--torch_dtype` name (None:
    bf16 where the hardware has bf16 units); `device` None picks CUDA when present, else the CPU
    (`model_args.device_map`, when set, wins). Other model/template flags come from `model_args`/`template_args`."""
    if backend not in ENGINES:
        raise UserError(f"--infer_backend {backend}: unknown; known: {', '.join(ENGINES)}")
    return ENGINES[backend](
        model,
        dict(adapters or {}),
        dtype=dtype,
        device=device,
        base_adapters=tuple(base_adapters),
        model_args=model_args,
        template_args=template_args,
        tokenizer_dir=tokenizer_dir,
        max_batch_size=max_batch_size,
        backend_args=backend_args,
    )


def engine_from(resolved: ResolvedModel, backend: str, max_batch_size: int, backend_args: Any = None) -> Engine:
    """The engine a command runs on, from its resolved model (flags > args.json > defaults)."""
    return load_engine(
        resolved.model,
        resolved.adapters.named,
        backend=backend,
        base_adapters=resolved.adapters.plain,
        model_args=resolved.model_args,
        template_args=resolved.template_args,
        tokenizer_dir=resolved.tokenizer_dir,
        max_batch_size=max_batch_size,
        backend_args=backend_args,
    )
