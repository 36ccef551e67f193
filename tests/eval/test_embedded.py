"""HumanEval on the embedded SmolLM2-135M-Instruct, as a user runs it (`lmforge eval --eval_dataset humaneval
--eval_limit 5`): the run completes and reports pass@1 over really executed programs (a 135M model may pass none).
On request only (LMFORGE_LEARNING_TESTS=1): the default suite runs HumanEval on the tiny model
(test_eval.py::test_adapter_vs_base_behaviour_and_fail_on)."""

from __future__ import annotations

import json
import os

import pytest

from lmforge.cli import main


@pytest.mark.slow
@pytest.mark.skipif(
    not os.environ.get("LMFORGE_LEARNING_TESTS"),
    reason="set LMFORGE_LEARNING_TESTS=1 (the embedded 135M model: minutes of CPU; the tiny-model run is in test_eval)",
)
def test_humaneval_on_the_embedded_model(tmp_path, capsys):
    out = tmp_path / "out"
    flags = ["--eval_dataset", "humaneval", "--eval_limit", "5", "--max_new_tokens", "96", "--eval_num_proc", "5"]
    flags += ["--torch_dtype", "float32"]
    assert main(["eval", *flags, "--eval_output_dir", str(out)]) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    (run,) = (out / "native").iterdir()
    (report_file,) = (run / "reports").glob("*/humaneval.json")
    report = json.loads(report_file.read_text())
    assert report["metrics"][0]["name"] == "pass@1" and report["metrics"][0]["num"] == 5
    assert 0.0 <= report["score"] <= 1.0
    assert report["behaviour"]["answers"] == 5 and report["behaviour"]["max_tokens"] <= 96
    (preds,) = (run / "predictions").glob("*/humaneval_*.jsonl")
    rows = [json.loads(x) for x in preds.read_text().splitlines()]
    assert [r["index"] for r in rows] == [f"HumanEval/{i}" for i in range(5)]
    # every answer was run against its tests: passed, or the reason it failed (an assertion, a syntax error...)
    assert all(r["result"] == "passed" or r["result"].startswith(("failed", "timed out")) for r in rows), rows
    assert "humaneval" in printed and "pass@1" in printed
    print(f"SmolLM2 HumanEval pass@1 on 5: {report['score']}; results: {[r['result'][:40] for r in rows]}")
