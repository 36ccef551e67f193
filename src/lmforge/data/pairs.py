"""Rows of embedding (and reranker) data as ms-swift writes them: an anchor, its positive, hard negatives and a
pair label. `query` + `response` (+ `rejected_response`, + `label`), or `messages` + `positive_messages` [[...]] +
`negative_messages` [[...], ...]; each part becomes a conversation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Columns:
    anchor: list[dict]
    positive: list[dict] | None
    negatives: list[list[dict]]
    label: Any


def _as_turns(value: Any) -> list[dict]:
    return [{"role": "user", "content": value}] if isinstance(value, str) else list(value)


def columns(row: dict) -> Columns:
    """A standard row -> anchor / positive / hard negatives / label."""
    msgs = row["messages"]
    positive = None
    if row.get("positive_messages"):
        positive = row["positive_messages"][0]
    elif msgs and msgs[-1]["role"] == "assistant":  # `response`: the positive document
        positive, msgs = [{"role": "user", "content": msgs[-1]["content"]}], msgs[:-1]
    negatives = [_as_turns(n) for n in row.get("negative_messages") or []]
    rejected = row.get("rejected_responses") or row.get("rejected_response")  # the full list when given
    if rejected:
        negatives += [_as_turns(r) for r in (rejected if isinstance(rejected, list) else [rejected])]
    return Columns(msgs, positive, negatives, row.get("label"))
