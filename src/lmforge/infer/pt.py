"""The PyTorch engine: transformers `generate` on a loaded model, behind the dynamic-batching scheduler."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

from lmforge.infer.continuous import ContinuousBatcher, can_run_continuous
from lmforge.infer.engine import (
    Capabilities,
    Completion,
    Engine,
    EngineError,
    MediaPrompt,
    SamplingConfig,
    Score,
    StreamEvent,
    TokenLogprob,
    check_score_inputs,
)
from lmforge.infer.frontend import Frontend
from lmforge.infer.scheduler import Request, Scheduler
from lmforge.infer.scoring import read_positions, score_units


class PtEngine(Engine):
    """An already loaded HF model (or peft model) as an `Engine`.

    `template` is a ChatTemplate (or a Frontend). `adapters` are the names of peft adapters loaded into `model`
    that a request may pick (`set_adapter`); a request without one runs with those adapters disabled. With no
    names, the model runs as given (a LoRA policy keeps its LoRA on). `continuous` (an engine lmforge loaded for
    serving, not a policy being trained): text rows (greedy, or sampled with temperature/top_k/top_p) join
    transformers' continuous-batching loops (infer/continuous.py) at the next decode step; other rows keep the
    dynamic-batching scheduler.

    Contract for callers that train the model (PPO rollouts): each call switches the model to eval() and restores
    its train/eval mode afterwards, runs under `torch.inference_mode` (nothing it returns carries gradients), puts
    inputs on the model's device, and ignores the model's generation_config.json: only the SamplingConfig counts.
    `Completion.token_ids` include the stop token when the row stopped on one.
    """

    def __init__(
        self,
        model: Any,
        template: Any,
        max_batch_size: int = 16,
        *,
        adapters: tuple[str, ...] | list[str] = (),
        max_length: int | None = None,
        continuous: bool = False,
    ):
        self.model = model
        self.frontend = template if isinstance(template, Frontend) else Frontend(template)
        self.template = self.frontend.template
        self.tokenizer = self.frontend.tokenizer
        self.adapter_names = tuple(adapters)
        self.stop_ids = frozenset(self.frontend.stop_ids)
        self.device = next(model.parameters()).device
        config = getattr(model, "config", None)
        self.model_path = str(getattr(config, "name_or_path", "") or "")
        ctx = max_length or getattr(config, "max_position_embeddings", None) or 4096
        self.capabilities = Capabilities(
            adapters=self.adapter_names,
            logprobs=True,
            prompt_logprobs=True,  # score() with top
            media=bool(getattr(self.template, "takes_media", False)),
            max_length=int(ctx),
            device=str(self.device),
        )
        self._lock = threading.Lock()  # one forward at a time per model; the scheduler batches instead
        self.scheduler = Scheduler(self._run_group, max_batch_size)
        use_loop = continuous and not self.adapter_names and not self.capabilities.media and can_run_continuous(model)
        self.continuous = ContinuousBatcher(model, self.stop_ids, max_batch_size, int(ctx)) if use_loop else None

    @property
    def max_batch_size(self) -> int:
        """Rows per forward pass (generate groups, score chunks, the server's batches)."""
        return self.scheduler.max_batch_size

    @max_batch_size.setter
    def max_batch_size(self, value: int) -> None:
        self.scheduler.max_batch_size = value if value > 0 else 1 << 30

    # -- the Engine interface -------------------------------------------------------------------------------
    def _request(self, prompt: Any, cfg: SamplingConfig, adapter: str | None, listener: Any = None) -> Request:
        media = None
        if isinstance(prompt, MediaPrompt):
            if not self.capabilities.media:
                raise ValueError("this model is text-only: it takes no images")
            prompt, media = prompt.token_ids, prompt.inputs
        if not prompt:
            raise ValueError("an empty prompt: give at least one token")
        if adapter is not None and adapter not in self.adapter_names:
            raise ValueError(f"unknown adapter '{adapter}'; loaded: {', '.join(self.adapter_names) or 'none'}")
        return Request(list(prompt), cfg, self.frontend.decoder(cfg.stop), adapter, listener, media=media)

    def generate(
        self, prompts: list[list[int]], cfg: SamplingConfig, *, adapter: str | None = None
    ) -> list[Completion]:
        reqs = [self._request(p, cfg, adapter) for p in prompts]
        ends = [self._join_loop(r) for r in reqs]
        self.scheduler.run_now([r for r, end in zip(reqs, ends) if end is None])
        for end in ends:
            if end is not None:
                end.wait()
        return [r.completion() for r in reqs]

    def stream(
        self, prompt_ids: list[int], cfg: SamplingConfig, *, adapter: str | None = None
    ) -> Iterator[StreamEvent]:
        events: queue.Queue = queue.Queue()
        req = self._request(prompt_ids, cfg, adapter, events.put)
        self._submit(req)
        try:
            while True:
                event = events.get(timeout=600)
                if isinstance(event, EngineError):
                    raise event
                yield event
                if event.finish_reason is not None:
                    return
        finally:
            req.cancelled.set()  # a consumer that went away: the row ends at its next token

    async def astream(
        self, prompt_ids: list[int], cfg: SamplingConfig, *, adapter: str | None = None
    ) -> AsyncIterator[StreamEvent]:
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        req = self._request(prompt_ids, cfg, adapter, lambda e: loop.call_soon_threadsafe(events.put_nowait, e))
        self._submit(req)
        try:
            while True:
                event = await events.get()
                if isinstance(event, EngineError):
                    raise event
                yield event
                if event.finish_reason is not None:
                    return
        finally:
            req.cancelled.set()

    async def agenerate(
        self, prompts: list[list[int]], cfg: SamplingConfig, *, adapter: str | None = None
    ) -> list[Completion]:
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in prompts]

        def listener(fut: asyncio.Future) -> Any:
            def done(event: StreamEvent | EngineError) -> None:
                if isinstance(event, EngineError) or event.finish_reason is not None:
                    loop.call_soon_threadsafe(lambda: fut.done() or fut.set_result(event))

            return done

        reqs = [self._request(p, cfg, adapter, listener(f)) for p, f in zip(prompts, futures)]
        for r in reqs:
            self._submit(r)
        try:
            ends = await asyncio.gather(*futures)
        finally:
            for r in reqs:
                r.cancelled.set()
        failed = next((e for e in ends if isinstance(e, EngineError)), None)
        if failed is not None:
            raise failed
        return [r.completion() for r in reqs]

    def score(
        self, prompts: list[list[int]], continuations: list[list[int]], *, adapter: str | None = None, top: int = 0
    ) -> list[Score]:
        check_score_inputs(prompts, continuations)
        out: list[Score | None] = [Score([], True) if not c else None for c in continuations]
        units = score_units(prompts, continuations)
        size = self.max_batch_size
        for start in range(0, len(units), size):
            self._score_batch(units[start : start + size], continuations, out, adapter, top)
        return out  # type: ignore[return-value]

    def _score_batch(
        self, units: list[tuple], continuations: list[list[int]], out: list, adapter: str | None, top: int
    ) -> None:
        """One forward over `units` (sequence, the position before its first continuation token, rows read there)."""
        import torch

        width = max(len(seq) for seq, _, _ in units)
        pad = self.frontend.pad_id
        # right padding: causal attention never lets a real token see the padding after it
        ids = torch.tensor([seq + [pad] * (width - len(seq)) for seq, _, _ in units], device=self.device)
        mask = torch.tensor([[1] * len(seq) + [0] * (width - len(seq)) for seq, _, _ in units], device=self.device)
        # the output layer only where a continuation token is predicted (a 49k vocabulary over every prompt position
        # is most of the memory traffic of a multiple-choice forward); models whose forward lacks it: all positions
        where = read_positions(units, continuations)
        keep = {"logits_to_keep": torch.tensor(sorted(where), device=self.device)} if self._keeps_logits() else {}
        with self._use(adapter):
            logits = self.model(input_ids=ids, attention_mask=mask, **keep).logits
        for u, (_, at, rows) in enumerate(units):
            for row in rows:
                c = continuations[row]
                span = [where[at + j] for j in range(len(c))] if keep else list(range(at, at + len(c)))
                lp = logits[u, span].float().log_softmax(-1)
                target = torch.tensor(c, device=lp.device)
                picked = lp.gather(-1, target[:, None])[:, 0]
                best: tuple = ()
                if top > 0:
                    k = lp.topk(min(top, lp.shape[-1]), dim=-1)
                    best = tuple(tuple(zip(i, v)) for i, v in zip(k.indices.tolist(), k.values.tolist()))
                out[row] = Score(picked.tolist(), bool((lp.argmax(-1) == target).all()), best)

    def _keeps_logits(self) -> bool:
        """Whether the model's forward takes `logits_to_keep` (transformers' causal LMs do; remote code may not)."""
        if getattr(self, "_accepts_keep", None) is None:
            import inspect

            base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
            self._accepts_keep = "logits_to_keep" in inspect.signature(base.forward).parameters
        return self._accepts_keep

    # -- routing: the continuous loop where it fits, else the scheduler ------------------------------------
    def _submit(self, req: Request) -> None:
        if self.continuous is not None and self.continuous.accepts(req):
            self.continuous.submit(req)
        else:
            self.scheduler.submit(req)

    def _join_loop(self, req: Request) -> threading.Event | None:
        """For a synchronous caller: put `req` into the continuous loop and return the event set when it ends
        (None: the row is not for the loop)."""
        if self.continuous is None or not self.continuous.accepts(req):
            return None
        end = threading.Event()

        def listener(event: StreamEvent | EngineError) -> None:
            if isinstance(event, EngineError) or event.finish_reason is not None:
                end.set()

        req.listener = listener
        self.continuous.submit(req)
        return end

    # -- the batch runner (called by the scheduler) ---------------------------------------------------------
    @contextlib.contextmanager
    def _use(self, adapter: str | None) -> Iterator[None]:
        """Lock, eval mode, inference mode and the adapter choice for one forward or generate call."""
        import torch

        paused = self.continuous.paused() if self.continuous is not None else contextlib.nullcontext()
        with self._lock, paused:
            was_training = self.model.training
            self.model.eval()
            try:
                with torch.inference_mode(), self._adapter(adapter):
                    yield
            finally:
                if was_training:
                    self.model.train()

    def _adapter(self, adapter: str | None) -> Any:
        if not self.adapter_names:
            return contextlib.nullcontext()
        if adapter is None:
            return self.model.disable_adapter()
        self.model.set_adapter(adapter)
        return contextlib.nullcontext()

    def _run_group(self, reqs: list[Request]) -> None:
        import torch
        from transformers import LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

        pad = self.frontend.pad_id
        width = max(len(r.prompt_ids) for r in reqs)
        ids = torch.tensor([[pad] * (width - len(r.prompt_ids)) + r.prompt_ids for r in reqs], device=self.device)
        mask = torch.tensor([[0] * (width - len(r.prompt_ids)) + [1] * len(r.prompt_ids) for r in reqs])

        class RowsDone(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kw: Any) -> Any:
                done = [r.finished or r.cancelled.is_set() for r in reqs]
                return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

        cfg = reqs[0].cfg
        recorder = _Recorder() if any(r.cfg.logprobs is not None for r in reqs) else None
        if cfg.seed is not None:
            torch.manual_seed(cfg.seed)
        with self._use(reqs[0].adapter), _no_model_defaults(self.model):
            self.model.generate(
                input_ids=ids,
                attention_mask=mask.to(self.device),
                max_new_tokens=max(r.cfg.max_new_tokens for r in reqs),
                eos_token_id=sorted(self.stop_ids),
                pad_token_id=pad,
                streamer=_Streamer(reqs, self.stop_ids, recorder),
                stopping_criteria=StoppingCriteriaList([RowsDone()]),
                logits_processor=LogitsProcessorList([recorder]) if recorder else None,
                use_cache=True,
                **_media_inputs(reqs, width, self.device),
                **_sampling_kwargs(cfg),
            )


def _media_inputs(reqs: list[Request], width: int, device: Any) -> dict[str, Any]:
    """The batch's pixels (concatenated in row order, as the processor batches them) and the left-padded
    mm_token_type_ids; {} for a batch without media."""
    import torch

    if not any(r.media for r in reqs):
        return {}
    types = torch.zeros((len(reqs), width), dtype=torch.long)
    out: dict[str, list] = {}
    for i, r in enumerate(reqs):
        media = r.media or {}
        if media.get("mm_token_type_ids"):
            row = media["mm_token_type_ids"]
            types[i, width - len(row) :] = torch.tensor(row)
        for key, value in media.items():  # pixel_values, image_grid_thw, pixel_values_videos, video_grid_thw ...
            if key != "mm_token_type_ids" and value is not None:
                out.setdefault(key, []).append(value)
    typed = any((r.media or {}).get("mm_token_type_ids") for r in reqs)  # Qwen takes them, LLaVA does not
    typed = {"mm_token_type_ids": types.to(device)} if typed else {}
    return {**typed, **{k: torch.cat(v).to(device) for k, v in out.items()}}


def _sampling_kwargs(cfg: SamplingConfig) -> dict[str, Any]:
    if cfg.greedy:
        return {"do_sample": False, "repetition_penalty": cfg.repetition_penalty, "num_beams": 1}
    return {
        "do_sample": True,
        "num_beams": 1,
        "temperature": cfg.temperature,
        "top_p": cfg.top_p,
        "top_k": cfg.top_k,
        "repetition_penalty": cfg.repetition_penalty,
    }


@contextlib.contextmanager
def _no_model_defaults(model: Any) -> Iterator[None]:
    """transformers fills every setting not passed to generate() from the model's generation_config.json (a
    checkpoint's sampling temperature, min_p, ...): swap in a neutral one for the call. A peft model reads the
    base model's attribute, so the innermost model is the one to swap."""
    from transformers import GenerationConfig

    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    saved = inner.generation_config
    inner.generation_config = GenerationConfig()
    try:
        yield
    finally:
        inner.generation_config = saved


class _Recorder:
    """A logits processor that only remembers each step's log-probabilities (for `logprobs`)."""

    def __init__(self) -> None:
        self.last: Any = None

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        self.last = scores.float().log_softmax(-1)
        return scores

    def info(self, row: int, token: int, k: int) -> TokenLogprob:
        lp = self.last[row]
        if not k:
            return TokenLogprob(token, float(lp[token]))
        top = lp.topk(k)
        return TokenLogprob(token, float(lp[token]), tuple(zip(top.indices.tolist(), top.values.tolist())))


class _Streamer:
    """transformers calls put() with the prompt first, then with each step's new token per row."""

    def __init__(self, reqs: list[Request], stop_ids: frozenset[int], recorder: _Recorder | None):
        self.reqs, self.stop_ids, self.recorder = reqs, stop_ids, recorder
        self.prompt_seen = False

    def put(self, value: Any) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        for i, (req, tok) in enumerate(zip(self.reqs, value.reshape(-1).tolist())):
            if req.finished:
                continue
            k = req.cfg.logprobs
            info = self.recorder.info(i, tok, k) if (k is not None and self.recorder) else None
            req.accept(tok, info, self.stop_ids)

    def end(self) -> None:
        pass  # the scheduler closes rows still open
