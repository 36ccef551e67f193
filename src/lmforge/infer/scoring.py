"""How `PtEngine.score` lays out its forwards: which rows share one, and which logits each forward must keep."""

from __future__ import annotations


def score_units(prompts: list[list[int]], continuations: list[list[int]]) -> list[tuple[list[int], int, list[int]]]:
    """The forwards `score` runs: (sequence, position of the logits that predict the continuation's first token,
    the rows read there). Rows whose continuation is one token share one forward over their prompt alone (multiple
    choice by answer letter: one forward per question, not one per choice); the others run prompt + continuation."""
    units: list[tuple[list[int], int, list[int]]] = []
    shared: dict[tuple[int, ...], list[int]] = {}
    for row, (p, c) in enumerate(zip(prompts, continuations)):
        if len(c) == 1:
            key = tuple(p)
            if key not in shared:
                shared[key] = []
                units.append((list(p), len(p) - 1, shared[key]))
            shared[key].append(row)
        elif c:
            units.append((list(p) + list(c), len(p) - 1, [row]))
    return units


def read_positions(units: list[tuple[list[int], int, list[int]]], continuations: list[list[int]]) -> dict[int, int]:
    """The positions whose logits a batch of `units` reads (a continuation token's prediction, in any row), each
    mapped to its index among them in order: `logits_to_keep` takes the same positions for every row."""
    needed = {at + j for _, at, rows in units for row in rows for j in range(len(continuations[row]))}
    return {pos: k for k, pos in enumerate(sorted(needed))}
