"""An Engine whose answers the test writes: the real frontend (tokenizer, chat template, decoder), token ids in and
out, but the next tokens come from `reply(prompt_text)` instead of a model. For testing what the server does
with an answer (tool-call parsing, thinking split, streaming) exactly."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

from lmforge.infer.engine import Capabilities, Completion, Engine, SamplingConfig, Score, StreamEvent, completion_of
from lmforge.infer.frontend import Frontend


class ScriptedEngine(Engine):
    def __init__(self, frontend: Frontend, reply: Callable[[str], str]):
        self.frontend, self.reply = frontend, reply
        self.capabilities = Capabilities(max_length=8192)
        self.model_path = "scripted"
        self.prompts: list[str] = []  # every prompt seen, as text (special tokens kept)

    def _answer(self, prompt: list[int]) -> list[int]:
        text = self.frontend.tokenizer.decode(prompt)
        self.prompts.append(text)
        ids = self.frontend.tokenizer(self.reply(text), add_special_tokens=False)["input_ids"]
        return [*ids, self.frontend.stop_ids[0]]

    def stream(
        self, prompt_ids: list[int], cfg: SamplingConfig, *, adapter: str | None = None
    ) -> Iterator[StreamEvent]:
        ids = self._answer(prompt_ids)[: cfg.max_new_tokens]
        decoder = self.frontend.decoder(cfg.stop)
        for k, tok in enumerate(ids):
            last = k == len(ids) - 1
            text = decoder.add(tok) if tok not in self.frontend.stop_ids else ""
            reason = ("stop" if tok in self.frontend.stop_ids else "length") if last else None
            yield StreamEvent(tok, text + (decoder.flush() if last else ""), finish_reason=reason)

    def generate(
        self, prompts: list[list[int]], cfg: SamplingConfig, *, adapter: str | None = None
    ) -> list[Completion]:
        return [completion_of(list(self.stream(p, cfg)), len(p)) for p in prompts]

    async def agenerate(
        self, prompts: list[list[int]], cfg: SamplingConfig, *, adapter: str | None = None
    ) -> list[Completion]:
        return self.generate(prompts, cfg)

    async def astream(
        self, prompt_ids: list[int], cfg: SamplingConfig, *, adapter: str | None = None
    ) -> AsyncIterator[StreamEvent]:
        for event in self.stream(prompt_ids, cfg):
            yield event

    def score(
        self, prompts: list[list[int]], continuations: list[list[int]], *, adapter: str | None = None
    ) -> list[Score]:
        raise NotImplementedError("a scripted engine has no model to score with")
