"""`--infer_backend llamacpp`: a GGUF model run in-process by llama-cpp-python (the `llamacpp` extra).

Same front end as every engine (lmforge's chat template and tokenizer make the token ids; llama.cpp only sees
ids) and the same sampling: every llama.cpp sampler setting is passed explicitly from the SamplingConfig, so none
of its defaults (top_k 40, top_p 0.95, min_p 0.05, temperature 0.8, ...) applies. One sequence at a time: requests
queue on a lock; llama.cpp reuses the KV cache of a shared prompt prefix between calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmforge.errors import UserError
from lmforge.infer.engine import Capabilities, Engine, EngineError, StreamEvent, completion_of
from lmforge.infer.frontend import Frontend

if TYPE_CHECKING:
    from lmforge.infer.engine import Completion, SamplingConfig, Score


def sampler_kwargs(cfg: SamplingConfig) -> dict[str, Any]:
    """The SamplingConfig as `Llama.generate` keywords, every sampler named (off = its neutral value)."""
    return {
        "temp": cfg.temperature,  # 0: greedy (argmax)
        "top_k": cfg.top_k,  # 0: off
        "top_p": cfg.top_p,
        "min_p": 0.0,
        "typical_p": 1.0,
        "repeat_penalty": cfg.repetition_penalty,
        "frequency_penalty": 0.0,
        "presence_penalty": 0.0,
        "tfs_z": 1.0,
        "mirostat_mode": 0,  # off: its tau/eta below are then unused, but set so no default is implied
        "mirostat_tau": 5.0,
        "mirostat_eta": 0.1,
        "penalize_nl": True,  # only matters with a repeat penalty, which then applies to newlines too (as in HF)
    }


def find_gguf(model: str | Path | None, gguf_file: str | None = None) -> Path:
    """The GGUF file to run: the embedded model, a .gguf path, or a directory's one .gguf (or --gguf_file)."""
    from lmforge.models.loader import EMBEDDED_ALIASES, embedded_gguf

    if model is None or str(model).lower() in EMBEDDED_ALIASES:
        return embedded_gguf()
    path = Path(model).expanduser()
    if path.is_dir():
        found = [path / gguf_file] if gguf_file else sorted(path.glob("*.gguf"))
        if len(found) == 1 and found[0].is_file():
            return found[0]
        raise UserError(
            f"--infer_backend llamacpp: {path} has no single .gguf file",
            hint="pass the .gguf file, or --gguf_file NAME; export one with `lmforge export --to_gguf`",
        )
    if path.suffix != ".gguf" or not path.is_file():
        raise UserError(f"--infer_backend llamacpp: --model {model} is not a .gguf file", hint="pass a GGUF model")
    return path


class LlamaCppEngine(Engine):
    def __init__(self, llama: Any, frontend: Frontend, model_path: str):
        self.llama, self.frontend, self.model_path = llama, frontend, model_path
        self.stop_ids = frozenset(frontend.stop_ids)
        self.capabilities = Capabilities(max_length=int(llama.n_ctx()), device="cpu")
        self._lock = threading.Lock()
        # llama-cpp-python versions differ in which samplers generate() still takes (tfs_z, penalize_nl went away)
        self._accepted = set(inspect.signature(llama.generate).parameters)

    def _tokens(self, prompt: list[int], cfg: SamplingConfig, cancelled: threading.Event) -> Iterator[StreamEvent]:
        if not prompt:
            raise ValueError("an empty prompt: give at least one token")
        if cfg.logprobs is not None:
            raise ValueError("--infer_backend llamacpp does not return logprobs; use --infer_backend pt")
        decoder = self.frontend.decoder(cfg.stop)
        with self._lock:
            if cfg.seed is not None:
                self.llama.set_seed(cfg.seed)
            made = 0
            try:
                for tok in self.llama.generate(list(prompt), reset=True, **self._sampling(cfg)):
                    made += 1
                    if tok in self.stop_ids:
                        yield StreamEvent(tok, decoder.flush(), finish_reason="stop")
                        return
                    text = decoder.add(tok)
                    if decoder.stopped:
                        yield StreamEvent(tok, text + decoder.flush(), finish_reason="stop")
                        return
                    if cancelled.is_set():
                        yield StreamEvent(tok, text + decoder.flush(), finish_reason="cancelled")
                        return
                    if made >= cfg.max_new_tokens or len(prompt) + made >= self.capabilities.max_length:
                        yield StreamEvent(tok, text + decoder.flush(), finish_reason="length")
                        return
                    yield StreamEvent(tok, text)
            except (RuntimeError, ValueError) as e:  # llama.cpp's decode failures
                raise EngineError(f"llama.cpp: {e}") from e

    def _sampling(self, cfg: SamplingConfig) -> dict[str, Any]:
        return {k: v for k, v in sampler_kwargs(cfg).items() if k in self._accepted}

    def stream(
        self, prompt_ids: list[int], cfg: SamplingConfig, *, adapter: str | None = None
    ) -> Iterator[StreamEvent]:
        self._no_adapter(adapter)
        yield from self._tokens(prompt_ids, cfg, threading.Event())

    def generate(
        self, prompts: list[list[int]], cfg: SamplingConfig, *, adapter: str | None = None
    ) -> list[Completion]:
        self._no_adapter(adapter)
        return [completion_of(list(self._tokens(p, cfg, threading.Event())), len(p)) for p in prompts]

    async def agenerate(
        self, prompts: list[list[int]], cfg: SamplingConfig, *, adapter: str | None = None
    ) -> list[Completion]:
        return await asyncio.to_thread(self.generate, prompts, cfg, adapter=adapter)

    async def astream(
        self, prompt_ids: list[int], cfg: SamplingConfig, *, adapter: str | None = None
    ) -> AsyncIterator[StreamEvent]:
        self._no_adapter(adapter)
        loop, events = asyncio.get_running_loop(), asyncio.Queue()
        cancelled = threading.Event()

        def pump() -> None:
            try:
                for event in self._tokens(prompt_ids, cfg, cancelled):
                    loop.call_soon_threadsafe(events.put_nowait, event)
            except (EngineError, ValueError) as e:
                loop.call_soon_threadsafe(events.put_nowait, EngineError(str(e)))

        worker = loop.run_in_executor(None, pump)
        try:
            while True:
                event = await events.get()
                if isinstance(event, EngineError):
                    raise event
                yield event
                if event.finish_reason is not None:
                    return
        finally:
            cancelled.set()
            with contextlib.suppress(Exception):
                await asyncio.shield(worker)

    def score(
        self, prompts: list[list[int]], continuations: list[list[int]], *, adapter: str | None = None, top: int = 0
    ) -> list[Score]:
        raise EngineError("--infer_backend llamacpp does not score continuations; use --infer_backend pt")

    def _no_adapter(self, adapter: str | None) -> None:
        if adapter is not None:
            raise ValueError(f"unknown adapter '{adapter}': the llamacpp backend runs the GGUF as it is")


def load_llamacpp_engine(model: str | Path | None, adapters: dict[str, str] | None = None, **kw: Any) -> Engine:
    """The factory `load_engine(backend="llamacpp")` calls: GGUF weights in llama.cpp, tokenizer and template
    from the same GGUF (converted once, as for the PyTorch engine)."""
    import dataclasses

    from lmforge.args import ModelArgs, TemplateArgs
    from lmforge.models.setup import setup_tokenizer
    from lmforge.thirdparty import llama_without_extra_buffers

    if adapters or kw.get("base_adapters"):
        raise UserError(
            "--infer_backend llamacpp runs a GGUF as it is: it takes no --adapters",
            hint="merge first (`lmforge export --merge_lora true`, then export a GGUF), or use --infer_backend pt",
        )
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        raise UserError(
            "--infer_backend llamacpp needs llama-cpp-python", hint="pip install 'lmforge[llamacpp]'"
        ) from None
    margs = kw.get("model_args") or ModelArgs()
    gguf = find_gguf(model, margs.gguf_file)
    threads = int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1)
    try:  # before the tokenizer: a file that is no model fails here, in one line
        llama = llama_without_extra_buffers(model_path=str(gguf), n_ctx=4096, n_threads=threads, seed=0, verbose=False)
    except (ValueError, RuntimeError) as e:
        raise UserError(f"--infer_backend llamacpp: {gguf} is not a GGUF model llama.cpp can load ({e})") from None
    margs = dataclasses.replace(margs, model=None if model is None else str(model))
    setup = setup_tokenizer(margs, kw.get("template_args") or TemplateArgs(), kw.get("tokenizer_dir"))
    return LlamaCppEngine(llama, Frontend(setup.template), str(gguf))
