"""Datasets that ship with lmforge or are known by their hub ids."""

from __future__ import annotations

from typing import Any

from lmforge.data.registry import BUILTIN_DIR, DatasetMeta, SubsetMeta, register_dataset

EMPTY_THINK = "<think>\n\n</think>\n\n"


def _names(values: list[str]) -> tuple[str, str] | None:
    if not values:
        return None
    return (values[0], values[1] if len(values) > 1 else values[0])  # one value serves both languages


def self_cognition(row: dict, args: Any, variant: str = "default") -> dict:
    """Fill {{NAME}} / {{AUTHOR}} from --model_name / --model_author: [0] for Chinese rows, [1] for English."""
    row = dict(row)
    lang = 0 if row.get("tag") == "zh" else 1
    for placeholder, values in (("{{NAME}}", _names(args.model_name)), ("{{AUTHOR}}", _names(args.model_author))):
        if values:
            for key in ("query", "response"):
                row[key] = row[key].replace(placeholder, values[lang])
    if variant == "qwen3":
        row["query"] += " /no_think"
    if variant in ("qwen3", "empty_think"):
        row["response"] = EMPTY_THINK + row["response"]
    return row


def _variant(name: str):
    def pre(row: dict, args: Any) -> dict:
        return self_cognition(row, args, name)

    pre.__name__ = f"self_cognition_{name}"
    return pre


register_dataset(
    DatasetMeta(
        name="self-cognition",
        ms_dataset_id="swift/self-cognition",
        hf_dataset_id="modelscope/self-cognition",
        dataset_path=str(BUILTIN_DIR / "self_cognition.jsonl"),
        subsets=[
            SubsetMeta("default", preprocess=_variant("default")),
            SubsetMeta("qwen3", preprocess=_variant("qwen3"), weak=True),
            SubsetMeta("empty_think", preprocess=_variant("empty_think"), weak=True),
        ],
    )
)

register_dataset(DatasetMeta(name="lmforge-instruct-mini", dataset_path=str(BUILTIN_DIR / "instruct_mini.jsonl")))
# 40 preference pairs (helpful vs dismissive answers, English and Chinese) for DPO-family demos and checks
register_dataset(DatasetMeta(name="lmforge-dpo-mini", dataset_path=str(BUILTIN_DIR / "dpo_mini.jsonl")))

# The seed's instruction sets: registered by hub id, loaded when a hub is reachable.
for _lang in ("zh", "en"):
    register_dataset(
        DatasetMeta(
            name=f"alpaca-gpt4-data-{_lang}",
            ms_dataset_id=f"AI-ModelScope/alpaca-gpt4-data-{_lang}",
            hf_dataset_id=f"llm-wizard/alpaca-gpt4-data-{_lang}" if _lang == "zh" else "vicgalle/alpaca-gpt4",
        )
    )
