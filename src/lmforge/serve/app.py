"""The OpenAI-compatible FastAPI app: /v1/models, /v1/chat/completions, /v1/completions, /health.

The app depends only on the `Engine` interface: prompts go through the engine's frontend (the chat template,
applied once), generation through `agenerate`/`astream` (the engine batches concurrent requests).
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.middleware.base import BaseHTTPMiddleware

from lmforge.serve.protocol import ChatRequest, CompletionRequest
from lmforge.serve.responses import chat_completion, text_completion
from lmforge.serve.state import ServeState, err

MAX_BODY = 8 * 1024 * 1024  # a 10 MB body is refused before it is parsed


class _Guard(BaseHTTPMiddleware):
    """API key and body size, before any route runs."""

    def __init__(self, app: Any, state: ServeState):
        super().__init__(app)
        self.state = state

    async def dispatch(self, request: Request, call_next: Any) -> Any:
        if request.url.path != "/health" and self.state.api_key:
            if request.headers.get("authorization", "") != f"Bearer {self.state.api_key}":
                return err(401, "invalid or missing API key", "authentication_error")
        size = request.headers.get("content-length")
        if size and size.isdigit() and int(size) > MAX_BODY:
            if int(size) <= 8 * MAX_BODY:  # read and drop it (no buffering) so the client sees the 413, not a reset
                async for _ in request.stream():
                    pass
            return err(413, f"request body over {MAX_BODY // 2**20} MB")
        return await call_next(request)


def _validation_message(first: dict) -> tuple[str, str | None]:
    where = ".".join(str(x) for x in first.get("loc", ()) if x != "body")
    msg = str(first.get("msg", "invalid request")).removeprefix("Value error, ")
    if first.get("type") == "extra_forbidden":
        msg = "unknown field (not part of the API this server honours)"
    return f"{where or 'body'}: {msg}", where or None


def build_app(state: ServeState, task_runner: Any = None) -> FastAPI:
    """`task_runner`: a classifier/embedding checkpoint's (serve/tasks_routes.py), served instead of chat."""
    from lmforge.serve.tasks_routes import add_task_routes

    app = FastAPI(title="lmforge", docs_url=None, redoc_url=None)
    add_task_routes(app, state, task_runner)  # its middleware runs inside the guard's (added after it)
    app.add_middleware(_Guard, state=state)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(exc.errors()[0] if exc.errors() else {})
        return err(400, message, param=param)

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
        return await chat_completion(state, body)

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest) -> Any:
        return await text_completion(state, body)

    return app
