"""What the server routes share: the engine and names being served, the deploy defaults, and the request ->
SamplingConfig translation."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi.responses import JSONResponse

from lmforge.serve.protocol import error_body

if TYPE_CHECKING:
    from lmforge.infer.engine import Engine, SamplingConfig


@dataclass
class ServeState:
    engine: Engine
    base_name: str
    adapters: dict[str, str]  # served name -> engine adapter name
    defaults: SamplingConfig  # the deploy flags (--max_new_tokens, --temperature, ...) for fields a request omits
    api_key: str | None = None
    allowed_media_path: str | None = None  # --allowed_local_media_path: local image files are read only under it


def err(status: int, message: str, kind: str = "invalid_request_error", param: str | None = None) -> JSONResponse:
    return JSONResponse(error_body(message, kind, param), status_code=status)


def sampling(state: ServeState, body: Any, prompt_len: int, logprobs: int | None) -> SamplingConfig | JSONResponse:
    """The request's settings over the deploy defaults; a prompt that leaves no room is a 400."""
    context = state.engine.capabilities.max_length
    max_tokens = getattr(body, "max_completion_tokens", None) or body.max_tokens
    if max_tokens is None:
        max_tokens = max(1, min(state.defaults.max_new_tokens, context - prompt_len))
    if prompt_len + max_tokens > context:
        return err(
            400,
            f"prompt ({prompt_len} tokens) + max_tokens ({max_tokens}) exceeds the model's context of {context} tokens",
            param="max_tokens",
        )
    d = state.defaults
    return dataclasses.replace(
        d,
        max_new_tokens=max_tokens,
        temperature=d.temperature if body.temperature is None else body.temperature,
        top_p=d.top_p if body.top_p is None else body.top_p,
        top_k=d.top_k if body.top_k is None else max(body.top_k, 0),
        repetition_penalty=d.repetition_penalty if body.repetition_penalty is None else body.repetition_penalty,
        stop=tuple(body.stop) if body.stop else d.stop,
        seed=body.seed,
        logprobs=logprobs,
    )


def pick_adapter(state: ServeState, model: str | None) -> tuple[str | None, str] | JSONResponse:
    if model in (None, "", state.base_name):
        return None, state.base_name
    if model in state.adapters:
        return state.adapters[model], model
    known = ", ".join([state.base_name, *state.adapters])
    return err(404, f"model '{model}' not found; served: {known}", param="model")
