"""Serving a classifier, embedding or reranker checkpoint (`sft --task_type ...`): OpenAI's `/v1/embeddings` (float
or base64, batch input, token counts in `usage`) and vLLM's `/v1/classify`, `/v1/rerank` and `/v1/score`, behind the
same API key and 400s as chat.

A task checkpoint has no chat engine: the chat routes answer 400 naming its task and route, and the task routes on
a chat model answer 400 naming the task they need. The app calls `add_task_routes` once (serve/app.py).
"""

from __future__ import annotations

import base64
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from fastapi import FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.middleware.base import BaseHTTPMiddleware

from lmforge.serve.state import ServeState, err, pick_adapter

if TYPE_CHECKING:
    from lmforge.args.parser import Args
    from lmforge.infer.task_runner import TaskRunner

CHAT_ROUTES = ("/v1/chat/completions", "/v1/completions")


class _Inputs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str | None = None
    input: str | list[str] | list[int] | list[list[int]]
    user: str | None = None

    @field_validator("input")
    @classmethod
    def _texts(cls, v: Any) -> Any:
        items = [v] if isinstance(v, str) else v
        if not items:
            raise ValueError("must not be empty")
        if not all(isinstance(x, str) for x in items):
            raise ValueError("token id arrays are not supported; send text")
        if any(not x for x in items):
            raise ValueError("an input string is empty")
        return items


class EmbeddingRequest(_Inputs):
    """OpenAI's: text(s), or token ids (one array or a batch of them), which reach the model as they are."""

    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)

    @field_validator("input")
    @classmethod
    def _texts(cls, v: Any) -> Any:
        items = [v] if isinstance(v, str) or (v and all(isinstance(x, int) for x in v)) else v
        if not items:
            raise ValueError("must not be empty")
        if any(not x for x in items):
            raise ValueError("an input string or token array is empty")
        return items


class ClassifyRequest(_Inputs):
    pass


def _nonempty(v: Any) -> Any:
    items = [v] if isinstance(v, str) else v
    if not items:
        raise ValueError("must not be empty")
    if any(not x for x in items):
        raise ValueError("a text is empty")
    return v


class RerankRequest(BaseModel):
    """vLLM's /v1/rerank: one query, its documents, the best `top_n` back (0: all)."""

    model_config = ConfigDict(extra="forbid")
    model: str | None = None
    query: str
    documents: list[str]
    top_n: int = Field(default=0, ge=0)
    truncate_prompt_tokens: int | None = None

    @field_validator("query", "documents")
    @classmethod
    def _check(cls, v: Any) -> Any:
        return _nonempty(v)


class ScoreRequest(BaseModel):
    """vLLM's /v1/score: text_1 against each text_2 (one against many, or pairwise lists of one length)."""

    model_config = ConfigDict(extra="forbid")
    model: str | None = None
    text_1: str | list[str]
    text_2: str | list[str]
    truncate_prompt_tokens: int | None = None

    @field_validator("text_1", "text_2")
    @classmethod
    def _check(cls, v: Any) -> Any:
        return _nonempty(v)


@dataclass
class TaskServing:
    """A task checkpoint being served: its runner, and the ServeState the shared routes (/v1/models) read."""

    state: ServeState
    runner: TaskRunner


def task_serving(args: Args) -> TaskServing | None:
    """For `lmforge deploy` on a task checkpoint: its runner instead of a chat engine; None for chat models."""
    from pathlib import Path

    from lmforge.infer.engine import sampling_from_args
    from lmforge.infer.task_runner import load_runner, saved_task
    from lmforge.runargs import resolve_model

    d = args.deploy
    resolved = resolve_model(args, d.load_args, allow_named=True)  # deploy's name=PATH multi-LoRA pairs
    if saved_task(resolved) == "causal_lm":
        return None
    runner = load_runner(resolved, d.max_batch_size)
    plain = resolved.adapters.plain
    name = d.served_model_name or (Path(plain[0]).name if plain else Path(runner.model_path).name)
    defaults = sampling_from_args(args.generation, max_new_tokens=1)
    return TaskServing(ServeState(None, name, {}, defaults, d.api_key), runner)  # type: ignore[arg-type]


class _NotChat(BaseHTTPMiddleware):
    """Chat routes of a task checkpoint: a 400 naming its task and route."""

    def __init__(self, app: Any, task: str, route: str):
        super().__init__(app)
        self.task, self.route = task, route

    async def dispatch(self, request: Request, call_next: Any) -> Any:
        if request.url.path in CHAT_ROUTES:
            return err(400, f"this model's task is {self.task}, not chat: use {self.route}", param="model")
        return await call_next(request)


def _usage(n: int) -> dict[str, int]:
    return {"prompt_tokens": n, "total_tokens": n}


def _encode(vec: Any, fmt: str) -> Any:
    import numpy as np

    if fmt == "base64":  # OpenAI's: the float32 little-endian bytes
        return base64.b64encode(np.asarray(vec, dtype="<f4").tobytes()).decode("ascii")
    return [float(x) for x in vec]


def add_task_routes(app: FastAPI, state: ServeState, runner: TaskRunner | None) -> None:
    """The task routes, and for a task checkpoint the 400 on the chat routes."""
    from lmforge.tasks import get_task

    task = runner.task if runner is not None else "causal_lm"
    routes = get_task(task).routes
    if runner is not None:
        app.add_middleware(_NotChat, task=task, route=routes[0] if routes else "")
    h = _TaskHandlers(state, runner, task, routes)
    app.post("/v1/embeddings")(h.embeddings)
    app.post("/v1/classify")(h.classify)
    for path in ("/v1/rerank", "/v2/rerank", "/rerank"):  # vLLM's aliases (Cohere's v2 path and the bare one)
        app.post(path)(h.rerank)
    for path in ("/v1/score", "/score"):
        app.post(path)(h.score)


@dataclass
class _TaskHandlers:
    """The task routes' handlers and their shared checks (a wrong model name, a model of another task, too long
    an input), each error an OpenAI-style 400."""

    state: ServeState
    runner: Any  # TaskRunner, or None on a chat model (every task route then answers 400)
    task: str
    routes: tuple[str, ...]

    def refused(self, route: str, model: str | None) -> Any:
        """The error response for a wrong model name or a model of another task; None when the route serves."""
        from lmforge.tasks import TASKS

        picked = pick_adapter(self.state, model)
        if not isinstance(picked, tuple):
            return picked
        if route not in self.routes:
            needs = "/".join(n for n, t in TASKS.items() if route in t.routes)
            return err(400, f"{route} needs a --task_type {needs} model; '{self.state.base_name}' has task {self.task}")
        return None

    def too_long(self, texts: list[str], param: str) -> Any:
        limit = getattr(self.runner.model.config, "max_position_embeddings", None)
        for i, t in enumerate(texts):
            n = self.runner.count_tokens([t])
            if limit and n > limit:
                return err(400, f"{param}[{i}]: {n} tokens exceed the model's context of {limit}", param=param)
        return None

    def prepared(self, route: str, body: _Inputs) -> Any:
        """The request's texts rendered as in training (token id arrays as they are), or the error response."""
        if (bad := self.refused(route, body.model)) is not None:
            return bad
        if not isinstance(body.input[0], str):
            return self.token_problem(body.input) or body.input
        texts = self.runner.texts([[{"role": "user", "content": x}] for x in body.input])
        return self.too_long(texts, "input") or texts

    def token_problem(self, arrays: list[list[int]]) -> Any:
        vocab = len(self.runner.tokenizer)
        limit = getattr(self.runner.model.config, "max_position_embeddings", None)
        for i, ids in enumerate(arrays):
            if bad := [t for t in ids if not 0 <= t < vocab]:
                message = f"input[{i}]: token id {bad[0]} is outside the vocabulary (0..{vocab - 1})"
                return err(400, message, param="input")
            if limit and len(ids) > limit:
                return err(400, f"input[{i}]: {len(ids)} tokens exceed the model's context of {limit}", param="input")
        return None

    def pair_scores(self, route: str, model: str | None, pairs: list[tuple[str, str]], param: str) -> Any:
        """sigmoid(score) of each (query, document) pair, as vLLM's cross-encoder answers; or the error."""
        import math

        if (bad := self.refused(route, model)) is not None:
            return bad
        runner = self.runner
        texts = [
            runner.pair_texts([{"role": "user", "content": q}], [[{"role": "user", "content": d}]])[0] for q, d in pairs
        ]
        if (bad := self.too_long(texts, param)) is not None:
            return bad
        return [1.0 / (1.0 + math.exp(-s)) for s in runner.score(texts)], runner.count_tokens(texts)

    async def embeddings(self, body: EmbeddingRequest) -> Any:
        texts = self.prepared("/v1/embeddings", body)
        if not isinstance(texts, list):
            return texts
        ids = texts if not isinstance(texts[0], str) else None
        vectors = self.runner.embed(texts) if ids is None else self.runner.embed_ids(ids)
        if body.dimensions is not None and body.dimensions != vectors.shape[1]:
            return err(400, f"dimensions: this model gives {vectors.shape[1]}-d embeddings", param="dimensions")
        data = [
            {"object": "embedding", "index": i, "embedding": _encode(v, body.encoding_format)}
            for i, v in enumerate(vectors)
        ]
        n = self.runner.count_tokens(texts) if ids is None else sum(len(x) for x in ids)
        return {"object": "list", "data": data, "model": self.state.base_name, "usage": _usage(n)}

    async def classify(self, body: ClassifyRequest) -> Any:
        texts = self.prepared("/v1/classify", body)
        if not isinstance(texts, list):
            return texts
        preds = self.runner.predict(texts)
        n = self.runner.spec.num_labels
        data = [{"index": i, "label": p["label"], "probs": p["probs"], "num_classes": n} for i, p in enumerate(preds)]
        usage = {**_usage(self.runner.count_tokens(texts)), "completion_tokens": 0}
        return {
            "id": f"classify-{uuid.uuid4().hex}",
            "object": "list",
            "created": int(time.time()),
            "model": self.state.base_name,
            "data": data,
            "usage": usage,
        }

    async def rerank(self, body: RerankRequest) -> Any:
        got = self.pair_scores("/v1/rerank", body.model, [(body.query, d) for d in body.documents], "documents")
        if not isinstance(got, tuple):
            return got
        scores, n = got
        order = sorted(range(len(scores)), key=lambda i: -scores[i])[: body.top_n or None]
        results = [{"index": i, "document": {"text": body.documents[i]}, "relevance_score": scores[i]} for i in order]
        return {
            "id": f"rerank-{uuid.uuid4().hex}",
            "model": self.state.base_name,
            "usage": {"total_tokens": n},
            "results": results,
        }

    async def score(self, body: ScoreRequest) -> Any:
        t1 = [body.text_1] if isinstance(body.text_1, str) else body.text_1
        t2 = [body.text_2] if isinstance(body.text_2, str) else body.text_2
        if len(t1) == 1:
            t1 = t1 * len(t2)
        if len(t1) != len(t2):
            return err(
                400, f"text_1 has {len(t1)} texts and text_2 {len(t2)}: give one text_1 or as many", param="text_1"
            )
        got = self.pair_scores("/v1/score", body.model, list(zip(t1, t2)), "text_2")
        if not isinstance(got, tuple):
            return got
        scores, n = got
        return {
            "id": f"score-{uuid.uuid4().hex}",
            "object": "list",
            "created": int(time.time()),
            "model": self.state.base_name,
            "data": [{"index": i, "object": "score", "score": s} for i, s in enumerate(scores)],
            "usage": {**_usage(n), "completion_tokens": 0},
        }
