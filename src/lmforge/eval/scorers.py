"""How each kind of evaluation set is graded: a table `SCORERS` (EvalTask.scorer names an entry) of functions
`(backend, samples, options, sampling) -> list[Review]`.

- `mcq`: multiple choice. By default the log-likelihood of each choice letter as the answer (robust for small
  models, no parsing); `"mode": "generate"` generates and extracts the letter, as EvalScope does;
  `"mode": "choice_text"` scores each choice's text after the bare question, as lm-eval does (acc, acc_norm).
- `qa`: a generated answer against the reference, BLEU-1..4 and ROUGE-1/2/L (infer/metrics.py, no data download).
- `keywords`: right when the answer names one of the expected words (identity questions).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lmforge.eval.table import LETTERS, Sample
from lmforge.infer.metrics import qa_scores
from lmforge.registry import Registry

if TYPE_CHECKING:
    from lmforge.eval.backends import Answer
    from lmforge.infer.engine import SamplingConfig


@dataclass
class Review:
    """One graded row: EvalScope's review fields (prediction, extracted_prediction, per-metric scores)."""

    sample: Sample
    prediction: str
    extracted: str
    scores: dict[str, float]
    answer: Answer | None = None  # None: scored by log-likelihood, nothing generated
    extra: dict[str, Any] = field(default_factory=dict)


Scorer = Callable[..., list[Review]]
SCORERS: Registry[Scorer] = Registry("scorer", "EvalTask.scorer")


def extract_letter(text: str, choices: tuple[str, ...]) -> str:
    """The answer letter in a generated text ('' when none is found): 'ANSWER: B', '答案：B', 'B) Mars' or 'B.' at
    the start, a lone letter, then the one choice whose text the answer quotes."""
    letters = LETTERS[: len(choices)]
    after = r"(?![A-Za-z])"
    for pattern in (
        rf"(?:answer|答案)\s*(?:is|是|为)?\s*[:：]?\s*\(?([{letters}]){after}",
        rf"^\s*\(?([{letters}])(?:[\).:：,，\s]|$)",
        rf"(?<![A-Za-z])([{letters}])[\).]",
    ):
        m = re.search(pattern, text, flags=re.IGNORECASE | re.MULTILINE)
        if m:
            return m.group(1).upper()
    quoted = [LETTERS[i] for i, c in enumerate(choices) if c.strip() and c.strip().lower() in text.lower()]
    return quoted[0] if len(quoted) == 1 else ""


@SCORERS.register("mcq")
def score_mcq(backend: Any, samples: list[Sample], opts: dict, cfg: SamplingConfig) -> list[Review]:
    convs = [s.messages for s in samples]
    if opts.get("mode", "loglikelihood") == "generate" or not backend.can_score:
        answers = backend.generate(convs, cfg)
        reviews = []
        for s, a in zip(samples, answers):
            got = extract_letter(a.text, s.choices)
            reviews.append(Review(s, a.text, got, {"acc": float(got == s.target)}, a))
        return reviews
    if opts.get("mode") == "choice_text":
        return _mcq_by_text(backend, samples, convs)
    scores = backend.score(convs, [list(LETTERS[: len(s.choices)]) for s in samples])
    reviews = []
    for s, lp in zip(samples, scores):
        best = LETTERS[max(range(len(lp)), key=lp.__getitem__)]
        logprobs = {LETTERS[i]: v for i, v in enumerate(lp)}
        reviews.append(Review(s, best, best, {"acc": float(best == s.target)}, extra={"choice_logprobs": logprobs}))
    return reviews


def _mcq_by_text(backend: Any, samples: list[Sample], convs: list[list[dict]]) -> list[Review]:
    """lm-eval's scoring: the log-likelihood of each choice's own text as the answer; `acc` takes the largest
    total, `acc_norm` the largest per character of the choice (so long choices are not penalised)."""
    scores = backend.score(convs, [list(s.choices) for s in samples])
    reviews = []
    for s, lp in zip(samples, scores):
        norm = [v / max(len(c), 1) for v, c in zip(lp, s.choices)]
        best = LETTERS[max(range(len(lp)), key=lp.__getitem__)]
        best_norm = LETTERS[max(range(len(norm)), key=norm.__getitem__)]
        acc = {"acc": float(best == s.target), "acc_norm": float(best_norm == s.target)}
        logprobs = {LETTERS[i]: v for i, v in enumerate(lp)}
        reviews.append(Review(s, best, best, acc, extra={"choice_logprobs": logprobs, "acc_norm_choice": best_norm}))
    return reviews


@SCORERS.register("qa")
def score_qa(backend: Any, samples: list[Sample], opts: dict, cfg: SamplingConfig) -> list[Review]:
    answers = backend.generate([s.messages for s in samples], cfg)
    return [Review(s, a.text, a.text, qa_scores(a.text, s.target), a) for s, a in zip(samples, answers)]


@SCORERS.register("keywords")
def score_keywords(backend: Any, samples: list[Sample], opts: dict, cfg: SamplingConfig) -> list[Review]:
    answers = backend.generate([s.messages for s in samples], cfg)
    reviews = []
    for s, a in zip(samples, answers):
        hits = [k for k in s.target.split("|") if k and k.lower() in a.text.lower()]
        reviews.append(Review(s, a.text, ", ".join(hits), {"acc": float(bool(hits))}, a))
    return reviews


def generates(scorer: str, opts: dict, can_score: bool) -> bool:
    """Whether a dataset's answers are generated (behaviour checks apply to those)."""
    return scorer != "mcq" or opts.get("mode") == "generate" or not can_score
