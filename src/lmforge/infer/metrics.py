"""Scores for batch inference: exact-match accuracy, ROUGE-L (F1 over the longest common subsequence) and tool
calls (parse rate, function-name accuracy, argument equality)."""

from __future__ import annotations

import json

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


def toolcall(pairs: list[tuple[str, str]]) -> dict[str, float]:
    """Labels are the reference calls as JSON (OpenAI `tool_calls`); answers are parsed with every registered
    tool-call markup (the first that reads calls wins). Names and arguments are compared as ordered lists."""
    from lmforge.agent.parsers import TOOL_PARSERS, call_arguments

    parsed = names = args = 0
    for answer, label in pairs:
        ref = json.loads(label) if label and label.lstrip().startswith("[") else []
        calls = next((c for c in (p.parse(answer)[1] for p in TOOL_PARSERS.values()) if c), [])
        parsed += bool(calls)
        want = [((c.get("function") or c)["name"], call_arguments(c)) for c in ref]
        got = [(c.name, json.loads(c.arguments)) for c in calls]
        names += bool(want) and [n for n, _ in got] == [n for n, _ in want]
        args += bool(want) and got == want
    n = max(len(pairs), 1)
    return {"parse_rate": parsed / n, "name_acc": names / n, "args_equal": args / n}


METRICS: Registry = Registry("metric", "--metric")  # name -> fn(pairs of (answer, label)) -> float or {name: float}
METRICS.register("acc", accuracy)
METRICS.register("rouge", rouge_l)
METRICS.register("toolcall", toolcall)
