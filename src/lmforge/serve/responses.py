"""The two generation routes: chat completions and text completions, whole or streamed (server-sent events)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from fastapi.responses import JSONResponse, StreamingResponse

from lmforge.infer.engine import EngineError, StreamEvent, TokenLogprob
from lmforge.serve.media import media_chat_prompt
from lmforge.serve.protocol import ChatRequest, CompletionRequest, error_body
from lmforge.serve.state import ServeState, err, pick_adapter, sampling
from lmforge.serve.tooling import ToolPlan, plan_tools

if TYPE_CHECKING:
    from lmforge.infer.engine import SamplingConfig


def _sse(obj: Any) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


def _reason(event: StreamEvent) -> str:
    return "length" if event.finish_reason == "length" else "stop"


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


async def _events(
    state: ServeState, prompt: list[int], cfg: SamplingConfig, adapter: str | None, n: int
) -> AsyncIterator[tuple[int, StreamEvent | Exception]]:
    """The events of n choices, interleaved as they come; leaving early cancels every choice."""
    merged: asyncio.Queue = asyncio.Queue()

    async def pump(i: int) -> None:
        try:
            async with contextlib.aclosing(state.engine.astream(prompt, cfg, adapter=adapter)) as events:
                async for event in events:
                    await merged.put((i, event))
        except EngineError as e:
            await merged.put((i, e))

    tasks = [asyncio.create_task(pump(i)) for i in range(n)]
    open_ = n
    try:
        while open_:
            i, event = await merged.get()
            if isinstance(event, Exception) or event.finish_reason is not None:
                open_ -= 1
            yield i, event
    finally:
        for t in tasks:
            t.cancel()


def _chat_logprob(state: ServeState, lp: TokenLogprob) -> dict:
    text = state.engine.frontend.token_text
    return {
        "token": text(lp.token_id),
        "logprob": lp.logprob,
        "top_logprobs": [{"token": text(t), "logprob": v} for t, v in lp.top],
    }


def _media_error(state: ServeState, body: ChatRequest, name: str) -> JSONResponse | None:
    if state.engine.capabilities.media:
        return None
    for i, m in enumerate(body.messages):
        for j, kind in m.media_parts():
            return err(
                400,
                f"model '{name}' is text-only: messages[{i}].content[{j}] is a '{kind}' part; send text parts only",
                param=f"messages.{i}.content.{j}",
            )
    return None


async def chat_completion(state: ServeState, body: ChatRequest) -> Any:
    picked = pick_adapter(state, body.model)
    if isinstance(picked, JSONResponse):
        return picked
    adapter, name = picked
    refused = _media_error(state, body, name)
    if refused is not None:
        return refused
    msgs = [m.plain() for m in body.messages]
    frontend = state.engine.frontend
    plan = plan_tools(body, frontend.tool_parser)
    if isinstance(plan, JSONResponse):
        return plan
    try:
        if state.engine.capabilities.media and any(m.media_parts() for m in body.messages):
            if plan.prefix:
                return err(400, "tool_choice required or a named function cannot be combined with images yet")
            prompt = media_chat_prompt(state, body)  # images: a vision-language model (serve/media.py)
            if isinstance(prompt, JSONResponse):
                return prompt
        else:
            prompt = frontend.prompt_ids(msgs, plan.tools, **(body.chat_template_kwargs or {}))
    except Exception as e:  # a template error on user input is a bad request
        return err(400, f"messages: cannot apply the chat template ({str(e).splitlines()[0][:200]})")
    if plan.prefix:  # tool_choice required/named: the answer starts as a call
        prompt = prompt + frontend.tokenizer(plan.prefix, add_special_tokens=False)["input_ids"]
    cfg = sampling(state, body, len(prompt), (body.top_logprobs or 0) if body.logprobs else None)
    if isinstance(cfg, JSONResponse):
        return cfg
    rid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
    base = {"id": rid, "object": "chat.completion", "created": created, "model": name}
    if body.stream:
        chunk_base = {**base, "object": "chat.completion.chunk"}
        stream = _chat_stream(state, body, plan, prompt, cfg, adapter, chunk_base)
        return StreamingResponse(stream, media_type="text/event-stream")
    try:
        results = await state.engine.agenerate([prompt] * body.n, cfg, adapter=adapter)
    except EngineError as e:
        return err(500, str(e), "server_error")
    choices = []
    for i, r in enumerate(results):
        msg, called = plan.message(r.text)
        reason = "tool_calls" if called else "length" if r.finish_reason == "length" else "stop"
        choice: dict[str, Any] = {"index": i, "message": msg, "finish_reason": reason}
        if r.logprobs is not None:
            choice["logprobs"] = {"content": [_chat_logprob(state, lp) for lp in r.logprobs]}
        choices.append(choice)
    used = sum(r.completion_tokens for r in results)
    return {**base, "choices": choices, "usage": _usage(len(prompt), used)}


async def _chat_stream(
    state: ServeState,
    body: ChatRequest,
    plan: ToolPlan,
    prompt: list[int],
    cfg: SamplingConfig,
    adapter: str | None,
    base: dict,
) -> AsyncIterator[str]:
    routers = [plan.streamer() for _ in range(body.n)]
    used = 0
    for i in range(body.n):
        yield _sse(
            {**base, "choices": [{"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
        )
    async for i, event in _events(state, prompt, cfg, adapter, body.n):
        if isinstance(event, Exception):
            yield _sse(error_body(str(event), "server_error"))
            continue
        used += event.token_id is not None
        logprobs = {"content": [_chat_logprob(state, event.logprob)]} if event.logprob is not None else None
        deltas = routers[i].deltas(event.text)
        for delta in deltas + (routers[i].finish() if event.finish_reason is not None else []):
            chunk: dict[str, Any] = {"index": i, "delta": delta, "finish_reason": None}
            if logprobs is not None:
                chunk["logprobs"], logprobs = logprobs, None
            yield _sse({**base, "choices": [chunk]})
        if logprobs is not None:  # a token that made no text yet still reports its logprob
            yield _sse({**base, "choices": [{"index": i, "delta": {}, "logprobs": logprobs, "finish_reason": None}]})
        if event.finish_reason is not None:
            reason = "tool_calls" if routers[i].called else _reason(event)
            yield _sse({**base, "choices": [{"index": i, "delta": {}, "finish_reason": reason}]})
    if body.include_usage:
        yield _sse({**base, "choices": [], "usage": _usage(len(prompt), used)})
    yield "data: [DONE]\n\n"


def _token_namer(state: ServeState, as_ids: bool) -> Any:
    """How a token is spelled in logprobs: its text, or 'token_id:N' (`return_tokens_as_token_ids`)."""
    return (lambda t: f"token_id:{t}") if as_ids else state.engine.frontend.token_text


def _text_logprobs(state: ServeState, lps: list[TokenLogprob], offset: int, as_ids: bool = False) -> dict:
    """The legacy completions shape: tokens, token_logprobs, top_logprobs, text_offset."""
    text = _token_namer(state, as_ids)
    tokens = [text(lp.token_id) for lp in lps]
    offsets, at = [], offset
    for t in tokens:
        offsets.append(at)
        at += len(t)
    return {
        "tokens": tokens,
        "token_logprobs": [lp.logprob for lp in lps],
        "top_logprobs": [{text(t): v for t, v in lp.top} for lp in lps],
        "text_offset": offsets,
    }


def _check_completion(state: ServeState, body: CompletionRequest, n_prompts: int) -> JSONResponse | None:
    if not n_prompts or body.stream and n_prompts > 1:
        return err(400, "prompt: one prompt string (or a list, without stream)", param="prompt")
    if body.best_of not in (None, body.n):
        return err(400, "best_of: only best_of = n is supported", param="best_of")
    if body.max_tokens == 0 and not body.echo:
        return err(400, "max_tokens: 0 generates nothing; use it with echo to score the prompt", param="max_tokens")
    if body.echo and body.stream:
        return err(400, "echo: not supported with stream (send stream: false)", param="echo")
    if body.echo and body.logprobs is not None and not state.engine.capabilities.prompt_logprobs:
        return err(400, "echo with logprobs: this backend returns no prompt logprobs (use --infer_backend pt)", "echo")
    own = sorted(state.engine.frontend.stop_ids)
    if body.stop_token_ids is not None and sorted(set(body.stop_token_ids)) != own:
        return err(400, f"stop_token_ids: this server stops at its template's stop ids {own} only", "stop_token_ids")
    if body.ignore_eos and body.stop_token_ids is None:
        return err(
            400, "ignore_eos: only with stop_token_ids (this server stops at its template's stop ids)", "ignore_eos"
        )
    return None


def _prompts(state: ServeState, body: CompletionRequest) -> list[tuple[list[int], str]] | JSONResponse:
    """Each prompt as (token ids, text): strings are encoded, token ids are checked against the vocabulary."""
    frontend = state.engine.frontend
    p = body.prompt
    items = [p] if isinstance(p, str) or (p and isinstance(p[0], int)) else p
    vocab = len(frontend.tokenizer)
    out = []
    for k, item in enumerate(items):
        if isinstance(item, str):
            ids, text = frontend.text_ids(item), item
        else:
            bad = next((t for t in item if not 0 <= t < vocab), None)
            if bad is not None:
                return err(400, f"prompt[{k}]: token id {bad} is outside the vocabulary (0..{vocab - 1})", "prompt")
            ids, text = list(item), frontend.tokenizer.decode(item)
        if not ids:  # nothing to continue from (a tokenizer without a BOS token encodes "" to no tokens)
            return err(400, "prompt: empty; it encodes to no tokens", param="prompt")
        out.append((ids, text))
    return out


async def _echo_logprobs(
    state: ServeState, ids: list[int], generated: list[list[int]], body: CompletionRequest, adapter: str | None
) -> list[dict]:
    """Prompt + generated tokens with their logprobs from one forward pass (`score`); the first token has none."""
    conts, k = [ids[1:] + g for g in generated], body.logprobs or 0
    scores = await asyncio.to_thread(state.engine.score, [ids[:1]] * len(conts), conts, adapter=adapter, top=k)
    text = _token_namer(state, body.return_tokens_as_token_ids)
    out = []
    for g, s in zip(generated, scores):
        tokens = [text(t) for t in ids + g]
        offsets = [sum(len(t) for t in tokens[:i]) for i in range(len(tokens))]
        top = [{text(t): v for t, v in row} for row in s.top] if k else [{} for _ in s.token_logprobs]
        out.append(
            {
                "tokens": tokens,
                "token_logprobs": [None, *s.token_logprobs],
                "top_logprobs": [None, *top],
                "text_offset": offsets,
            }
        )
    return out


async def _choices(
    state: ServeState, body: CompletionRequest, ids: list[int], text: str, adapter: str | None
) -> tuple[list[dict], int] | JSONResponse:
    """The n choices of one prompt and the tokens they generated; echo scores the prompt (max_tokens 0: only)."""
    results: list = []
    if body.max_tokens == 0:
        context = state.engine.capabilities.max_length
        if len(ids) > context:
            return err(400, f"prompt ({len(ids)} tokens) exceeds the model's context of {context}", "max_tokens")
    else:
        cfg = sampling(state, body, len(ids), None if body.echo else body.logprobs)
        if isinstance(cfg, JSONResponse):
            return cfg
        try:
            results = await state.engine.agenerate([ids] * body.n, cfg, adapter=adapter)
        except EngineError as e:
            return err(500, str(e), "server_error")
    generated = [r.token_ids for r in results] or [[] for _ in range(body.n)]
    lps: list = [None] * body.n
    if body.echo and body.logprobs is not None:
        try:
            lps = await _echo_logprobs(state, ids, generated, body, adapter)
        except EngineError as e:
            return err(500, str(e), "server_error")
    elif results and results[0].logprobs is not None:
        lps = [_text_logprobs(state, r.logprobs, 0, body.return_tokens_as_token_ids) for r in results]
    choices = []
    for i in range(body.n):
        r = results[i] if results else None
        reason = "length" if r is None or r.finish_reason == "length" else "stop"
        head = text if body.echo else ""
        choices.append({"index": i, "text": head + (r.text if r else ""), "finish_reason": reason, "logprobs": lps[i]})
    return choices, sum(len(g) for g in generated)


async def text_completion(state: ServeState, body: CompletionRequest) -> Any:
    picked = pick_adapter(state, body.model)
    if isinstance(picked, JSONResponse):
        return picked
    adapter, name = picked
    prompts = _prompts(state, body)
    if isinstance(prompts, JSONResponse):
        return prompts
    refused = _check_completion(state, body, len(prompts))
    if refused is not None:
        return refused
    base = {
        "id": f"cmpl-{uuid.uuid4().hex[:24]}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": name,
    }
    if body.stream:
        ids = prompts[0][0]
        cfg = sampling(state, body, len(ids), body.logprobs)
        if isinstance(cfg, JSONResponse):
            return cfg
        return StreamingResponse(
            _completion_stream(state, body, ids, cfg, adapter, base), media_type="text/event-stream"
        )
    choices: list[dict] = []
    p_tokens = c_tokens = 0
    for ids, text in prompts:
        made = await _choices(state, body, ids, text, adapter)
        if isinstance(made, JSONResponse):
            return made
        for c in made[0]:
            choices.append({**c, "index": len(choices)})
        c_tokens += made[1]
        p_tokens += len(ids) * body.n
    return {**base, "choices": choices, "usage": _usage(p_tokens, c_tokens)}


async def _completion_stream(
    state: ServeState, body: CompletionRequest, ids: list[int], cfg: SamplingConfig, adapter: str | None, base: dict
) -> AsyncIterator[str]:
    used = 0
    async for i, event in _events(state, ids, cfg, adapter, body.n):
        if isinstance(event, Exception):
            yield _sse(error_body(str(event), "server_error"))
            continue
        used += event.token_id is not None
        reason = _reason(event) if event.finish_reason is not None else None
        lps = _text_logprobs(state, [event.logprob], 0, body.return_tokens_as_token_ids) if event.logprob else None
        if event.text or reason or lps:
            choice = {"index": i, "text": event.text, "finish_reason": reason, "logprobs": lps}
            yield _sse({**base, "choices": [choice]})
    if body.include_usage:
        yield _sse({**base, "choices": [], "usage": _usage(len(ids), used)})
    yield "data: [DONE]\n\n"
