"""OpenAI request bodies (pydantic), validated strictly: a wrong type is a 400, never a 500.

Every field a request may carry is declared here and honoured. Fields of the OpenAI API this server cannot honour
are declared too, so that a value asking for them (a penalty, a JSON response format, a forced tool) is a 400 that
names the field instead of being dropped silently; unknown fields are a 400 as well.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

TEXT_PARTS = {"text": "text", "refusal": "refusal"}  # content-part type -> the key holding its text


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")  # name, tool_call_id, ...: passed on to the chat template
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict[str, Any]] | None = None
    tool_calls: list[dict[str, Any]] | None = None
    reasoning_content: str | None = None

    def media_parts(self) -> list[tuple[int, str]]:
        """(index, type) of every content part that is not text: images, audio, video, files."""
        if not isinstance(self.content, list):
            return []
        return [(j, str(p.get("type"))) for j, p in enumerate(self.content) if p.get("type") not in TEXT_PARTS]

    def plain(self) -> dict[str, Any]:
        """The message as the chat template takes it (text parts joined)."""
        content = self.content
        if isinstance(content, list):
            content = "".join(str(p.get(TEXT_PARTS[p["type"]], "")) for p in content if p.get("type") in TEXT_PARTS)
        role = "system" if self.role == "developer" else self.role  # OpenAI's newer name for the system turn
        msg: dict[str, Any] = {**(self.model_extra or {}), "role": role, "content": content or ""}
        if self.tool_calls:
            msg["tool_calls"] = self.tool_calls
        if self.reasoning_content:
            msg["reasoning_content"] = self.reasoning_content
        return msg


def _unsupported(value: Any, neutral: tuple, what: str) -> Any:
    if value not in neutral:
        raise ValueError(f"{what} is not supported by this server")
    return value


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: bool = False


class _Sampling(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_k: int | None = Field(default=None, ge=-1)
    repetition_penalty: float | None = Field(default=None, gt=0)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = Field(default=1, ge=1, le=16)
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None  # informational (OpenAI uses it for abuse monitoring)
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None

    @field_validator("stop")
    @classmethod
    def _stops(cls, v: Any) -> list[str]:
        if v is None:
            return []
        v = [v] if isinstance(v, str) else v
        if len(v) > 8:
            raise ValueError("at most 8 stop sequences")
        return v

    @field_validator("presence_penalty", "frequency_penalty")
    @classmethod
    def _penalty(cls, v: float | None) -> float | None:
        return _unsupported(v, (None, 0, 0.0), "a non-zero penalty (use repetition_penalty)")

    @field_validator("logit_bias")
    @classmethod
    def _bias(cls, v: dict | None) -> dict | None:
        return _unsupported(v or None, (None,), "logit_bias")

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    chat_template_kwargs: dict[str, Any] | None = None

    @field_validator("response_format")
    @classmethod
    def _format(cls, v: Any) -> Any:
        return _unsupported(None if v is None or v.get("type") == "text" else v, (None,), "response_format")


class CompletionRequest(_Sampling):
    # text, texts, token ids, or lists of token ids (what lm-eval's local-completions sends)
    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int | None = Field(default=None, ge=0)  # 0: score the prompt only (with echo)
    logprobs: int | None = Field(default=None, ge=0, le=20)
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = None
    # vLLM's token-level fields, so lmforge's RemoteEngine (infer/remote.py) can drive this server too
    stop_token_ids: list[int] | None = None  # must be this server's own stop ids (its template's)
    ignore_eos: bool = False  # with stop_token_ids: stop at exactly those (what this server does anyway)
    return_tokens_as_token_ids: bool = False  # logprobs tokens spelled 'token_id:N'

    @field_validator("suffix")
    @classmethod
    def _suffix(cls, v: Any) -> Any:
        return _unsupported(v or None, (None,), "suffix (insertion)")


def error_body(
    message: str, kind: str = "invalid_request_error", param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}
