"""Scores for batch inference and `lmforge eval`: exact-match accuracy, ROUGE-L (F1 over the longest common
subsequence), per-answer BLEU-1..4 / ROUGE-1/2/L, tool calls (parse rate, function-name accuracy, argument
equality); for task models (infer/task_batch.py) macro F1 over classes, mean squared error, and retrieval metrics
over rankings (pairs of (document ids best first, the positive's id))."""

from __future__ import annotations

import json
import math
import re
from collections import Counter

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


# -- BLEU-1..4 and ROUGE-1/2/L per answer, without nltk data (EvalScope's BLEU is silently 0 offline) -------------

_WORD = re.compile(r"[\u4e00-\u9fff\u3040-\u30ff]|[^\W_]+", re.UNICODE)


def tokens(text: str) -> list[str]:
    """Lowercased words; CJK characters one by one; punctuation dropped."""
    return _WORD.findall(text.lower())


def _ngrams(units: list[str], n: int) -> Counter:
    return Counter(tuple(units[i : i + n]) for i in range(len(units) - n + 1))


def bleu_n(pred: list[str], ref: list[str], n: int) -> float:
    """The modified n-gram precision for order n alone, times the brevity penalty (EvalScope's bleu-n: nltk's
    sentence_bleu with weight 1 on order n). No n-gram match scores a smoothed 0.1/count (nltk's method1), none to
    compare 0."""
    hyp, refs = _ngrams(pred, n), _ngrams(ref, n)
    total = sum(hyp.values())
    if not total:
        return 0.0
    match = sum(min(c, refs[g]) for g, c in hyp.items())
    precision = (match or 0.1) / total
    brevity = 1.0 if len(pred) >= len(ref) else math.exp(1 - len(ref) / len(pred))
    return brevity * precision


def _prf(match: int, n_pred: int, n_ref: int) -> tuple[float, float, float]:
    p = match / n_pred if n_pred else 0.0
    r = match / n_ref if n_ref else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def qa_scores(pred: str, ref: str) -> dict[str, float]:
    """EvalScope's general_qa metrics for one answer: bleu-1..4 and Rouge-1/2/L -R/-P/-F."""
    p, r = tokens(pred), tokens(ref)
    out = {f"bleu-{n}": bleu_n(p, r, n) for n in (1, 2, 3, 4)}
    for n in (1, 2):
        hp, hr = _ngrams(p, n), _ngrams(r, n)
        prf = _prf(sum((hp & hr).values()), sum(hp.values()), sum(hr.values()))
        out.update(zip((f"Rouge-{n}-P", f"Rouge-{n}-R", f"Rouge-{n}-F"), prf))
    out.update(zip(("Rouge-L-P", "Rouge-L-R", "Rouge-L-F"), _prf(_lcs(p, r), len(p), len(r))))
    return out


def bleu(pairs: list[tuple[str, str]]) -> float:
    return sum(qa_scores(p, r)["bleu-4"] for p, r in pairs) / len(pairs) if pairs else 0.0


METRICS.register("bleu", bleu)


def macro_f1(pairs: list[tuple[str, str]]) -> float:
    """F1 per class (every class seen in predictions or labels), averaged."""
    classes = {str(x).strip() for pair in pairs for x in pair}
    scores = []
    for c in classes:
        tp = sum(str(p).strip() == c and str(r).strip() == c for p, r in pairs)
        fp = sum(str(p).strip() == c and str(r).strip() != c for p, r in pairs)
        fn = sum(str(p).strip() != c and str(r).strip() == c for p, r in pairs)
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return sum(scores) / len(scores) if scores else 0.0


def _floats(x: object) -> list[float]:
    return [float(v) for v in x] if isinstance(x, (list, tuple)) else [float(x)]  # type: ignore[arg-type]


def mse(pairs: list[tuple[object, object]]) -> float:
    errs = [(p - r) ** 2 for a, b in pairs for p, r in zip(_floats(a), _floats(b))]
    return sum(errs) / len(errs) if errs else 0.0


def recall_at(k: int):  # noqa: ANN201
    def recall(pairs: list[tuple[list[int], int]]) -> float:
        return sum(gold in list(ranked)[:k] for ranked, gold in pairs) / len(pairs) if pairs else 0.0

    return recall


def mrr(pairs: list[tuple[list[int], int]]) -> float:
    return sum(1.0 / (list(r).index(g) + 1) for r, g in pairs) / len(pairs) if pairs else 0.0


def ndcg(pairs: list[tuple[list[int], int]], k: int = 10) -> float:
    """nDCG@10 with one relevant document per query (its ideal DCG is 1)."""
    import math

    gains = [1.0 / math.log2(list(r).index(g) + 2) if list(r).index(g) < k else 0.0 for r, g in pairs]
    return sum(gains) / len(gains) if gains else 0.0


METRICS.register("f1", macro_f1)
METRICS.register("mse", mse)
for _k in (1, 3, 5, 10):
    METRICS.register(f"recall@{_k}", recall_at(_k))
METRICS.register("mrr", mrr)
METRICS.register("ndcg", ndcg)
# which task's predictions a metric scores ("any": chat answers and class labels alike)
TASK_METRICS = {"acc": "seq_cls", "f1": "seq_cls", "mse": "seq_cls", "mrr": "embedding", "ndcg": "embedding"}
TASK_METRICS.update({f"recall@{k}": "embedding" for k in (1, 3, 5, 10)})
METRICS.register("toolcall", toolcall)
