"""Dynamic batching: requests that arrive together share forward passes.

A worker thread takes the queued requests (up to `max_batch_size`, waiting at most `window_s` for company), groups
them by what one generate call must share (adapter, sampling settings) and runs one call per group. Each row stops
on its own: a stop token, a stop string, its own `max_new_tokens`, or its consumer went away (cancelled). The
backend hands every new token to `Request.accept`, which decodes it and tells the consumer.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from lmforge.infer.engine import Completion, EngineError, SamplingConfig, StreamEvent, TokenLogprob
from lmforge.infer.frontend import Decoder

Listener = Callable[["StreamEvent | EngineError"], None]


@dataclass(eq=False)
class Request:
    prompt_ids: list[int]
    cfg: SamplingConfig
    decoder: Decoder
    adapter: str | None = None
    listener: Listener | None = None  # called from the generating thread: keep it quick
    media: dict | None = None  # a MediaPrompt's model inputs (pixels), for a vision-language model
    cancelled: threading.Event = field(default_factory=threading.Event)
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str | None = None

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    def group_key(self) -> tuple:
        return (self.adapter, *self.cfg.group_key())

    def accept(self, token: int, info: TokenLogprob | None, stop_ids: frozenset[int]) -> None:
        """One generated token for this row (ignored once the row is finished)."""
        if self.finish_reason is not None:
            return
        if self.cancelled.is_set():
            self.finish("cancelled")
            return
        self.token_ids.append(token)
        if info is not None:
            self.logprobs.append(info)
        if token in stop_ids:
            self.finish("stop", token, info)
            return
        delta = self.decoder.add(token)
        if self.decoder.stopped:
            self.finish("stop", token, info, delta)
        elif len(self.token_ids) >= self.cfg.max_new_tokens:
            self.finish("length", token, info, delta)
        elif self.listener is not None:
            self.listener(StreamEvent(token, delta, info))

    def finish(self, reason: str, token: int | None = None, info: TokenLogprob | None = None, text: str = "") -> None:
        if self.finish_reason is not None:
            return
        self.finish_reason = reason
        if self.listener is not None:
            self.listener(StreamEvent(token, text + self.decoder.flush(), info, reason))

    def fail(self, message: str) -> None:
        if self.finish_reason is None:
            self.finish_reason = "error"
            if self.listener is not None:
                self.listener(EngineError(message))

    def completion(self) -> Completion:
        if self.finish_reason == "error":
            raise EngineError("generation failed")
        self.decoder.flush()
        return Completion(
            token_ids=list(self.token_ids),
            text=self.decoder.text,
            finish_reason=self.finish_reason or "length",
            prompt_tokens=len(self.prompt_ids),
            completion_tokens=len(self.token_ids),
            logprobs=list(self.logprobs) if self.cfg.logprobs is not None else None,
        )


class Scheduler:
    """Queue + worker thread in front of `run_group(requests)`, which generates for one group of rows."""

    def __init__(self, run_group: Callable[[list[Request]], None], max_batch_size: int = 16, window_s: float = 0.01):
        self.run_group = run_group
        self.max_batch_size = max_batch_size if max_batch_size > 0 else 1 << 30
        self.window_s = window_s
        self.queue: queue.Queue[Request] = queue.Queue()
        self.batches_run = 0  # for tests and logs: how many generate calls served the requests
        self._worker: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def submit(self, req: Request) -> None:
        with self._start_lock:  # the thread starts with the first queued request (sync callers never need it)
            if self._worker is None:
                self._worker = threading.Thread(target=self._loop, daemon=True, name="lmforge-scheduler")
                self._worker.start()
        self.queue.put(req)

    def run_now(self, reqs: list[Request]) -> None:
        """Generate for `reqs` in the calling thread, in groups and chunks of `max_batch_size`."""
        groups: dict[tuple, list[Request]] = {}
        for req in reqs:
            groups.setdefault(req.group_key(), []).append(req)
        for rows in groups.values():
            for start in range(0, len(rows), self.max_batch_size):
                self._run(rows[start : start + self.max_batch_size], isolate=False)

    def _collect(self) -> list[Request]:
        batch = [self.queue.get()]
        deadline = time.perf_counter() + self.window_s
        while len(batch) < self.max_batch_size:
            left = deadline - time.perf_counter()
            try:
                batch.append(self.queue.get(timeout=left) if left > 0 else self.queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _loop(self) -> None:
        while True:
            groups: dict[tuple, list[Request]] = {}
            for req in self._collect():
                if req.cancelled.is_set():
                    req.finish("cancelled")
                    continue
                groups.setdefault(req.group_key(), []).append(req)
            for rows in groups.values():
                self._run(rows, isolate=True)

    def _run(self, rows: list[Request], isolate: bool) -> None:
        self.batches_run += 1
        try:
            self.run_group(rows)
        except Exception as e:
            if not isolate:
                raise
            # a failed batch must not kill the server: report it to its requests
            for req in rows:
                req.fail(f"{type(e).__name__}: {e}")
            return
        for req in rows:  # the backend stopped (all rows done, or its own limit): close what is open
            req.finish("cancelled" if req.cancelled.is_set() else "length")
