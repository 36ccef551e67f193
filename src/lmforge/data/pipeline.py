"""From flags to training-ready data: load + convert (loader.py), combine, split, then encode with the template."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from lmforge.data.loader import Loaded, load_specs, location
from lmforge.errors import DataError, UserError
from lmforge.multimodal.encode import media_of, text_only_message
from lmforge.templates.encode import ChatTemplate, EncodeError


@dataclass
class DataBundle:
    train: Any  # datasets.Dataset (or IterableDataset when streaming) of standard rows in a `row` column
    val: Any | None
    parts: list[Loaded] = field(default_factory=list)
    val_parts: list[Loaded] = field(default_factory=list)


def _concat(parts: list[Loaded]) -> Any:
    import datasets

    rows = [p.rows for p in parts]
    if len(rows) == 1:
        return rows[0]
    if isinstance(rows[0], datasets.IterableDataset):
        return datasets.interleave_datasets(rows)
    return datasets.concatenate_datasets(rows)


def load_data(args: Any, use_hf: bool = False, need_train: bool = True) -> DataBundle:
    """Load --dataset and --val_dataset (or carve --split_dataset_ratio), shuffled as asked."""
    if need_train and not args.dataset:
        raise UserError("no --dataset given", hint="e.g. --dataset data.jsonl or --dataset self-cognition#100")
    parts = load_specs(args.dataset, args, use_hf)
    train = _concat(parts) if parts else None
    val, val_parts = None, []
    if args.val_dataset:
        val_parts = load_specs(args.val_dataset, args, use_hf)
        val = _concat(val_parts)
    elif args.split_dataset_ratio > 0 and train is not None:
        if args.streaming:
            raise UserError(
                "--split_dataset_ratio needs a map-style dataset", hint="use --val_dataset with --streaming"
            )
        n_val = max(int(len(train) * args.split_dataset_ratio), 1)
        split = train.train_test_split(test_size=n_val, seed=args.data_seed, shuffle=True)
        train, val = split["train"], split["test"]
    if train is not None and args.dataset_shuffle:
        train = train.shuffle(seed=args.data_seed)
    return DataBundle(train, val, parts, val_parts)


def refuse_if_mostly_dropped(parts: list[Loaded]) -> None:
    """Training on a file where most rows failed to convert is almost always a format mistake: stop."""
    for p in parts:
        if p.total and p.n_dropped * 2 > p.total:
            raise DataError(
                f"dataset '{p.name}': {p.n_dropped} of {p.total} rows unusable; first: {p.reasons[0]}",
                hint="fix the file, or map its columns with --columns",
            )


@dataclass
class _Encode:
    template: ChatTemplate
    stage: str  # "sft" or "pt"

    def __call__(self, row_json: str) -> dict:
        row = json.loads(row_json)
        msgs = row["messages"]
        media = media_of(row)
        try:
            if media and not getattr(self.template, "takes_media", False):
                raise EncodeError(text_only_message(self.template))
            if self.stage == "pt":
                enc = self.template.encode_text("\n".join(m["content"] for m in msgs))
            else:
                if msgs[-1]["role"] != "assistant":
                    raise EncodeError(f"messages[{len(msgs) - 1}]: conversation does not end with an assistant turn")
                enc = self.template.encode(msgs, tools=row.get("tools"), **({"media": media} if media else {}))
        except EncodeError as e:
            where = location(row["_src"], row["_idx"]) if "_src" in row else "row"
            return {
                "input_ids": [],
                "labels": [],
                "length": 0,
                "error": f"{where}: {e}",
                "truncated": False,
                "media": "",
            }
        return {
            "input_ids": enc.input_ids,
            "labels": enc.labels,
            "length": len(enc.input_ids),
            "error": "",
            "truncated": enc.truncated,
            "media": json.dumps(media) if media else "",  # the collator loads the pixels (multimodal/collate.py)
        }


def encode_rows(
    ds: Any,
    template: ChatTemplate,
    stage: str,
    num_proc: int = 1,
    load_from_cache_file: bool = True,
    keep_errors: bool = False,
) -> Any:
    """Encode the `row` column into input_ids/labels/length. Rows that cannot be trained on are dropped
    (kept with their `error` when keep_errors, so `check` can report them)."""
    import datasets

    from lmforge.data.fingerprint import encode_fingerprint

    fn = _Encode(template, stage)
    if isinstance(ds, datasets.IterableDataset):
        out = ds.map(fn, input_columns="row", remove_columns=["row"])
        return out if keep_errors else out.filter(lambda e: not e, input_columns="error")
    out = ds.map(
        fn,
        input_columns="row",
        remove_columns=["row"],
        num_proc=num_proc if num_proc > 1 else None,
        load_from_cache_file=load_from_cache_file,
        new_fingerprint=encode_fingerprint(ds, template, stage),  # hashing the tokenizer with dill took seconds
        desc="encoding",
    )
    if keep_errors:
        return out
    return out.filter(lambda e: not e, input_columns="error").remove_columns(["error"])


def refuse_media_for_text_model(data: Any, template: Any) -> None:
    """Training a text-only model on rows with images would silently drop them: one line naming the first row."""
    if getattr(template, "takes_media", False):
        return
    for ds in (data.train, data.val):
        if ds is None or not hasattr(ds, "__len__"):
            continue  # streaming: each row is refused when it is encoded
        for row_json in ds["row"]:
            if '"images"' in row_json or '"videos"' in row_json or '"audios"' in row_json:
                row = json.loads(row_json)
                if media_of(row):
                    where = location(row["_src"], row["_idx"]) if "_src" in row else "row"
                    raise DataError(f"{where}: {text_only_message(template)}")
