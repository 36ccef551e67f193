"""What a reranker reads and what it scores, shared by training (train/reranker.py) and infer/deploy
(infer/task_runner.py), so both see the same text and the same score.

`reranker`: a one-logit classifier head; the score is that logit. `generative_reranker` (Qwen3-Reranker style):
the causal LM's logit of the positive token ("yes") minus that of the negative token ("no") at the last real
position of the prompt."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from lmforge.errors import UserError

if TYPE_CHECKING:
    from lmforge.templates.encode import ChatTemplate

# Qwen3-Reranker's prompt: this system turn, a user turn `<Instruct>: ...\n<Query>: ...\n<Document>: ...`, then the
# assistant's header with an empty reasoning block (Qwen3's template renders it with enable_thinking=False); the
# answer token is read at the last position
SYSTEM = (
    "Judge whether the Document meets the requirements based on the Query and the Instruct provided. "
    'Note that the answer can only be "yes" or "no".'
)
INSTRUCT = "Given a web search query, retrieve relevant passages that answer the query"


def pair_text(
    query: list[dict], doc: list[dict], template: ChatTemplate, use_chat_template: bool, generative: bool
) -> str:
    """One prompt holding the query and a document (ms-swift renders both into one prompt too)."""
    from lmforge.templates.task_text import task_text

    q = "\n".join(str(m.get("content") or "") for m in query)
    d = "\n".join(str(m.get("content") or "") for m in doc)
    if not generative:
        return task_text([{"role": "user", "content": f"<Query>: {q}\n<Document>: {d}"}], template, use_chat_template)
    if not use_chat_template:  # plain text: the pair, and a cue where the answer goes
        return f"<Query>: {q}\n<Document>: {d}\nRelevant:"
    user = f"<Instruct>: {INSTRUCT}\n<Query>: {q}\n<Document>: {d}"
    turns = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]
    # Qwen3's template closes the generation prompt with the empty reasoning block; others end at the header
    return template.render(turns, add_generation_prompt=True, enable_thinking=False)


def answer_tokens(tokenizer: Any, positive: str | None, negative: str | None) -> tuple[int, int]:
    """Token ids of the positive/negative answers (flags, then ms-swift's env vars, then yes/no)."""
    words = (
        positive or os.environ.get("GENERATIVE_RERANKER_POSITIVE_TOKEN", "yes"),
        negative or os.environ.get("GENERATIVE_RERANKER_NEGATIVE_TOKEN", "no"),
    )
    ids = []
    for flag, word in zip(("positive", "negative"), words):
        pieces = tokenizer(word, add_special_tokens=False)["input_ids"]
        if len(pieces) != 1:
            raise UserError(
                f"--generative_reranker_{flag}_token {word!r} is {len(pieces)} tokens for this tokenizer",
                hint="pick a word that is one token",
            )
        ids.append(pieces[0])
    if ids[0] == ids[1]:
        raise UserError("--generative_reranker_positive_token and _negative_token are the same token")
    return ids[0], ids[1]


def scores(model: Any, batch: dict[str, Any], tokens: tuple[int, int] | None) -> Any:
    """One score per sequence of the batch: the head's logit, or logit(yes) - logit(no) at the last real token."""
    import torch

    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    if tokens is None:
        return logits[:, 0].float()
    mask = batch["attention_mask"]
    # the last position whose mask is 1, whichever side the tokenizer pads on
    last = (mask * torch.arange(mask.shape[1], device=mask.device)).argmax(1)
    at = logits[torch.arange(logits.shape[0], device=logits.device), last].float()
    return at[:, tokens[0]] - at[:, tokens[1]]
