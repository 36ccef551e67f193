"""Scores for batch inference: exact-match accuracy and ROUGE-L (F1 over the longest common subsequence)."""

from __future__ import annotations

from lmforge.registry import Registry


def _units(text: str) -> list[str]:
    """Words, or characters for text with CJK characters (which has no spaces between words)."""
    if any("\u4e00" <= ch <= "\u9fff" for ch in text):
        return [ch for ch in text if not ch.isspace()]
    return text.lower().split()


def _lcs(a: list[str], b: list[str]) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(pairs: list[tuple[str, str]]) -> float:
    scores = []
    for pred, ref in pairs:
        p, r = _units(pred), _units(ref)
        lcs = _lcs(p, r)
        if not p or not r or not lcs:
            scores.append(0.0)
            continue
        prec, rec = lcs / len(p), lcs / len(r)
        scores.append(2 * prec * rec / (prec + rec))
    return sum(scores) / len(scores) if scores else 0.0


def accuracy(pairs: list[tuple[str, str]]) -> float:
    return sum(p.strip() == r.strip() for p, r in pairs) / len(pairs) if pairs else 0.0


METRICS: Registry = Registry("metric", "--metric")  # name -> fn(pairs of (answer, label)) -> float
METRICS.register("acc", accuracy)
METRICS.register("rouge", rouge_l)
