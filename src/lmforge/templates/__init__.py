"""Chat templates. The single source of truth is a jinja template: the tokenizer's own, or an override file in
`jinja/` for families whose template cannot be used as is. Python only says where a turn ends and which
generated text carries no loss (an empty `<think></think>` block).

    @register_template("mytemplate")
    def _mine() -> TemplateSpec:
        return TemplateSpec(jinja="mytemplate.jinja", end_of_turn="</s>")
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmforge.errors import UserError

JINJA_DIR = Path(__file__).parent / "jinja"


@dataclass(frozen=True)
class TemplateSpec:
    jinja: str | None = None  # override file in jinja/ (or an absolute path); None: the tokenizer's own template
    end_of_turn: str | None = None  # text closing an assistant turn; None: found in the template, else eos
    empty_think: str | None = None  # regex of a rendered empty reasoning block that must not be trained
    thinking: bool = False  # hybrid thinking model: --enable_thinking applies
    default_system: str | None = None
    name: str = ""

    def chat_template(self, tokenizer: Any) -> str:
        if self.jinja is None:
            if not getattr(tokenizer, "chat_template", None):
                raise UserError(
                    f"template '{self.name}': the tokenizer has no chat template", hint="pass --template chatml"
                )
            return tokenizer.chat_template
        path = Path(self.jinja) if Path(self.jinja).is_absolute() else JINJA_DIR / self.jinja
        return path.read_text(encoding="utf-8")

    def turn_end(self, tokenizer: Any, chat_template: str) -> str:
        if self.end_of_turn:
            return self.end_of_turn
        for marker in ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>"):
            if marker in chat_template:
                return marker
        return tokenizer.eos_token


TEMPLATES: dict[str, TemplateSpec] = {}


def register_template(name: str) -> Callable[[Callable[[], TemplateSpec]], Callable[[], TemplateSpec]]:
    def deco(fn: Callable[[], TemplateSpec]) -> Callable[[], TemplateSpec]:
        TEMPLATES[name] = TemplateSpec(**{**fn().__dict__, "name": name})
        return fn

    return deco


@register_template("auto")
def _auto() -> TemplateSpec:
    return TemplateSpec()


@register_template("qwen3")
def _qwen3() -> TemplateSpec:
    return TemplateSpec(end_of_turn="<|im_end|>", empty_think=r"<think>\s*</think>\n*", thinking=True)


@register_template("qwen2_5")
def _qwen2_5() -> TemplateSpec:
    return TemplateSpec(end_of_turn="<|im_end|>")


@register_template("smollm2")
def _smollm2() -> TemplateSpec:
    return TemplateSpec(end_of_turn="<|im_end|>")


@register_template("llama3")
def _llama3() -> TemplateSpec:
    return TemplateSpec(end_of_turn="<|eot_id|>")


@register_template("qwen2_vl")
def _qwen2_vl() -> TemplateSpec:
    # the published Qwen2-VL / Qwen2.5-VL processor template (hub folders carry the same text)
    return TemplateSpec(jinja="qwen2_vl.jinja", end_of_turn="<|im_end|>")


@register_template("chatml")
def _chatml() -> TemplateSpec:
    # for base models without a chat template, and ms-swift users who pass --template chatml
    return TemplateSpec(jinja="chatml.jinja", end_of_turn="<|im_end|>")


def get_template(name: str) -> TemplateSpec:
    if name not in TEMPLATES:
        raise UserError(f"unknown template '{name}'; known: {', '.join(sorted(TEMPLATES))}")
    return TEMPLATES[name]
