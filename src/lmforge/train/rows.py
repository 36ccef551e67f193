"""Standard rows -> the rows trl's trainers (and our PPO) take, in conversational form. Each method's entry in the
method table names its converter; a row that cannot serve the method is one line naming its file and row."""

from __future__ import annotations

import json
from typing import Any

from lmforge.errors import DataError

Row = dict[str, Any]
_SKIP = {"messages", "rejected_response", "rejected_messages", "label", "_src", "_idx"}


def where(row: Row) -> str:
    from lmforge.data.loader import location

    return location(row["_src"], row["_idx"]) if "_src" in row else "row"


def preference(row: Row, template: Any, method: str) -> Row:
    """dpo, cpo, simpo, orpo, rm: prompt, chosen and rejected answers."""
    msgs = template.with_system(row["messages"])
    rejected = rejected_answer(row, method)
    out = {"prompt": msgs[:-1], "chosen": [msgs[-1]], "rejected": [{"role": "assistant", "content": rejected}]}
    return with_images(out, row, template, method)


def rejected_answer(row: Row, method: str) -> str:
    """The rejected answer of a preference row (rejected_response, or the last turn of rejected_messages)."""
    rejected = row.get("rejected_response")
    if rejected is None and row.get("rejected_messages"):
        rejected = row["rejected_messages"][-1].get("content")
    if rejected is None or row["messages"][-1]["role"] != "assistant":
        raise DataError(
            f"{where(row)}: rejected_response: missing; {method} needs preference rows",
            hint='give rows a rejected_response, or map yours: --columns \'{"rejected": "rejected_response"}\'',
        )
    return rejected


def with_images(out: Row, row: Row, template: Any, method: str) -> Row:
    """A vision-language model: the prompt's `<image>` tags become trl's image blocks (filled from `images` in
    order by trl's vision collator, which runs the processor); every row carries `images`, [] for a text row."""
    if not getattr(template, "takes_media", False):
        return out
    if row.get("videos") or row.get("audios"):
        raise DataError(f"{where(row)}: videos: {method} takes images only in this lmforge version")
    from lmforge.multimodal.parts import TAG

    def blocks(content: Any) -> Any:
        if not isinstance(content, str):
            return content
        pieces = content.split(TAG["image"])
        parts = [{"type": "text", "text": pieces[0]}] if pieces[0] else []
        for piece in pieces[1:]:
            parts += [{"type": "image"}, *([{"type": "text", "text": piece}] if piece else [])]
        return parts

    out["prompt"] = [{**m, "content": blocks(m.get("content"))} for m in out["prompt"]]
    return {**out, "images": list(row.get("images") or [])}


def unpaired(row: Row, template: Any, method: str) -> Row:
    """kto: one answer with a desirable/undesirable label."""
    msgs = template.with_system(row["messages"])
    label = row.get("label")
    if not isinstance(label, bool):
        raise DataError(
            f"{where(row)}: label: expected true or false, got {label!r}",
            hint="KTO rows carry a boolean label: is the answer desirable?",
        )
    return with_images({"prompt": msgs[:-1], "completion": [msgs[-1]], "label": label}, row, template, method)


def prompt(row: Row, template: Any, method: str) -> Row:
    """grpo, ppo: the prompt (a trailing answer is dropped) and every other column, for the reward functions."""
    msgs = template.with_system(row["messages"])
    head = msgs[:-1] if msgs[-1]["role"] == "assistant" else msgs
    return {"prompt": head, **{k: v for k, v in row.items() if k not in _SKIP}}


def prompt_with_images(row: Row, template: Any, method: str) -> Row:
    """grpo: `prompt`, its `<image>` tags as trl's image blocks on a vision-language model."""
    return with_images(prompt(row, template, method), row, template, method)


def conversation(row: Row, template: Any, method: str) -> Row:
    """gkd: whole conversations ending in an answer (the student also samples its own, --lmbda of the time)."""
    msgs = template.with_system(row["messages"])
    if msgs[-1]["role"] != "assistant":
        raise DataError(
            f"{where(row)}: messages: ends with a {msgs[-1]['role']} turn; {method} needs conversations with an "
            "assistant answer",
            hint="GKD distils on answered conversations; for prompt-only rows use --rlhf_type grpo or ppo",
        )
    return {"messages": msgs}


def convert(ds: Any, converter: Any, template: Any, method: str) -> Any:
    """A `row` column of standard rows -> a datasets.Dataset in the method's form (None stays None)."""
    import datasets

    if ds is None:
        return None
    return datasets.Dataset.from_list([converter(json.loads(r), template, method) for r in ds["row"]])
