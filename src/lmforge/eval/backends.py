"""What `lmforge eval` runs rows on: lmforge's own engine in-process (`LocalBackend`: batched generation and
log-likelihoods through `Engine.score`), or any OpenAI-compatible server (`RemoteBackend`, `--eval_url`).

Both take conversations; the local one renders them with the model's chat template (the frontend, as infer does)
and reports special tokens the answer produced, the remote one sends them as chat messages.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lmforge.errors import UserError
from lmforge.infer.frontend import split_reasoning

if TYPE_CHECKING:
    from lmforge.infer.engine import Engine, SamplingConfig

# chat-template markers of common families: in an answer they mean the model ran past its turn
MARKERS = ("<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|start_header_id|>", "[INST]", "</s>")


@dataclass(frozen=True)
class Answer:
    text: str
    finish_reason: str  # stop or length
    prompt_tokens: int
    completion_tokens: int
    leaked: bool  # a special token or template marker inside the answer
    seconds: float  # the batch's wall time shared over its rows (local) or the request's latency (remote)
    reasoning: str | None = None  # a thinking model's <think> block, split off when thinking is on; not graded


class LocalBackend:
    """An `Engine` (adapter None: the model as loaded; a name: that adapter, for base-vs-adapter runs)."""

    can_score = True

    def __init__(self, engine: Engine, name: str, adapter: str | None = None, system: str | None = None):
        self.engine, self.name, self.adapter = engine, name, adapter
        tok = engine.frontend.tokenizer
        self.stop_ids = set(engine.frontend.stop_ids)
        self.special_ids = set(tok.all_special_ids)
        self.markers = tuple({*MARKERS, *(s for s in tok.all_special_tokens if len(s) > 1)})
        template = engine.frontend.template
        # --enable_thinking: on (or the family's default) the <think> block is split off and the answer graded;
        # off, a <think> block in the answer is a leak (behaviour's think_leaks)
        self.thinking = template.spec.thinking and template.enable_thinking is not False

    def prompt(self, messages: list[dict]) -> list[int]:
        return self.engine.frontend.prompt_ids(messages)

    def generate(self, convs: list[list[dict]], cfg: SamplingConfig) -> list[Answer]:
        prompts = [self.prompt(c) for c in convs]
        t0 = time.perf_counter()
        done = self.engine.generate(prompts, cfg, adapter=self.adapter)
        per_row = (time.perf_counter() - t0) / max(len(done), 1)
        out = []
        for c in done:
            body = c.token_ids[:-1] if c.token_ids and c.token_ids[-1] in self.stop_ids else c.token_ids
            leaked = bool(self.special_ids & set(body)) or any(m in c.text for m in self.markers)
            reasoning, text = split_reasoning(c.text) if self.thinking else (None, c.text)
            out.append(Answer(text, c.finish_reason, c.prompt_tokens, c.completion_tokens, leaked, per_row, reasoning))
        return out

    def score(self, convs: list[list[dict]], continuations: list[list[str]]) -> list[list[float]]:
        """Total log-likelihood of each continuation text as the start of the assistant's answer."""
        tok = self.engine.frontend.tokenizer
        prompts, conts, sizes = [], [], []
        for conv, options in zip(convs, continuations):
            ids = self.prompt(conv)
            for text in options:
                prompts.append(ids)
                conts.append(tok(text, add_special_tokens=False)["input_ids"])
            sizes.append(len(options))
        scores = self.engine.score(prompts, conts, adapter=self.adapter)
        out, at = [], 0
        for n in sizes:
            out.append([s.total for s in scores[at : at + n]])
            at += n
        return out


class RemoteBackend:
    """An OpenAI-compatible server: `/v1/chat/completions`, `eval_num_proc` requests at a time."""

    can_score = False  # chat completions carry no prompt log-likelihoods: multiple choice is answered by generation

    def __init__(
        self,
        url: str,
        api_key: str | None,
        model: str | None,
        concurrency: int,
        system: str | None,
        enable_thinking: bool | None = None,
    ):
        self.base = url.rstrip("/").removesuffix("/chat/completions").rstrip("/")
        self.api_key, self.concurrency, self.system = api_key, concurrency, system
        self.enable_thinking = enable_thinking  # sent as chat_template_kwargs (vLLM's, SGLang's, lmforge's field)
        served = [m.get("id") for m in self._call("GET", "/models", None, timeout=10).get("data", [])]
        if model and model not in served:
            raise UserError(f"--eval_url {url}: serves no model '{model}'; it serves {', '.join(map(str, served))}")
        if not (model or served):
            raise UserError(f"--eval_url {url}: /models lists no model", hint="pass --model NAME")
        self.served = model or str(served[0])  # the request's model
        self.name = self.served  # the reports' name (--eval_deploy names an adapter after its checkpoint)
        self.markers = MARKERS

    def _call(self, method: str, path: str, body: dict | None, timeout: float = 600) -> dict:
        req = urllib.request.Request(
            self.base + path,
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.api_key or 'EMPTY'}"},
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as e:
            detail = e.read().decode("utf-8", "replace")[:200].replace("\n", " ")
            raise UserError(f"--eval_url {self.base}{path}: HTTP {e.code}: {detail}")
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise UserError(f"--eval_url {self.base}: cannot reach it ({reason})", hint="is the server running?")
        except json.JSONDecodeError:
            raise UserError(f"--eval_url {self.base}{path}: the answer is not JSON (not an OpenAI-compatible server?)")

    def _one(self, messages: list[dict], cfg: SamplingConfig) -> Answer:
        if self.system is not None and not (messages and messages[0]["role"] == "system"):
            messages = [{"role": "system", "content": self.system}, *messages]
        body: dict[str, Any] = {
            "model": self.served,
            "messages": messages,
            "max_tokens": cfg.max_new_tokens,
            "temperature": cfg.temperature,
            "top_p": cfg.top_p,
        }
        if cfg.top_k:
            body["top_k"] = cfg.top_k  # vLLM's, SGLang's and lmforge's extra fields
        if cfg.repetition_penalty != 1.0:
            body["repetition_penalty"] = cfg.repetition_penalty
        if cfg.stop:
            body["stop"] = list(cfg.stop)
        if cfg.seed is not None:
            body["seed"] = cfg.seed
        if self.enable_thinking is not None:
            body["chat_template_kwargs"] = {"enable_thinking": self.enable_thinking}
        t0 = time.perf_counter()
        data = self._call("POST", "/chat/completions", body)
        choice = (data.get("choices") or [{}])[0]
        message = choice.get("message") or {}
        text = message.get("content") or ""
        usage = data.get("usage") or {}
        leaked = any(m in text for m in self.markers)
        return Answer(
            text,
            choice.get("finish_reason") or "stop",
            int(usage.get("prompt_tokens", 0)),
            int(usage.get("completion_tokens", 0)),
            leaked,
            time.perf_counter() - t0,
            message.get("reasoning_content"),
        )

    def generate(self, convs: list[list[dict]], cfg: SamplingConfig) -> list[Answer]:
        pool = ThreadPoolExecutor(self.concurrency)
        try:
            return list(pool.map(lambda c: self._one(c, cfg), convs))
        finally:
            # ctrl-C or an error: the queued rows are dropped, not sent (a `with` block would wait for all of them)
            pool.shutdown(wait=False, cancel_futures=True)

    def score(self, convs: list[list[dict]], continuations: list[list[str]]) -> list[list[float]]:
        raise UserError("multiple choice by log-likelihood needs a local model", hint='use {"mode": "generate"}')
