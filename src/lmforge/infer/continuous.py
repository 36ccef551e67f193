"""Continuous batching for the PyTorch engine: transformers' own `ContinuousBatchingManager` (paged KV cache,
one background loop) behind lmforge's `Request` rows.

A request joins the running batch at the next decode step, a finished row leaves it at once (its cache pages go
back), and every new token reaches the row's consumer as it is made. lmforge keeps what makes a row end: stop ids
(passed to the manager), stop strings, `max_new_tokens` and a consumer that went away (the row is cancelled in
the manager). A manager runs one sampling mode for all its rows (argmax or multinomial), so a model gets two
loops: greedy rows in one, sampled rows in another (started at the first sampled row) whose per-request warpers
take each row's temperature, top_k and top_p. Their forward passes take turns (one lock between steps). Rows
with a seed, logprobs, a repetition penalty, an adapter choice or media keep the dynamic-batching scheduler
(infer/scheduler.py), which holds that lock, pausing both loops, while it uses the model.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Iterator
from typing import Any

from lmforge.infer.scheduler import Request

PAGE_TOKENS = 64  # KV cache page: small pages waste little on short chat rows
ROW_TOKENS = 768  # cache budget per concurrent row (prompt + answer); longer rows wait for pages or are requeued
TOP_K_OFF = 1 << 30  # a per-request top_k at least the vocabulary: no filter

# The generation config of each loop, keyed by "sampled". transformers builds a per-request warper only for a
# setting whose default is on, hence the placeholders: every sampled row sends its own three values.
LOOPS: dict[bool, dict[str, Any]] = {
    False: {"do_sample": False},
    True: {"do_sample": True, "temperature": 0.5, "top_k": 50, "top_p": 0.5},
}


def can_run_continuous(model: Any) -> bool:
    """The manager needs an sdpa (or flash) model: with eager attention it would switch the model to paged
    attention, which the scheduler's `generate` cannot run."""
    config = getattr(model, "config", None)
    return getattr(config, "_attn_implementation", None) == "sdpa" and hasattr(model, "init_continuous_batching")


class ContinuousBatcher:
    """Rows of one model through transformers continuous-batching loops: greedy and sampled, each started at its
    first row; each loop's KV cache has room for `max_batch_size` rows."""

    def __init__(self, model: Any, stop_ids: frozenset[int], max_batch_size: int, max_length: int):
        self.model, self.stop_ids = model, stop_ids
        self.max_batch_size = max(1, min(max_batch_size, 256))
        self.row_tokens = max(PAGE_TOKENS, min(max_length, ROW_TOKENS))
        self.managers: dict[bool, Any] = {}  # sampled? -> its running manager
        self.rows: dict[str, Request] = {}
        self.rows_seen = 0  # for tests and logs: how many rows the loops served
        self._lock = threading.Lock()
        self._step_lock = threading.Lock()  # one forward pass at a time across the loops
        self._counter = 0

    def accepts(self, req: Request) -> bool:
        cfg = req.cfg
        return (
            # a row longer than its cache budget could never be scheduled: transformers' loop then fails the batch
            len(req.prompt_ids) + cfg.max_new_tokens <= self.row_tokens
            and cfg.repetition_penalty == 1.0
            and cfg.logprobs is None
            and cfg.seed is None
            and req.adapter is None
            and req.media is None
        )

    def submit(self, req: Request) -> None:
        """Queue a row; its listener hears each token from the loop's thread."""
        sampled = not req.cfg.greedy
        manager = self._started(sampled)
        with self._lock:
            self._counter += 1
            rid = f"lmforge-{self._counter}"
            self.rows[rid] = req
            self.rows_seen += 1
        added = manager.add_request(
            list(req.prompt_ids),
            request_id=rid,
            max_new_tokens=req.cfg.max_new_tokens,
            streaming=True,
            eos_token_id=sorted(self.stop_ids),
            **_row_sampling(req.cfg),
        )
        if added is None:  # the loop is stopping or died
            self._drop(rid)
            req.fail("the continuous-batching loop is not accepting requests")

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Hold the loops between two steps (their next forward pass waits for the step lock, also a loop that
        starts meanwhile), so another caller can use the model; rows keep their cache."""
        with self._step_lock:
            yield

    def _started(self, sampled: bool) -> Any:
        with self._lock:
            manager = self.managers.get(sampled)
            if manager is None or not manager.is_running():
                manager = self.managers[sampled] = self._manager(sampled)
        return manager

    def _manager(self, sampled: bool) -> Any:
        import torch
        from transformers import GenerationConfig
        from transformers.generation.configuration_utils import ContinuousBatchingConfig

        from lmforge.infer import varlen_attention
        from lmforge.thirdparty import daemon_cb_manager, register_attention, row_filtered_cb_warpers

        logging.getLogger("transformers.generation.continuous_batching").setLevel(logging.ERROR)
        pages = -(-self.max_batch_size * self.row_tokens // PAGE_TOKENS)
        cb = ContinuousBatchingConfig(
            page_size=PAGE_TOKENS,
            num_blocks=pages,
            max_batch_tokens=max(256, self.row_tokens),  # prefill chunk per step: a long prompt does not stall rows
            max_requests_per_batch=self.max_batch_size,
            allow_block_sharing=False,
            use_cuda_graph=False,
            per_request_processors=sampled,
        )
        gen = GenerationConfig(**LOOPS[sampled], eos_token_id=sorted(self.stop_ids), max_new_tokens=self.row_tokens)
        # a peft model's LoRA layers live inside its base model: the loop runs the base model's forward
        model = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        # on CPU the loop's attention splits its pack by row (infer/varlen_attention.py) where that is exact
        fits = varlen_attention.fits(model.config)
        attention = register_attention(varlen_attention.NAME, varlen_attention.varlen_sdpa) if fits else None
        deliver = functools.partial(self._deliver, sampled)
        manager = daemon_cb_manager(model, gen, cb, deliver, self._step_lock, attention)
        if sampled:
            row_filtered_cb_warpers(manager)
        with torch.inference_mode():  # the loop thread inherits the mode it starts in
            manager.start()
        return manager

    def _deliver(self, sampled: bool, output: Any) -> None:
        """From a loop's thread: the row's tokens so far (cumulative) and its status."""
        rid = output.request_id
        req = self.rows.get(rid)
        if req is None:
            return
        for tok in output.generated_tokens[len(req.token_ids) :]:
            req.accept(int(tok), None, self.stop_ids)
            if req.finished:
                break
        if output.error is not None:
            req.fail(f"continuous batching: {output.error}")
        if req.finished or output.is_finished():
            self._drop(rid)
            if not output.is_finished():  # a stop string, the length, or the consumer left: free the row now
                self.managers[sampled].cancel_request(rid)
            req.finish("cancelled" if req.cancelled.is_set() else "length")  # no-op when accept finished it

    def _drop(self, rid: str) -> None:
        with self._lock:
            self.rows.pop(rid, None)


def _row_sampling(cfg: Any) -> dict[str, Any]:
    """A sampled row's own settings for the loop's per-request warpers (a greedy row sends none)."""
    if cfg.greedy:
        return {}
    return {"temperature": float(cfg.temperature), "top_k": cfg.top_k or TOP_K_OFF, "top_p": float(cfg.top_p)}
