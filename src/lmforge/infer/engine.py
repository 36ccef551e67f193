"""One generation interface (sync and async, streaming or not, batched) with the PyTorch engine implemented.

vLLM, SGLang and LMDeploy plug in behind the same interface (`ENGINES`); each imports its library only when chosen
and says in one line what is missing (library or GPU).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from lmforge.errors import UserError


@dataclass
class SamplingConfig:
    max_new_tokens: int = 512
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None


@dataclass
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" or "length"


class PtEngine:
    """transformers `generate` on a loaded model: left-padded batches, each row stops at its own end."""

    def __init__(self, model: Any, template: Any, max_batch_size: int = 1):
        self.model = model
        self.template = template
        self.tokenizer = template.tokenizer
        self.max_batch_size = max_batch_size
        self._lock = threading.Lock()  # one generate at a time per model; callers batch instead
        tok = self.tokenizer
        self.stop_ids = template.stop_ids()
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else self.stop_ids[0]

    def _gen_kwargs(self, cfg: SamplingConfig) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "max_new_tokens": cfg.max_new_tokens,
            "eos_token_id": self.stop_ids,
            "pad_token_id": self.pad_id,
            "do_sample": cfg.temperature > 0,
            "repetition_penalty": cfg.repetition_penalty,
        }
        if cfg.temperature > 0:
            kw.update(temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k or None)
        else:  # quiet the model's own sampling defaults in greedy mode
            kw.update(temperature=None, top_p=None, top_k=None)
        if cfg.stop:
            kw.update(stop_strings=cfg.stop, tokenizer=self.tokenizer)
        return kw

    def _prompt(self, conv: list[dict], tools: list | None, template_kwargs: dict | None) -> list[int]:
        return self.template.prompt_ids(conv, tools, **(template_kwargs or {}))

    def _finish(self, text: str, new_ids: list[int], cfg: SamplingConfig) -> tuple[str, str]:
        reason = "stop" if (new_ids and new_ids[-1] in self.stop_ids) else "length"
        for s in cfg.stop:
            if s in text:
                text, reason = text[: text.index(s)], "stop"
        return text, reason

    def generate(
        self,
        conversations: list[list[dict]],
        cfg: SamplingConfig,
        tools: list | None = None,
        template_kwargs: dict | None = None,
    ) -> list[Completion]:
        import torch

        prompts = [self._prompt(c, tools, template_kwargs) for c in conversations]
        out: list[Completion] = []
        size = len(prompts) if self.max_batch_size <= 0 else self.max_batch_size
        for start in range(0, len(prompts), size):
            chunk = prompts[start : start + size]
            width = max(len(p) for p in chunk)
            ids = torch.tensor([[self.pad_id] * (width - len(p)) + p for p in chunk])
            mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in chunk])
            if cfg.seed is not None:
                torch.manual_seed(cfg.seed)
            with self._lock, torch.inference_mode():
                gen = self.model.generate(input_ids=ids, attention_mask=mask, **self._gen_kwargs(cfg))
            for p, row in zip(chunk, gen[:, width:].tolist()):
                new = row
                while new and new[-1] == self.pad_id and self.pad_id not in self.stop_ids:
                    new = new[:-1]
                # drop everything after the first stop token (padding of finished rows)
                cut = next((i + 1 for i, t in enumerate(new) if t in self.stop_ids), len(new))
                new = new[:cut]
                text, reason = self._finish(self.tokenizer.decode(new, skip_special_tokens=True), new, cfg)
                out.append(Completion(text, len(p), len(new), reason))
        return out

    def stream(
        self,
        conversation: list[dict],
        cfg: SamplingConfig,
        tools: list | None = None,
        template_kwargs: dict | None = None,
    ) -> Iterator[str]:
        """Yield text pieces as the model produces them (generation runs in a thread). Closing the iterator early
        (a client that went away) stops the generation at the next token."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        prompt = self._prompt(conversation, tools, template_kwargs)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600)
        ids = torch.tensor([prompt])
        cancel = threading.Event()

        class _Cancel(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kw: Any) -> Any:
                return torch.full((input_ids.shape[0],), cancel.is_set(), dtype=torch.bool)

        if cfg.seed is not None:
            torch.manual_seed(cfg.seed)

        def run() -> None:
            with self._lock, torch.inference_mode():
                self.model.generate(
                    input_ids=ids,
                    attention_mask=torch.ones_like(ids),
                    streamer=streamer,
                    stopping_criteria=StoppingCriteriaList([_Cancel()]),
                    **self._gen_kwargs(cfg),
                )

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        text = ""
        finished = False
        try:
            for piece in streamer:
                text += piece
                hit = next((s for s in cfg.stop if s in text), None)
                if hit:
                    keep = text[: text.index(hit)]
                    if len(keep) > len(text) - len(piece):
                        yield keep[len(text) - len(piece) :]
                    break
                if piece:
                    yield piece
            else:
                finished = True
        finally:
            cancel.set()
            if not finished:  # drain to the end signal so the generating thread is never left blocked
                for _ in streamer:
                    pass
            thread.join()

    async def agenerate(self, conversations: list[list[dict]], cfg: SamplingConfig, **kw: Any) -> list[Completion]:
        return await asyncio.to_thread(self.generate, conversations, cfg, **kw)

    async def astream(self, conversation: list[dict], cfg: SamplingConfig, **kw: Any) -> AsyncIterator[str]:
        it = self.stream(conversation, cfg, **kw)
        sentinel = object()
        while True:
            piece = await asyncio.to_thread(next, it, sentinel)
            if piece is sentinel:
                return
            yield piece


def _needs(backend: str, package: str) -> Callable[..., Any]:
    def make(*_a: Any, **_k: Any) -> Any:
        import importlib.util

        if importlib.util.find_spec(package) is None:
            raise UserError(
                f"--infer_backend {backend} needs the {package} package (and a CUDA GPU)",
                hint="use --infer_backend pt on this machine",
            )
        import torch

        if not torch.cuda.is_available():
            raise UserError(
                f"--infer_backend {backend} needs a CUDA GPU; none is visible", hint="use --infer_backend pt"
            )
        raise UserError(
            f"--infer_backend {backend} is not wired up in this lmforge version", hint="use --infer_backend pt"
        )

    return make


ENGINES: dict[str, Callable[..., Any]] = {
    "pt": PtEngine,
    "transformers": PtEngine,
    "vllm": _needs("vllm", "vllm"),
    "sglang": _needs("sglang", "sglang"),
    "lmdeploy": _needs("lmdeploy", "lmdeploy"),
}
