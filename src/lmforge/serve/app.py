"""The OpenAI-compatible FastAPI app: /v1/models, /v1/chat/completions, /v1/completions, /health."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.middleware.base import BaseHTTPMiddleware

from lmforge.infer.engine import SamplingConfig
from lmforge.serve.batcher import Batcher, GenRequest
from lmforge.serve.protocol import ChatRequest, CompletionRequest, error_body

MAX_BODY = 8 * 1024 * 1024  # a 10 MB body is refused before it is parsed


@dataclass
class ServeState:
    batcher: Batcher
    template: Any  # ChatTemplate
    base_name: str
    adapters: dict[str, str]  # served name -> peft adapter name
    context_length: int
    api_key: str | None = None
    default_max_tokens: int = 512


def _err(status: int, message: str, kind: str = "invalid_request_error", param: str | None = None) -> JSONResponse:
    return JSONResponse(error_body(message, kind, param), status_code=status)


class _Guard(BaseHTTPMiddleware):
    """API key and body size, before any route runs."""

    def __init__(self, app: Any, state: ServeState):
        super().__init__(app)
        self.state = state

    async def dispatch(self, request: Request, call_next: Any) -> Any:
        if request.url.path != "/health" and self.state.api_key:
            if request.headers.get("authorization", "") != f"Bearer {self.state.api_key}":
                return _err(401, "invalid or missing API key", "authentication_error")
        size = request.headers.get("content-length")
        if size and size.isdigit() and int(size) > MAX_BODY:
            if int(size) <= 8 * MAX_BODY:  # read and drop it (no buffering) so the client sees the 413, not a reset
                async for _ in request.stream():
                    pass
            return _err(413, f"request body over {MAX_BODY // 2**20} MB")
        return await call_next(request)


def _sampling(state: ServeState, body: Any, prompt_len: int) -> SamplingConfig | JSONResponse:
    max_tokens = body.max_completion_tokens or body.max_tokens
    if max_tokens is None:
        max_tokens = max(1, min(state.default_max_tokens, state.context_length - prompt_len))
    if prompt_len + max_tokens > state.context_length:
        return _err(
            400,
            f"prompt ({prompt_len} tokens) + max_tokens ({max_tokens}) exceeds the model's context of "
            f"{state.context_length} tokens",
            param="max_tokens",
        )
    return SamplingConfig(
        max_new_tokens=max_tokens,
        temperature=1.0 if body.temperature is None else body.temperature,
        top_p=body.top_p or 1.0,
        top_k=max(body.top_k or 0, 0),
        repetition_penalty=body.repetition_penalty or 1.0,
        stop=body.stop or [],
        seed=body.seed,
    )


def _adapter(state: ServeState, model: str | None) -> tuple[str | None, str] | JSONResponse:
    if model in (None, "", state.base_name):
        return None, state.base_name
    if model in state.adapters:
        return state.adapters[model], model
    known = ", ".join([state.base_name, *state.adapters])
    return _err(404, f"model '{model}' not found; served: {known}", param="model")


def split_reasoning(text: str) -> tuple[str | None, str]:
    """Qwen3 thinking: `<think>...</think>answer` -> (reasoning, answer)."""
    if "</think>" not in text:
        return None, text
    head, _, tail = text.partition("</think>")
    return head.replace("<think>", "").strip("\n"), tail.lstrip("\n")


class _Decoder:
    """Incremental detokenization with stop strings: emit only text that is final."""

    def __init__(self, tokenizer: Any, stops: list[str]):
        self.tok, self.stops, self.ids, self.sent, self.stopped = tokenizer, stops, [], "", False

    def add(self, token: int) -> str:
        self.ids.append(token)
        text = self.tok.decode(self.ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):  # half a multi-byte character: wait for the rest
            return ""
        for s in self.stops:
            if s in text:
                text, self.stopped = text[: text.index(s)], True
        hold = max((len(s) - 1 for s in self.stops), default=0) if not self.stopped else 0
        final = text[: len(text) - hold] if hold else text
        delta, self.sent = final[len(self.sent) :], max(self.sent, final, key=len)
        return delta

    def flush(self) -> str:
        text = self.tok.decode(self.ids, skip_special_tokens=True)
        for s in self.stops:
            if s in text:
                text = text[: text.index(s)]
        delta, self.sent = text[len(self.sent) :], text
        return delta


def _submit(
    state: ServeState, prompt: list[int], cfg: SamplingConfig, adapter: str | None, n: int, logprobs: int | None
) -> tuple[asyncio.Queue, list[GenRequest]]:
    out: asyncio.Queue = asyncio.Queue()
    loop = asyncio.get_running_loop()
    reqs = [GenRequest(prompt, cfg, out, loop, adapter, logprobs, index=i) for i in range(n)]
    for r in reqs:
        state.batcher.submit(r)
    return out, reqs


async def _events(out: asyncio.Queue, reqs: list[GenRequest]) -> AsyncIterator[tuple]:
    """Events of all n choices until each is done; cancels the rest if the consumer goes away."""
    open_ = len(reqs)
    try:
        while open_:
            event = await out.get()
            if event[0] in ("done", "error"):
                open_ -= 1
            yield event
    finally:
        for r in reqs:
            r.cancelled.set()


def _logprob_entry(tok: Any, info: dict) -> dict:
    return {
        "token": tok.decode([info["id"]]),
        "logprob": info["logprob"],
        "top_logprobs": [{"token": tok.decode([t]), "logprob": v} for t, v in info["top"]],
    }


async def _collect(state: ServeState, out: asyncio.Queue, reqs: list[GenRequest]) -> list[dict]:
    tok = state.template.tokenizer
    decoders = [_Decoder(tok, r.cfg.stop) for r in reqs]
    results = [{"text": "", "reason": "length", "tokens": 0, "logprobs": []} for _ in reqs]
    async for event in _events(out, reqs):
        kind, i = event[0], event[1]
        if kind == "token":
            results[i]["tokens"] += 1
            results[i]["text"] += decoders[i].add(event[2])
            if event[3] is not None:
                results[i]["logprobs"].append(_logprob_entry(tok, {**event[3], "id": event[2]}))
            if decoders[i].stopped:
                reqs[i].cancelled.set()
                results[i]["reason"] = "stop"
        elif kind == "done":
            results[i]["text"] += decoders[i].flush()
            if results[i]["reason"] != "stop":
                results[i]["reason"] = "length" if event[2] == "length" else "stop"
        else:
            raise RuntimeError(event[2])
    return results


def _sse(obj: Any) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


def build_app(state: ServeState) -> FastAPI:
    app = FastAPI(title="lmforge", docs_url=None, redoc_url=None)
    app.add_middleware(_Guard, state=state)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()) if x != "body")
        return _err(400, f"{where or 'body'}: {first.get('msg', 'invalid request')}", param=where or None)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models() -> dict:
        now = int(time.time())
        names = [state.base_name, *state.adapters]
        return {
            "object": "list",
            "data": [{"id": n, "object": "model", "created": now, "owned_by": "lmforge"} for n in names],
        }

    @app.post("/v1/chat/completions")
    async def chat(body: ChatRequest) -> Any:
        return await _chat(state, body)

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest) -> Any:
        return await _completions(state, body)

    return app


async def _chat(state: ServeState, body: ChatRequest) -> Any:
    picked = _adapter(state, body.model)
    if isinstance(picked, JSONResponse):
        return picked
    adapter, name = picked
    msgs = [m.plain() for m in body.messages]
    try:
        prompt = state.template.prompt_ids(msgs, body.tools, **(body.chat_template_kwargs or {}))
    except Exception as e:  # a template error on user input is a bad request
        return _err(400, f"messages: cannot apply the chat template ({str(e).splitlines()[0][:200]})")
    cfg = _sampling(state, body, len(prompt))
    if isinstance(cfg, JSONResponse):
        return cfg
    logprobs = (body.top_logprobs or 0) if body.logprobs else None
    out, reqs = _submit(state, prompt, cfg, adapter, body.n, logprobs)
    rid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
    if body.stream:
        return StreamingResponse(
            _chat_stream(state, out, reqs, rid, created, name, len(prompt)), media_type="text/event-stream"
        )
    results = await _collect(state, out, reqs)
    choices = []
    for i, r in enumerate(results):
        reasoning, content = split_reasoning(r["text"])
        msg = {"role": "assistant", "content": content}
        if reasoning is not None:
            msg["reasoning_content"] = reasoning
        choice = {"index": i, "message": msg, "finish_reason": r["reason"]}
        if logprobs is not None:
            choice["logprobs"] = {"content": r["logprobs"]}
        choices.append(choice)
    used = sum(r["tokens"] for r in results)
    return {
        "id": rid,
        "object": "chat.completion",
        "created": created,
        "model": name,
        "choices": choices,
        "usage": {"prompt_tokens": len(prompt), "completion_tokens": used, "total_tokens": len(prompt) + used},
    }


async def _completions(state: ServeState, body: CompletionRequest) -> Any:
    picked = _adapter(state, body.model)
    if isinstance(picked, JSONResponse):
        return picked
    adapter, name = picked
    prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
    if not prompts or body.stream and len(prompts) > 1:
        return _err(400, "prompt: one prompt string (or a list, without stream)", param="prompt")
    tok = state.template.tokenizer
    rid, created, choices, p_tokens, c_tokens = f"cmpl-{uuid.uuid4().hex[:24]}", int(time.time()), [], 0, 0
    for k, text in enumerate(prompts):
        ids = tok(text, add_special_tokens=True)["input_ids"]
        cfg = _sampling(state, body, len(ids))
        if isinstance(cfg, JSONResponse):
            return cfg
        out, reqs = _submit(state, ids, cfg, adapter, body.n, body.logprobs)
        if body.stream:
            return StreamingResponse(
                _completion_stream(state, out, reqs, rid, created, name), media_type="text/event-stream"
            )
        for r in await _collect(state, out, reqs):
            choices.append(
                {
                    "index": len(choices),
                    "text": (text if body.echo else "") + r["text"],
                    "finish_reason": r["reason"],
                    "logprobs": None,
                }
            )
            c_tokens += r["tokens"]
        p_tokens += len(ids) * body.n
        del k
    return {
        "id": rid,
        "object": "text_completion",
        "created": created,
        "model": name,
        "choices": choices,
        "usage": {"prompt_tokens": p_tokens, "completion_tokens": c_tokens, "total_tokens": p_tokens + c_tokens},
    }


async def _chat_stream(
    state: ServeState, out: asyncio.Queue, reqs: list[GenRequest], rid: str, created: int, name: str, prompt_len: int
) -> AsyncIterator[str]:
    tok = state.template.tokenizer
    decoders = [_Decoder(tok, r.cfg.stop) for r in reqs]
    texts = ["" for _ in reqs]
    in_think = [False for _ in reqs]
    used = 0
    base = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": name}
    for i in range(len(reqs)):
        yield _sse(
            {**base, "choices": [{"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
        )
    async for event in _events(out, reqs):
        kind, i = event[0], event[1]
        if kind == "error":
            yield _sse(error_body(event[2], "server_error"))
            continue
        if kind == "token":
            used += 1
            delta = decoders[i].add(event[2])
            if decoders[i].stopped:
                reqs[i].cancelled.set()
        else:
            delta = decoders[i].flush()
        for piece, field in _route_thinking(delta, texts, in_think, i):
            yield _sse({**base, "choices": [{"index": i, "delta": {field: piece}, "finish_reason": None}]})
        if kind == "done":
            reason = "stop" if decoders[i].stopped or event[2] != "length" else "length"
            yield _sse({**base, "choices": [{"index": i, "delta": {}, "finish_reason": reason}]})
    yield _sse(
        {
            **base,
            "choices": [],
            "usage": {"prompt_tokens": prompt_len, "completion_tokens": used, "total_tokens": prompt_len + used},
        }
    )
    yield "data: [DONE]\n\n"


def _route_thinking(delta: str, texts: list[str], in_think: list[bool], i: int) -> list[tuple[str, str]]:
    """Split streamed text into reasoning_content (inside <think>...</think>) and content."""
    out: list[tuple[str, str]] = []
    while delta:
        if not in_think[i]:
            at = delta.find("<think>")
            if at < 0:
                out.append((delta, "content"))
                texts[i] += delta
                break
            if at:
                out.append((delta[:at], "content"))
            in_think[i], delta = True, delta[at + len("<think>") :].lstrip("\n")
        else:
            at = delta.find("</think>")
            if at < 0:
                out.append((delta, "reasoning_content"))
                break
            if at:
                out.append((delta[:at].rstrip("\n"), "reasoning_content"))
            in_think[i], delta = False, delta[at + len("</think>") :].lstrip("\n")
    return [(p, f) for p, f in out if p]


async def _completion_stream(
    state: ServeState, out: asyncio.Queue, reqs: list[GenRequest], rid: str, created: int, name: str
) -> AsyncIterator[str]:
    decoders = [_Decoder(state.template.tokenizer, r.cfg.stop) for r in reqs]
    base = {"id": rid, "object": "text_completion", "created": created, "model": name}
    async for event in _events(out, reqs):
        kind, i = event[0], event[1]
        if kind == "error":
            yield _sse(error_body(event[2], "server_error"))
            continue
        text = decoders[i].add(event[2]) if kind == "token" else decoders[i].flush()
        if kind == "token" and decoders[i].stopped:
            reqs[i].cancelled.set()
        reason = None if kind == "token" else ("length" if event[2] == "length" and not decoders[i].stopped else "stop")
        if text or reason:
            yield _sse({**base, "choices": [{"index": i, "text": text, "finish_reason": reason, "logprobs": None}]})
    yield "data: [DONE]\n\n"
