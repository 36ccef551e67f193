"""The EvalScope delegate (`lmforge[eval]`), driven as a user runs it: EvalScope's general_mcq/general_qa through
lmforge's engine in-process and through `lmforge deploy` (--eval_url), EvalScope's layout, its offline traps handled.

Skipped where EvalScope is not installed (it downgrades `datasets`, so it lives in its own venv):
  PYTHONPATH=src /work/venvs/evalscope/bin/python -m pytest -q -p no:xdist tests/eval/test_evalscope.py
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from lmforge.cli import main

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("evalscope") is None,
    reason="EvalScope is not installed (pip install 'lmforge[eval]' in its own venv; see README, Evaluation)",
)


def _flags(data: Path, out: Path) -> list[str]:
    opts = {"general_mcq": {"local_path": str(data / "mcq")}, "general_qa": {"local_path": str(data / "qa")}}
    return [
        *("--eval_backend", "EvalScope", "--eval_dataset", "general_mcq", "general_qa"),
        *("--eval_dataset_args", json.dumps(opts), "--max_new_tokens", "6", "--eval_output_dir", str(out)),
    ]


def _rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def test_evalscope_in_process_and_over_http_give_the_same_answers(tiny_llama, tiny_llama_port, evaldata, tmp_path):
    local = tmp_path / "local"
    assert main(["eval", "--model", str(tiny_llama), "--torch_dtype", "float32", *_flags(evaldata, local)]) == 0
    (run,) = (local / "native").iterdir()
    name = tiny_llama.name
    for ds in ("general_mcq", "general_qa"):  # EvalScope's own layout, written by EvalScope
        report = json.loads((run / "reports" / name / f"{ds}.json").read_text())
        assert report["dataset_name"] == ds and report["metrics"][0]["num"] == (3 if ds == "general_mcq" else 2)
        behaviour = report["behaviour"]  # lmforge's checks of the answers it served
        assert behaviour["answers"] == report["metrics"][0]["num"] and behaviour["max_tokens"] <= 6
        assert (run / "predictions" / name / f"{ds}_example.jsonl").is_file()
        assert (run / "reviews" / name / f"{ds}_example.jsonl").is_file()
    mcq_preds = (run / "predictions" / name / "general_mcq_example.jsonl").read_text()
    assert "Which is a colour?" in mcq_preds and "答案" not in mcq_preds  # English data: English prompt
    qa_preds = (run / "predictions" / name / "general_qa_example.jsonl").read_text()
    assert "请回答问题" not in qa_preds and "Say hello" in qa_preds
    line = json.loads((local / "eval_result.jsonl").read_text().splitlines()[-1])
    assert set(line["result"][name]) == {"general_mcq", "general_qa"}

    # the same rows through lmforge's own runner: greedy answers equal EvalScope's (template-exact engine)
    mine = tmp_path / "mine"
    qa_opts = json.dumps({"general_qa": {"local_path": str(evaldata / "qa")}})
    qa = ["--eval_dataset", "general_qa", "--eval_dataset_args", qa_opts]
    flags = ["--torch_dtype", "float32", "--max_new_tokens", "6", "--eval_output_dir", str(mine)]
    assert main(["eval", "--model", str(tiny_llama), *qa, *flags]) == 0
    (own,) = (mine / "native").iterdir()
    own_answers = [r["prediction"] for r in _rows(own / "predictions" / name / "general_qa_example.jsonl")]
    es_answers = [
        r["sample_score"]["score"]["prediction"] for r in _rows(run / "reviews" / name / "general_qa_example.jsonl")
    ]
    assert own_answers == es_answers and any(own_answers)

    # service mode: EvalScope's benchmarks against `lmforge deploy`
    remote = tmp_path / "remote"
    url = f"http://127.0.0.1:{tiny_llama_port}/v1"
    assert main(["eval", "--eval_url", url, *_flags(evaldata, remote), "--eval_num_proc", "2"]) == 0
    (rrun,) = (remote / "native").iterdir()
    http_reviews = _rows(rrun / "reviews" / "tiny" / "general_qa_example.jsonl")
    http_answers = [r["sample_score"]["score"]["prediction"] for r in http_reviews]
    assert http_answers == es_answers


def test_bleu_is_computed_without_nltk_data():
    """EvalScope's BLEU needs nltk's punkt_tab (a download): without it every row scored 0 silently."""
    import nltk
    from evalscope.metrics.utils.functions import bleu_ngram_one_sample

    from lmforge.thirdparty import nltk_without_punkt

    try:
        nltk.data.find("tokenizers/punkt_tab/english/")
        pytest.skip("nltk's punkt_tab data is installed here: the trap does not apply")
    except LookupError:
        pass
    original = getattr(nltk.word_tokenize, "lmforge_original", nltk.word_tokenize)  # an earlier run may have set it
    with pytest.raises(LookupError):
        original("hello there, my friend")
    assert nltk_without_punkt()
    scores = bleu_ngram_one_sample("hello there, my friend", "hello there, my friend")
    assert scores["bleu-1"] == pytest.approx(1.0) and scores["bleu-4"] == pytest.approx(1.0)
    assert bleu_ngram_one_sample("a cat", "hello there, my friend")["bleu-1"] < 0.5


def test_evalscope_names_are_checked_before_any_model_loads(tmp_path, capsys):
    code = main(["eval", "--model", str(tmp_path / "none"), "--eval_dataset", "gsm8"])
    err = capsys.readouterr().err
    assert code != 0 and "did you mean gsm8k" in err and len(err.strip().splitlines()) == 1, err
    flags = ["--eval_backend", "EvalScope", "--eval_dataset", "lmforge_mcq"]
    code = main(["eval", "--model", str(tmp_path / "none"), *flags])
    err = capsys.readouterr().err
    assert code != 0 and "EvalScope has no benchmark 'lmforge_mcq'" in err, err
