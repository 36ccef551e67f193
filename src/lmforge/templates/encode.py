"""Encode conversations with the model's own chat template and find the trained spans by rendering.

How the loss mask is found (no Python copy of any template):
1. Render the whole conversation to text `T` with the jinja template.
2. For assistant message i, render `messages[:i]` with the generation prompt: that text must be a prefix of `T`
   (checked, loudly). The assistant turn starts where it ends, and runs to the first end-of-turn marker.
3. A rendered empty reasoning block (`<think>\n\n</think>\n\n`, which Qwen3 adds to answers without thinking) at
   the start of the turn carries no loss: training on it would teach the model to skip thinking.
4. Tokenize `T` once (exactly what `apply_chat_template(tokenize=True)` does) and label the tokens whose
   character offsets overlap a trained span.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmforge.errors import UserError
from lmforge.templates import TemplateSpec

IGNORE = -100
EMPTY_THINK = r"<think>\s*</think>\s*"  # --loss_scale ignore_empty_think on templates that do not declare theirs


class EncodeError(ValueError):
    """A row that cannot be trained on (too long, nothing to learn). The message says why."""


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    truncated: bool = False


def read_system(system: str | None) -> str | None:
    """`--system` is a string or a path to a .txt file."""
    if system and system.endswith(".txt") and Path(system).is_file():
        return Path(system).read_text(encoding="utf-8").strip()
    return system


class ChatTemplate:
    """Renders and encodes conversations for one tokenizer + template spec."""

    def __init__(
        self,
        tokenizer: Any,
        spec: TemplateSpec,
        *,
        system: str | None = None,
        max_length: int | None = None,
        truncation_strategy: str = "delete",
        loss_scale: str = "default",
        enable_thinking: bool | None = None,
        agent_template: str | None = None,
    ):
        self.tokenizer = tokenizer
        self.spec = spec
        self.jinja = spec.chat_template(tokenizer)
        self.end_of_turn = spec.turn_end(tokenizer, self.jinja)
        self.system = read_system(system) if system is not None else spec.default_system
        self.max_length = max_length
        self.truncation_strategy = truncation_strategy
        self.loss_scale = loss_scale
        self.enable_thinking = enable_thinking
        empty_think = spec.empty_think or (EMPTY_THINK if loss_scale == "ignore_empty_think" else None)
        self._empty_think = re.compile(empty_think) if empty_think else None
        from lmforge.agent.parsers import parser_for, renders_tools

        self.tool_parser = parser_for(self.jinja, agent_template)
        # a template that knows nothing of tools gets them rendered as plain text (ms-swift's agent templates)
        self.native_tools = renders_tools(self.jinja) and agent_template is None

    @property
    def empty_think_untrained(self) -> bool:
        """Whether a rendered empty reasoning block is left out of the loss."""
        return self._empty_think is not None

    def stop_ids(self) -> list[int]:
        """Token ids that end an answer: the template's end-of-turn marker and eos."""
        tok = self.tokenizer
        ids = (tok.convert_tokens_to_ids(self.end_of_turn), tok.eos_token_id)
        return sorted({t for t in ids if isinstance(t, int) and t >= 0})

    # -- rendering -----------------------------------------------------------------------------------------------
    def with_system(self, messages: list[dict]) -> list[dict]:
        """Apply --system: it fills in a missing system turn; '' removes the template's default."""
        if self.system is None or (messages and messages[0]["role"] == "system"):
            return messages
        if self.system == "":
            return messages
        return [{"role": "system", "content": self.system}, *messages]

    def exported_jinja(self) -> str:
        """The chat template an exported checkpoint carries: the chosen `--enable_thinking` becomes its default,
        so a plain `apply_chat_template` elsewhere (vLLM, transformers, ms-swift) follows it; a request's own
        `enable_thinking` still wins."""
        if self.enable_thinking is None or "enable_thinking" not in self.jinja:
            return self.jinja
        value = "true" if self.enable_thinking else "false"
        default = f"{{%- if enable_thinking is not defined %}}{{%- set enable_thinking = {value} %}}{{%- endif -%}}"
        return default + self.jinja

    def render(
        self,
        messages: list[dict],
        tools: list | None = None,
        add_generation_prompt: bool = False,
        **template_kwargs: Any,
    ) -> str:
        if not self.native_tools and (tools or any(m.get("tool_calls") or m["role"] == "tool" for m in messages)):
            messages, tools = self.tool_parser.render_messages(messages, tools), None
        kwargs = dict(template_kwargs)
        if self.enable_thinking is not None and "enable_thinking" not in kwargs:
            kwargs["enable_thinking"] = self.enable_thinking
        return self.tokenizer.apply_chat_template(
            messages,
            tools=tools or None,
            chat_template=self.jinja,
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
            **kwargs,
        )

    def prompt_ids(self, messages: list[dict], tools: list | None = None, **template_kwargs: Any) -> list[int]:
        """Token ids of a generation prompt (inference)."""
        text = self.render(self.with_system(messages), tools, add_generation_prompt=True, **template_kwargs)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    # -- training ------------------------------------------------------------------------------------------------
    def trained_spans(self, messages: list[dict], text: str, tools: list | None) -> list[tuple[int, int]]:
        """Character spans of `text` that carry loss."""
        if self.loss_scale == "all":
            return [(0, len(text))]
        from lmforge.templates.loss_scale import LOSS_SCALES

        rule = LOSS_SCALES.lookup(self.loss_scale)
        spans = []
        for i, msg in enumerate(messages):
            if msg["role"] != "assistant":
                continue
            trained = msg.get("loss")
            if trained is None:
                trained = rule(messages, i)
            if not trained:
                continue
            prefix = self.render(messages[:i], tools, add_generation_prompt=True)
            if not text.startswith(prefix):
                raise UserError(
                    f"template '{self.spec.name}' is not prefix-stable at message {i}: rendering the conversation up "
                    "to that turn does not give a prefix of the whole rendering",
                    hint="use --template chatml or register an override jinja file",
                )
            start = len(prefix)
            end = text.find(self.end_of_turn, start)
            end = len(text) if end < 0 else end + len(self.end_of_turn)
            if self._empty_think:
                m = self._empty_think.match(text, start)
                if m:
                    start = m.end()
            if end > start:
                spans.append((start, end))
        return spans

    def encode(self, messages: list[dict], tools: list | None = None) -> Encoded:
        """input_ids equal `apply_chat_template(messages, tokenize=True)`; labels are -100 outside trained spans."""
        messages = self.with_system(messages)
        text = self.render(messages, tools)
        spans = self.trained_spans(messages, text, tools)
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets = enc["input_ids"], enc["offset_mapping"]
        labels = [IGNORE] * len(ids)
        s = 0
        for k, (a, b) in enumerate(offsets):
            while s < len(spans) and a >= spans[s][1]:
                s += 1
            # a token overlapping a span is trained: BPE may merge the prompt's last newline with the answer's
            # first spaces, and that token is the one the model must produce
            if s < len(spans) and b > spans[s][0] and a < spans[s][1]:
                labels[k] = ids[k]
        return self._finish(ids, labels)

    def encode_text(self, text: str) -> Encoded:
        """Pre-training row: the text plus eos, loss on every token."""
        ids = self.tokenizer(text, add_special_tokens=True)["input_ids"]
        if self.tokenizer.eos_token_id is not None and (not ids or ids[-1] != self.tokenizer.eos_token_id):
            ids = [*ids, self.tokenizer.eos_token_id]
        return self._finish(ids, list(ids))

    def _finish(self, ids: list[int], labels: list[int]) -> Encoded:
        truncated = False
        if self.max_length and len(ids) > self.max_length:
            if self.truncation_strategy == "delete":
                raise EncodeError(f"{len(ids)} tokens > --max_length {self.max_length} (--truncation_strategy delete)")
            keep = slice(-self.max_length, None) if self.truncation_strategy == "left" else slice(0, self.max_length)
            ids, labels, truncated = ids[keep], labels[keep], True
        if all(x == IGNORE for x in labels):
            raise EncodeError("no trained tokens (no assistant answer left after truncation)")
        return Encoded(ids, labels, truncated)

    def render_marked(self, enc: Encoded) -> str:
        """The decoded row with trained spans wrapped in [[ ]] (for check output and the first training sample)."""
        out, cur, run = [], None, []
        for tid, lab in zip(enc.input_ids, enc.labels):
            trained = lab != IGNORE
            if trained != cur and run:
                text = self.tokenizer.decode(run)
                out.append(f"[[{text}]]" if cur else text)
                run = []
            cur = trained
            run.append(tid)
        if run:
            text = self.tokenizer.decode(run)
            out.append(f"[[{text}]]" if cur else text)
        return "".join(out)
