"""The template front end, applied once by lmforge whatever the backend: conversation -> prompt ids, stop ids,
incremental detokenization with stop strings, and the thinking split of an answer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lmforge.agent.parsers import ToolParser
    from lmforge.templates.encode import ChatTemplate

_DEFAULT = object()  # "the template's own --system"

# Qwen3-style reasoning markers (the only hybrid-thinking family registered so far)
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


class Frontend:
    """Everything between text and token ids for one tokenizer + chat template."""

    def __init__(self, template: ChatTemplate):
        self.template = template
        self.tokenizer = template.tokenizer
        self.stop_ids: tuple[int, ...] = tuple(template.stop_ids())
        pad = self.tokenizer.pad_token_id
        self.pad_id: int = pad if pad is not None else self.stop_ids[0]
        self.tool_parser = template.tool_parser  # the family's tool-call markup (lmforge.agent.parsers)

    @property
    def system(self) -> str | None:
        """The system prompt applied when a conversation has none (`--system`, or the template's default)."""
        return self.template.system

    def prompt_ids(
        self, messages: list[dict], tools: list | None = None, *, system: Any = _DEFAULT, **template_kwargs: Any
    ) -> list[int]:
        """Token ids of the generation prompt. `system` overrides `--system` for this call (None: no lmforge
        system turn, so the jinja template's own default applies)."""
        if system is _DEFAULT:
            msgs = self.template.with_system(messages)
        elif system and not (messages and messages[0]["role"] == "system"):
            msgs = [{"role": "system", "content": system}, *messages]
        else:
            msgs = messages
        text = self.template.render(msgs, tools, add_generation_prompt=True, **template_kwargs)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def text_ids(self, text: str) -> list[int]:
        """A raw prompt (`/v1/completions`): no template, the tokenizer's own special tokens."""
        return self.tokenizer(text, add_special_tokens=True)["input_ids"]

    def token_text(self, token_id: int) -> str:
        return self.tokenizer.decode([token_id])

    def decoder(self, stops: tuple[str, ...] | list[str] = ()) -> Decoder:
        return Decoder(self.tokenizer, tuple(stops))


class Decoder:
    """Incremental detokenization with stop strings: `add` returns only text that is final.

    Each step decodes a short window (the previous token's start to the end), so the cost per token does not grow
    with the answer; half a multi-byte character waits for the rest. Text that could be the start of a stop
    string is held back until it cannot."""

    def __init__(self, tokenizer: Any, stops: tuple[str, ...] = ()):
        self.tok, self.stops = tokenizer, tuple(s for s in stops if s)
        self.hold = max((len(s) - 1 for s in self.stops), default=0)
        self.ids: list[int] = []
        self.text = ""
        self.stopped = False
        self._prefix = self._read = self._sent = self._checked = 0

    def _decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids, skip_special_tokens=True)

    def add(self, token: int) -> str:
        """Take one generated token; return the newly final text."""
        if self.stopped:
            return ""
        self.ids.append(token)
        before = self._decode(self.ids[self._prefix : self._read])
        now = self._decode(self.ids[self._prefix :])
        if len(now) > len(before) and not now.endswith("\ufffd"):
            self.text += now[len(before) :]
            self._prefix, self._read = self._read, len(self.ids)
            self._find_stop()
        return self._release(self.hold if not self.stopped else 0)

    def _find_stop(self) -> None:
        if not self.stops:
            return
        start = max(0, self._checked - self.hold)
        hits = [i for i in (self.text.find(s, start) for s in self.stops) if i >= 0]
        if hits:
            self.text, self.stopped = self.text[: min(hits)], True
        self._checked = len(self.text)

    def _release(self, hold: int) -> str:
        end = max(len(self.text) - hold, self._sent)
        delta, self._sent = self.text[self._sent : end], end
        return delta

    def flush(self) -> str:
        """The rest of the text (the answer ended)."""
        return self._release(0)


def split_reasoning(text: str) -> tuple[str | None, str]:
    """Thinking models: `<think>...</think>answer` -> (reasoning, answer)."""
    if THINK_CLOSE not in text:
        return None, text
    head, _, tail = text.partition(THINK_CLOSE)
    return head.replace(THINK_OPEN, "").strip("\n"), tail.lstrip("\n")


class ThinkingRouter:
    """The streaming form of `split_reasoning`: routes each text delta to `reasoning_content` or `content`."""

    def __init__(self) -> None:
        self.inside = False

    def route(self, delta: str) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        while delta:
            marker = THINK_CLOSE if self.inside else THINK_OPEN
            field = "reasoning_content" if self.inside else "content"
            at = delta.find(marker)
            if at < 0:
                out.append((delta, field))
                break
            if at:
                out.append((delta[:at].rstrip("\n") if self.inside else delta[:at], field))
            self.inside, delta = not self.inside, delta[at + len(marker) :].lstrip("\n")
        return [(p, f) for p, f in out if p]


def assistant_message(
    text: str, parser: ToolParser | None, prefix: str = "", parallel: bool = True
) -> tuple[dict[str, Any], bool]:
    """An answer as the OpenAI assistant message (`content`, `reasoning_content`, `tool_calls`) and whether it is
    a tool call; `parser` None reads no calls, `prefix` is a prefilled call opening. Shared by deploy and infer."""
    reasoning, content = split_reasoning(text)
    calls: list = []
    if parser is not None:
        content, calls = parser.parse(prefix + content)
        calls = calls if parallel else calls[:1]
    msg: dict[str, Any] = {"role": "assistant", "content": content or (None if calls else "")}
    if reasoning is not None:
        msg["reasoning_content"] = reasoning
    if calls:
        msg["tool_calls"] = [c.openai() for c in calls]
    return msg, bool(calls)
