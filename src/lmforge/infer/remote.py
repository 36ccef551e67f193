"""The Engine interface over a backend's OpenAI server (`/v1/completions` with token-id prompts): what
`--infer_backend vllm|sglang|lmdeploy` runs on (infer/sidecar.py starts the server and owns its lifetime).

lmforge stays the front end: it sends the prompt's token ids (its own template), its stop ids (and stop strings),
and every sampling field; it reads the generated token ids back (`return_tokens_as_token_ids` in the logprobs) and
detokenizes them itself, so text, stop strings and finish reasons mean the same as on the PyTorch engine. Named
adapters are the server's LoRA modules, picked per request by `model`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from lmforge.infer.engine import Capabilities, Completion, Engine, EngineError, Score, StreamEvent, TokenLogprob

if TYPE_CHECKING:
    from lmforge.infer.engine import SamplingConfig
    from lmforge.infer.frontend import Frontend
    from lmforge.infer.sidecar import Sidecar

TIMEOUT_S = 3600.0  # one request (a long batch on a slow CPU backend)


def token_id(token: str) -> int:
    """`return_tokens_as_token_ids` spells each token 'token_id:N'."""
    if not token.startswith("token_id:"):
        raise EngineError(f"the server sent token {token!r}, not 'token_id:N': it ignored return_tokens_as_token_ids")
    return int(token.removeprefix("token_id:"))


def read_logprobs(lp: dict[str, Any] | None) -> list[TokenLogprob]:
    """The legacy completions logprobs block as TokenLogprobs (token ids, best alternatives first)."""
    if not lp:
        return []
    out = []
    tops = lp.get("top_logprobs") or [None] * len(lp["tokens"])
    for tok, value, top in zip(lp["tokens"], lp["token_logprobs"], tops):
        alts = sorted(((token_id(t), v) for t, v in (top or {}).items()), key=lambda tv: -tv[1])
        out.append(TokenLogprob(token_id(tok), float(value) if value is not None else 0.0, tuple(alts)))
    return out


class Assembler:
    """Server chunks -> StreamEvents, the one place text, stops and finish reasons are made (lmforge's
    detokenizer and stop strings over the returned token ids; the first stop id ends the answer)."""

    def __init__(self, frontend: Frontend, cfg: SamplingConfig):
        self.decoder = frontend.decoder(cfg.stop)
        self.stop_ids = frozenset(frontend.stop_ids)
        self.keep = cfg.logprobs is not None
        self.reason: str | None = None
        self.done = False

    def feed(self, choice: dict[str, Any]) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        self.reason = choice.get("finish_reason") or self.reason
        for lp in read_logprobs(choice.get("logprobs")):
            if self.done:
                break
            mine = lp if self.keep else None
            if lp.token_id in self.stop_ids:
                out.append(StreamEvent(lp.token_id, self.decoder.flush(), mine, "stop"))
                self.done = True
                break
            text = self.decoder.add(lp.token_id)
            if self.decoder.stopped:
                out.append(StreamEvent(lp.token_id, text + self.decoder.flush(), mine, "stop"))
                self.done = True
                break
            out.append(StreamEvent(lp.token_id, text, mine))
        return out

    def finish(self) -> list[StreamEvent]:
        """The closing event, when no stop ended the answer: the server's reason (none: cancelled)."""
        if self.done:
            return []
        self.done = True
        reason = {"length": "length", "stop": "stop"}.get(self.reason or "", "cancelled")
        return [StreamEvent(None, self.decoder.flush(), None, reason)]


def completion(events: list[StreamEvent], prompt_len: int, keep_logprobs: bool) -> Completion:
    ids = [e.token_id for e in events if e.token_id is not None]
    lps = [e.logprob for e in events if e.logprob is not None]
    reason = events[-1].finish_reason if events else None
    text = "".join(e.text for e in events)
    return Completion(ids, text, reason or "stop", prompt_len, len(ids), lps if keep_logprobs else None)


def sse_choices(line: str) -> list[dict]:
    """One server-sent-events line -> its choices ([] for keep-alives and the end marker)."""
    if not line.startswith("data: ") or line.strip() == "data: [DONE]":
        return []
    chunk = json.loads(line.removeprefix("data: "))
    if "error" in chunk:
        raise EngineError(f"the backend server failed: {chunk['error'].get('message')}")
    return list(chunk.get("choices") or [])


def error_message(status: int, text: str) -> str:
    try:
        message = json.loads(text)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = text[-300:]
    return f"the backend server answered {status}: {message}"


class RemoteEngine(Engine):
    """Generation by an OpenAI-compatible server that takes token-id prompts (vLLM's protocol fields)."""

    def __init__(
        self,
        url: str,
        frontend: Frontend,
        model_path: str,
        *,
        served: dict[str | None, str],
        max_length: int,
        request_fields: dict[str, Any] | None = None,
        sidecar: Sidecar | None = None,
        device: str = "cpu",
    ):
        import httpx

        self.url, self.frontend, self.model_path = url.rstrip("/") + "/v1/completions", frontend, model_path
        self.served = served  # engine adapter name (None: no adapter) -> the server's model name
        self.extra = dict(request_fields or {})
        self.sidecar = sidecar
        names = tuple(n for n in served if n is not None)
        self.capabilities = Capabilities(
            names, logprobs=True, prompt_logprobs=True, continuous_batching=True, max_length=max_length, device=device
        )
        self._client = httpx.Client(timeout=TIMEOUT_S)

    def _body(self, prompt: list, cfg: SamplingConfig, adapter: str | None, stream: bool) -> dict[str, Any]:
        if adapter not in self.served:
            known = ", ".join(n for n in self.served if n) or "none"
            raise ValueError(f"unknown adapter '{adapter}'; loaded: {known}")
        longest = max(map(len, prompt)) if prompt and isinstance(prompt[0], list) else len(prompt)
        if not longest:
            raise ValueError("an empty prompt: give at least one token")
        room = self.capabilities.max_length - longest
        if room < 1:
            raise EngineError(f"the prompt ({longest} tokens) fills the model's context of {room + longest}")
        body = {
            "model": self.served[adapter],
            "prompt": prompt,
            "max_tokens": min(cfg.max_new_tokens, room),
            "temperature": cfg.temperature,
            "top_p": cfg.top_p,
            "top_k": cfg.top_k if cfg.top_k > 0 else -1,  # -1: off
            "repetition_penalty": cfg.repetition_penalty,
            "stop": list(cfg.stop),
            "stop_token_ids": sorted(self.frontend.stop_ids),
            "logprobs": cfg.logprobs or 0,  # 0: the chosen token only, which carries its id
            "return_tokens_as_token_ids": True,
            "stream": stream,
            **self.extra,
        }
        if cfg.seed is not None:
            body["seed"] = cfg.seed
        return body

    def generate(
        self, prompts: list[list[int]], cfg: SamplingConfig, *, adapter: str | None = None
    ) -> list[Completion]:
        if not prompts:
            return []
        r = self._client.post(self.url, json=self._body([list(p) for p in prompts], cfg, adapter, False))
        if r.status_code != 200:
            raise EngineError(error_message(r.status_code, r.text))
        out = []
        for choice, prompt in zip(sorted(r.json()["choices"], key=lambda c: c["index"]), prompts):
            asm = Assembler(self.frontend, cfg)
            out.append(completion([*asm.feed(choice), *asm.finish()], len(prompt), asm.keep))
        return out

    def stream(
        self, prompt_ids: list[int], cfg: SamplingConfig, *, adapter: str | None = None
    ) -> Iterator[StreamEvent]:
        body, asm = self._body(list(prompt_ids), cfg, adapter, True), Assembler(self.frontend, cfg)
        with self._client.stream("POST", self.url, json=body) as r:  # leaving early closes it: the server aborts
            if r.status_code != 200:
                raise EngineError(error_message(r.status_code, r.read().decode(errors="replace")))
            for line in r.iter_lines():
                for choice in sse_choices(line):
                    yield from asm.feed(choice)
                if asm.done:
                    return
        yield from asm.finish()

    async def astream(
        self, prompt_ids: list[int], cfg: SamplingConfig, *, adapter: str | None = None
    ) -> AsyncIterator[StreamEvent]:
        import httpx

        body, asm = self._body(list(prompt_ids), cfg, adapter, True), Assembler(self.frontend, cfg)
        async with httpx.AsyncClient(timeout=TIMEOUT_S) as client, client.stream("POST", self.url, json=body) as r:
            if r.status_code != 200:
                raise EngineError(error_message(r.status_code, (await r.aread()).decode(errors="replace")))
            async for line in r.aiter_lines():
                for choice in sse_choices(line):
                    for event in asm.feed(choice):
                        yield event
                if asm.done:
                    return
        for event in asm.finish():
            yield event

    async def agenerate(
        self, prompts: list[list[int]], cfg: SamplingConfig, *, adapter: str | None = None
    ) -> list[Completion]:
        """One streamed request per prompt, concurrently (the server batches them as they come); cancelling
        closes the connections, which aborts them on the server."""
        import asyncio

        async def one(prompt: list[int]) -> Completion:
            events = [e async for e in self.astream(prompt, cfg, adapter=adapter)]
            return completion(events, len(prompt), cfg.logprobs is not None)

        return list(await asyncio.gather(*(one(p) for p in prompts)))

    def score(
        self, prompts: list[list[int]], continuations: list[list[int]], *, adapter: str | None = None, top: int = 0
    ) -> list[Score]:
        """Prompt logprobs by echo: each continuation scored in one pass over prompt + continuation."""
        from lmforge.infer.engine import SamplingConfig, check_score_inputs

        check_score_inputs(prompts, continuations)
        out = []
        for p, c in zip(prompts, continuations):
            body = self._body([*p, *c], SamplingConfig(max_new_tokens=1), adapter, False)
            body.update(echo=True, logprobs=max(top, 1))
            r = self._client.post(self.url, json=body)
            if r.status_code != 200:
                raise EngineError(error_message(r.status_code, r.text))
            lps = read_logprobs(r.json()["choices"][0]["logprobs"])[len(p) : len(p) + len(c)]
            greedy = all(not lp.top or lp.logprob >= lp.top[0][1] - 1e-6 for lp in lps)
            out.append(Score([lp.logprob for lp in lps], greedy, tuple(lp.top[:top] for lp in lps) if top else ()))
        return out

    def close(self) -> None:
        """Close the connections and end the sidecar server (if lmforge started it)."""
        self._client.close()
        if self.sidecar is not None:
            self.sidecar.close()
