"""The one generation interface: every command (infer, app, deploy, the demo, benches, PPO rollouts) talks to an
`Engine`, and every backend implements it.

The unit of work is token ids. lmforge applies the chat template once, in `infer.frontend.Frontend` (prompt ids,
stop ids, stop strings, detokenization, the thinking split), so every backend sees identical tokens. A backend
declares what it can do in `capabilities`. `ENGINES` maps `--infer_backend` names to factories (`register_engine`);
vLLM, SGLang and LMDeploy are placeholders that say in one line what is missing.

Torch-free at import: `lmforge --help` must stay light.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lmforge.args.groups import GenerationArgs
    from lmforge.infer.frontend import Frontend

FINISH_REASONS = ("stop", "length", "cancelled")


@dataclass(frozen=True)
class SamplingConfig:
    """Every generation setting, concrete: no backend (nor the model's generation_config.json) fills anything in.

    temperature 0 is greedy; top_k 0 and top_p 1.0 are off. `stop` strings end an answer (not included in the
    text); `logprobs` None returns none, k returns the chosen token's log-probability and the top k."""

    max_new_tokens: int = 512
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    logprobs: int | None = None

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0 or not 0 < self.top_p <= 1 or self.top_k < 0 or self.repetition_penalty <= 0:
            raise ValueError(f"invalid sampling settings: {self}")
        object.__setattr__(self, "stop", tuple(self.stop))

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def group_key(self) -> tuple:
        """Requests with equal keys can share one batched generate (max_new_tokens, stop and logprobs are per row)."""
        return (self.temperature, self.top_p, self.top_k, self.repetition_penalty, self.seed)


def sampling_from_args(
    g: GenerationArgs, *, max_new_tokens: int, temperature: float = 0.0, logprobs: int | None = None
) -> SamplingConfig:
    """The one translation of the generation flags. `max_new_tokens`/`temperature` are the command's defaults for
    flags not given (infer: greedy; deploy: 1.0, the OpenAI API's default)."""
    return SamplingConfig(
        max_new_tokens=g.max_new_tokens or max_new_tokens,
        temperature=temperature if g.temperature is None else g.temperature,
        top_p=1.0 if g.top_p is None else g.top_p,
        top_k=max(g.top_k or 0, 0),
        repetition_penalty=1.0 if g.repetition_penalty is None else g.repetition_penalty,
        stop=tuple(g.stop_words),
        logprobs=logprobs,
    )


@dataclass(frozen=True)
class TokenLogprob:
    token_id: int
    logprob: float
    top: tuple[tuple[int, float], ...] = ()  # (token id, logprob), best first


@dataclass(frozen=True)
class Completion:
    """One answer. `token_ids` include the stop token when the model produced one (what PPO trains on); `text`
    excludes stop tokens and stop strings."""

    token_ids: list[int]
    text: str
    finish_reason: str  # "stop", "length" or "cancelled"
    prompt_tokens: int
    completion_tokens: int
    logprobs: list[TokenLogprob] | None = None


@dataclass(frozen=True)
class StreamEvent:
    """One step of a stream: the new token (None when there is none), the text it made final (may be ''), and on
    the last event the finish reason."""

    token_id: int | None
    text: str
    logprob: TokenLogprob | None = None
    finish_reason: str | None = None


def completion_of(events: list[StreamEvent], prompt_tokens: int) -> Completion:
    """A whole stream as one Completion (for engines whose `generate` runs their `stream`)."""
    ids = [e.token_id for e in events if e.token_id is not None]
    reason = events[-1].finish_reason if events else None
    return Completion(ids, "".join(e.text for e in events), reason or "stop", prompt_tokens, len(ids))


@dataclass(frozen=True)
class Score:
    """Log-likelihood of a continuation given its prompt: one logprob per continuation token, and whether every
    token was the greedy choice (lm-eval's `is_greedy`)."""

    token_logprobs: list[float]
    greedy: bool
    top: tuple[tuple[tuple[int, float], ...], ...] = ()  # per token, its position's best (id, logprob) when asked

    @property
    def total(self) -> float:
        return sum(self.token_logprobs)


def check_score_inputs(prompts: list[list[int]], continuations: list[list[int]]) -> None:
    """What every engine's score() needs: one continuation per prompt, and no empty prompt (nothing to condition
    the first continuation token on)."""
    if len(prompts) != len(continuations):
        raise ValueError(f"{len(prompts)} prompts but {len(continuations)} continuations")
    if any(not p for p in prompts):
        raise ValueError("score needs a non-empty prompt for every continuation")


@dataclass(frozen=True)
class MediaPrompt:
    """Prompt token ids together with the processed media they refer to, for an engine with
    `capabilities.media` (multimodal/encode.media_prompt builds them). `inputs` are the extra model inputs:
    pixel_values / image_grid_thw (tensors, batched by concatenation) and mm_token_type_ids (a list, one per id)."""

    token_ids: list[int]
    inputs: dict[str, Any]

    def __len__(self) -> int:
        return len(self.token_ids)


@dataclass(frozen=True)
class Capabilities:
    adapters: tuple[str, ...] = ()  # adapter names a request may pick
    logprobs: bool = False
    prompt_logprobs: bool = False
    media: bool = False  # images in prompts (MediaPrompt): a vision-language model
    continuous_batching: bool = False  # rows join a running batch (False: requests batch per generate call)
    max_length: int = 4096  # context window, prompt + completion
    device: str = "cpu"


class EngineError(RuntimeError):
    """A generation failed inside the engine (not the caller's input); the message says how."""


class Engine(abc.ABC):
    """Generation over token ids. `adapter` picks a named adapter (None: the model as loaded)."""

    frontend: Frontend
    capabilities: Capabilities
    model_path: str  # where the weights came from (a directory, a hub id, a server URL)

    @abc.abstractmethod
    def generate(
        self, prompts: list[list[int]], cfg: SamplingConfig, *, adapter: str | None = None
    ) -> list[Completion]:
        """One completion per prompt, batched as the engine sees fit."""

    @abc.abstractmethod
    def stream(
        self, prompt_ids: list[int], cfg: SamplingConfig, *, adapter: str | None = None
    ) -> Iterator[StreamEvent]:
        """Events as tokens come; closing the iterator early cancels the generation."""

    @abc.abstractmethod
    async def agenerate(
        self, prompts: list[list[int]], cfg: SamplingConfig, *, adapter: str | None = None
    ) -> list[Completion]:
        """`generate` for asyncio callers; cancelling the awaiting task cancels the rows."""

    @abc.abstractmethod
    def astream(
        self, prompt_ids: list[int], cfg: SamplingConfig, *, adapter: str | None = None
    ) -> AsyncIterator[StreamEvent]:
        """`stream` for asyncio callers; closing it (or cancelling its task) cancels the generation."""

    @abc.abstractmethod
    def score(
        self, prompts: list[list[int]], continuations: list[list[int]], *, adapter: str | None = None, top: int = 0
    ) -> list[Score]:
        """Per-token log-likelihoods of each continuation given its (non-empty) prompt; `top` > 0 also returns the
        `top` most likely tokens at each position (for `/v1/completions` echo with logprobs)."""

    def chat(self, conversations: list[list[dict]], cfg: SamplingConfig, **template_kwargs: Any) -> list[Completion]:
        """Convenience: conversations through the frontend, then `generate`."""
        return self.generate([self.frontend.prompt_ids(c, **template_kwargs) for c in conversations], cfg)


# -- backends --------------------------------------------------------------------------------------------------
