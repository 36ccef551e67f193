"""Dynamic batching for the server: requests that arrive together share forward passes.

A worker thread takes the queued requests (up to `max_batch_size`, waiting at most `window_s` for company), groups
them by what `generate` needs to share (adapter, sampling settings) and runs one `generate` per group. A streamer
hands every new token to its request's asyncio queue as soon as it exists, with its log-probability; a stopping
criterion ends each row on its own (its own max_tokens, or its client went away).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from lmforge.infer.engine import SamplingConfig


@dataclass
class GenRequest:
    prompt_ids: list[int]
    cfg: SamplingConfig
    out: asyncio.Queue  # receives ("token", index, token_id, logprob_info) and ("done", index, reason)
    loop: asyncio.AbstractEventLoop
    adapter: str | None = None
    logprobs: int | None = None  # None: none; k: the chosen token's logprob and the top k
    index: int = 0
    cancelled: threading.Event = field(default_factory=threading.Event)
    generated: int = 0
    finished: bool = False

    def emit(self, *event: Any) -> None:
        self.loop.call_soon_threadsafe(self.out.put_nowait, event)

    def group_key(self) -> tuple:
        c = self.cfg
        return (self.adapter, c.temperature, c.top_p, c.top_k, c.repetition_penalty, c.seed)


class _Streamer:
    """transformers calls put() with the prompt first, then with each step's new token per row."""

    def __init__(self, reqs: list[GenRequest], stop_ids: set[int], recorder: Any):
        self.reqs, self.stop_ids, self.recorder = reqs, stop_ids, recorder
        self.prompt_seen = False

    def put(self, value: Any) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        tokens = value.reshape(-1).tolist()
        for i, (req, tok) in enumerate(zip(self.reqs, tokens)):
            if req.finished:
                continue
            if req.cancelled.is_set():
                req.finished = True
                req.emit("done", req.index, "cancelled")
                continue
            if tok in self.stop_ids:
                req.finished = True
                req.emit("done", req.index, "stop")
                continue
            info = self.recorder.info(i, tok, req.logprobs) if req.logprobs is not None else None
            req.generated += 1
            req.emit("token", req.index, tok, info)
            if req.generated >= req.cfg.max_new_tokens:
                req.finished = True
                req.emit("done", req.index, "length")

    def end(self) -> None:
        for req in self.reqs:
            if not req.finished:
                req.finished = True
                req.emit("done", req.index, "cancelled" if req.cancelled.is_set() else "length")


class _Recorder:
    """A logits processor that only remembers each step's log-probabilities (for `logprobs`)."""

    def __init__(self) -> None:
        self.last: Any = None

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        self.last = scores.float().log_softmax(-1)
        return scores

    def info(self, row: int, token: int, k: int) -> dict:
        lp = self.last[row]
        top = lp.topk(k) if k else None
        return {
            "logprob": float(lp[token]),
            "top": [(int(t), float(v)) for v, t in zip(top.values, top.indices)] if top is not None else [],
        }


class Batcher:
    def __init__(self, model: Any, stop_ids: list[int], pad_id: int, max_batch_size: int = 16, window_s: float = 0.01):
        self.model = model
        self.stop_ids = set(stop_ids)
        self.pad_id = pad_id
        self.max_batch_size = max_batch_size
        self.window_s = window_s
        self.queue: queue.Queue[GenRequest] = queue.Queue()
        self.batches_run = 0  # for tests and logs: how many generate calls served the requests
        threading.Thread(target=self._worker, daemon=True, name="lmforge-batcher").start()

    def submit(self, req: GenRequest) -> None:
        self.queue.put(req)

    def _collect(self) -> list[GenRequest]:
        batch = [self.queue.get()]
        deadline = time.perf_counter() + self.window_s
        while len(batch) < self.max_batch_size:
            left = deadline - time.perf_counter()
            try:
                batch.append(self.queue.get(timeout=max(left, 0)) if left > 0 else self.queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _worker(self) -> None:
        while True:
            batch = self._collect()
            groups: dict[tuple, list[GenRequest]] = {}
            for req in batch:
                if req.cancelled.is_set():
                    req.emit("done", req.index, "cancelled")
                    continue
                groups.setdefault(req.group_key(), []).append(req)
            for reqs in groups.values():
                try:
                    self._run(reqs)
                except Exception as e:  # a failed batch must not kill the server: report it to its requests
                    for req in reqs:
                        if not req.finished:
                            req.finished = True
                            req.emit("error", req.index, f"{type(e).__name__}: {e}")

    def _adapter_context(self, adapter: str | None) -> Any:
        if not hasattr(self.model, "peft_config"):
            return contextlib.nullcontext()
        if adapter is None:
            return self.model.disable_adapter()
        self.model.set_adapter(adapter)
        return contextlib.nullcontext()

    def _run(self, reqs: list[GenRequest]) -> None:
        import torch
        from transformers import LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

        width = max(len(r.prompt_ids) for r in reqs)
        ids = torch.tensor([[self.pad_id] * (width - len(r.prompt_ids)) + r.prompt_ids for r in reqs])
        mask = torch.tensor([[0] * (width - len(r.prompt_ids)) + [1] * len(r.prompt_ids) for r in reqs])

        class _RowDone(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kw: Any) -> Any:
                return torch.tensor([r.finished or r.cancelled.is_set() for r in reqs], dtype=torch.bool)

        cfg = reqs[0].cfg
        kw: dict[str, Any] = {"do_sample": cfg.temperature > 0, "repetition_penalty": cfg.repetition_penalty}
        if cfg.temperature > 0:
            kw.update(temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k or None)
        else:
            kw.update(temperature=None, top_p=None, top_k=None)
        if cfg.seed is not None:
            torch.manual_seed(cfg.seed)
        recorder = _Recorder()
        streamer = _Streamer(reqs, self.stop_ids, recorder)
        self.batches_run += 1
        with torch.inference_mode(), self._adapter_context(reqs[0].adapter):
            self.model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=max(r.cfg.max_new_tokens for r in reqs),
                eos_token_id=sorted(self.stop_ids),
                pad_token_id=self.pad_id,
                streamer=streamer,
                stopping_criteria=StoppingCriteriaList([_RowDone()]),
                logits_processor=LogitsProcessorList([recorder]) if any(r.logprobs is not None for r in reqs) else None,
                **kw,
            )
        streamer.end()
