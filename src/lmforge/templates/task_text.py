"""The text a classifier, embedding model or reranker reads from a conversation: the chat template's rendering
(as ms-swift's template does for these tasks), or the turns' plain text with `--use_chat_template false`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lmforge.templates.encode import ChatTemplate


def task_text(messages: list[dict], template: ChatTemplate, use_chat_template: bool, end_token: bool = False) -> str:
    """`end_token`: append the tokenizer's eos when the text does not end with it (last-token pooling reads the
    hidden state of an end token, as Qwen3-Embedding's `<|endoftext|>`)."""
    if use_chat_template:
        text = template.render(template.with_system(messages))
    else:
        text = "\n".join(str(m.get("content") or "") for m in messages)
    eos = template.tokenizer.eos_token
    if end_token and eos and not text.endswith(eos):
        text += eos
    return text
