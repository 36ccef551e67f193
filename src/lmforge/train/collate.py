"""Batch building: padded batches, padding-free (flattened) batches, and best-fit-decreasing packing.

Padding-free and packing feed one row of concatenated sequences with `position_ids` restarting at 0 for each
sequence and no attention mask: transformers then builds a block-diagonal mask (sdpa/eager) so sequences never
attend to each other, and no flash-attn is needed. The first label of every sequence is masked, so no loss
crosses a boundary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

IGNORE = -100


@dataclass
class PaddedCollator:
    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, rows: list[dict]) -> dict:
        import torch

        longest = max(len(r["input_ids"]) for r in rows)
        if self.pad_to_multiple_of:
            longest = -(-longest // self.pad_to_multiple_of) * self.pad_to_multiple_of
        ids = torch.full((len(rows), longest), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(rows), longest), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(rows), longest), dtype=torch.long)
        for i, r in enumerate(rows):
            n = len(r["input_ids"])
            ids[i, :n] = torch.tensor(r["input_ids"])
            labels[i, :n] = torch.tensor(r["labels"])
            mask[i, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}


@dataclass
class FlatCollator:
    """Concatenate every sequence of the batch (packed rows carry several) into one row with position ids."""

    def __call__(self, rows: list[dict]) -> dict:
        import torch

        ids: list[int] = []
        labels: list[int] = []
        pos: list[int] = []
        for r in rows:
            lengths = r.get("seq_lengths") or [len(r["input_ids"])]
            start = 0
            for n in lengths:
                ids += r["input_ids"][start : start + n]
                seq_labels = list(r["labels"][start : start + n])
                seq_labels[0] = IGNORE  # nothing predicts the first token of a sequence from the previous one
                labels += seq_labels
                pos += list(range(n))
                start += n
        return {"input_ids": torch.tensor([ids]), "labels": torch.tensor([labels]), "position_ids": torch.tensor([pos])}


def pack_rows(dataset: Any, packing_length: int) -> Any:
    """Best-fit-decreasing bins of at most `packing_length` tokens; each bin becomes one row with `seq_lengths`."""
    import datasets

    lengths = dataset["length"]
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    bins: list[list[int]] = []
    room: list[int] = []
    for i in order:
        n = min(lengths[i], packing_length)
        best = min((b for b in range(len(bins)) if room[b] >= n), key=lambda b: room[b], default=None)
        if best is None:
            bins.append([i])
            room.append(packing_length - n)
        else:
            bins[best].append(i)
            room[best] -= n
    ids, labs = dataset["input_ids"], dataset["labels"]
    packed = {"input_ids": [], "labels": [], "seq_lengths": [], "length": []}
    for b in bins:
        packed["input_ids"].append([t for i in b for t in ids[i][:packing_length]])
        packed["labels"].append([t for i in b for t in labs[i][:packing_length]])
        packed["seq_lengths"].append([min(lengths[i], packing_length) for i in b])
        packed["length"].append(sum(packed["seq_lengths"][-1]))
    return datasets.Dataset.from_dict(packed)
