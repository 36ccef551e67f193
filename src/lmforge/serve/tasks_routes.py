"""Serving a classifier or an embedding checkpoint (`sft --task_type ...`): OpenAI's `/v1/embeddings` (float or
base64, batch input, token counts in `usage`) and vLLM's `/v1/classify`, behind the same API key and 400s as chat.

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
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)


class ClassifyRequest(_Inputs):
    pass


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
    from lmforge.tasks import TASKS, get_task

    task = runner.task if runner is not None else "causal_lm"
    routes = get_task(task).routes
    if runner is not None:
        app.add_middleware(_NotChat, task=task, route=routes[0] if routes else "")

    def prepared(route: str, body: _Inputs) -> Any:
        """The request's texts rendered as in training, or the error response."""
        picked = pick_adapter(state, body.model)
        if not isinstance(picked, tuple):
            return picked
        if route not in routes:
            needs = "/".join(n for n, t in TASKS.items() if route in t.routes)
            return err(400, f"{route} needs a --task_type {needs} model; '{state.base_name}' has task {task}")
        texts = runner.texts([[{"role": "user", "content": x}] for x in body.input])
        limit = getattr(runner.model.config, "max_position_embeddings", None)
        for i, t in enumerate(texts):
            n = runner.count_tokens([t])
            if limit and n > limit:
                return err(400, f"input[{i}]: {n} tokens exceed the model's context of {limit}", param="input")
        return texts

    @app.post("/v1/embeddings")
    async def embeddings(body: EmbeddingRequest) -> Any:
        texts = prepared("/v1/embeddings", body)
        if not isinstance(texts, list):
            return texts
        vectors = runner.embed(texts)
        if body.dimensions is not None and body.dimensions != vectors.shape[1]:
            return err(400, f"dimensions: this model gives {vectors.shape[1]}-d embeddings", param="dimensions")
        data = [
            {"object": "embedding", "index": i, "embedding": _encode(v, body.encoding_format)}
            for i, v in enumerate(vectors)
        ]
        return {"object": "list", "data": data, "model": state.base_name, "usage": _usage(runner.count_tokens(texts))}

    @app.post("/v1/classify")
    async def classify(body: ClassifyRequest) -> Any:
        texts = prepared("/v1/classify", body)
        if not isinstance(texts, list):
            return texts
        preds = runner.predict(texts)
        n = runner.spec.num_labels
        data = [{"index": i, "label": p["label"], "probs": p["probs"], "num_classes": n} for i, p in enumerate(preds)]
        usage = {**_usage(runner.count_tokens(texts)), "completion_tokens": 0}
        return {
            "id": f"classify-{uuid.uuid4().hex}",
            "object": "list",
            "created": int(time.time()),
            "model": state.base_name,
            "data": data,
            "usage": usage,
        }
