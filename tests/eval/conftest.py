"""Shared by the eval tests: a small MCQ/QA data folder, and one `lmforge deploy` of the tiny llama for the tests
that talk to a server (lm-eval, --eval_url, EvalScope's service mode)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.serve.conftest import deployed


@pytest.fixture(scope="session")
def tiny_llama_port(tiny_llama):
    """The port of `lmforge deploy --model tiny_llama` (float32, served as `tiny`), up for the whole session."""
    with deployed(tiny_llama) as port:
        yield port


MCQ_VAL = "id,question,A,B,C,answer\nq1,Which is a colour?,red,dog,run,A\nq2,2 + 2 = ?,3,4,5,B\nq3,Pick C,x,y,z,C\n"
MCQ_DEV = "id,question,A,B,C,answer\nd1,Dev question?,yes,no,maybe,A\n"
QA = [{"query": "Say hello", "response": "hello there"}, {"question": "Name a fruit", "answer": "an apple"}]


@pytest.fixture(scope="session")
def evaldata(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("evaldata")
    (d / "mcq").mkdir()
    (d / "mcq" / "example_val.csv").write_text(MCQ_VAL)
    (d / "mcq" / "example_dev.csv").write_text(MCQ_DEV)
    (d / "qa").mkdir()
    (d / "qa" / "example.jsonl").write_text("".join(json.dumps(r) + "\n" for r in QA))
    return d
