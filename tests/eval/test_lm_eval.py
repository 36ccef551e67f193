"""lm-eval's `local-completions` model runs a log-likelihood multiple-choice task against `lmforge deploy`, and gets
the numbers lmforge's own `Engine.score` gives on the same tokens."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

ROWS = [
    ("The capital of France is", ["Paris", "Berlin", "Rome"], 0),
    ("Two plus two equals", ["three", "four", "five"], 1),
    ("The sky on a clear day is", ["green", "red", "blue"], 2),
    ("Water freezes at zero degrees", ["Celsius", "Kelvin"], 0),
    ("A baby cat is called a", ["puppy", "kitten"], 1),
    ("The opposite of hot is", ["cold", "warm", "loud"], 0),
    ("Bees make", ["milk", "honey", "silk"], 1),
    ("One week has seven", ["hours", "days"], 1),
]


@pytest.mark.skipif(importlib.util.find_spec("lm_eval") is None, reason="lm-eval is not installed (dev extra)")
def test_lm_eval_local_completions_against_deploy(tiny_llama, tiny_llama_port, tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"question": q, "choices": c, "answer": a}) + "\n" for q, c, a in ROWS))
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "lmf_mcq.yaml").write_text(
        "task: lmf_mcq\ndataset_path: json\n"
        f"dataset_kwargs: {{data_files: {{test: {json.dumps(str(rows))}}}}}\n"
        "test_split: test\noutput_type: multiple_choice\n"
        'doc_to_text: "{{question}}"\ndoc_to_choice: "{{choices}}"\ndoc_to_target: "{{answer}}"\n'
        "metric_list: [{metric: acc, aggregation: mean, higher_is_better: true}]\n"
    )
    model_args = (
        f"model=tiny,base_url=http://127.0.0.1:{tiny_llama_port}/v1/completions,tokenizer_backend=huggingface,"
        f"tokenizer={tiny_llama},num_concurrent=1,max_retries=1"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    r = subprocess.run(
        [sys.executable, "-m", "lm_eval", "--model", "local-completions", "--model_args", model_args]
        + ["--include_path", str(tasks), "--tasks", "lmf_mcq", "--output_path", str(tmp_path / "out")]
        + ["--log_samples"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    (results,) = (tmp_path / "out" / "tiny").glob("results_*.json")
    acc = json.loads(results.read_text())["results"]["lmf_mcq"]["acc,none"]
    (samples,) = (tmp_path / "out" / "tiny").glob("samples_lmf_mcq_*.jsonl")
    got = {json.loads(x)["doc_id"]: json.loads(x) for x in samples.read_text().splitlines()}

    # lmforge's own scoring of the same rows, split into tokens the way lm-eval splits them (whole minus context)
    from lmforge.infer.engines import load_engine

    engine = load_engine(tiny_llama, dtype="float32", max_batch_size=8)
    tok = engine.frontend.tokenizer
    right = 0
    for i, (q, choices, answer) in enumerate(ROWS):
        ctx = tok(q, add_special_tokens=False)["input_ids"]
        conts = [tok(f"{q} {c}", add_special_tokens=False)["input_ids"][len(ctx) :] for c in choices]
        mine = [s.total for s in engine.score([ctx] * len(conts), conts)]
        theirs = [float(resp[0][0]) for resp in got[i]["resps"]]
        assert theirs == pytest.approx(mine, abs=1e-4), (q, theirs, mine)
        right += max(range(len(mine)), key=mine.__getitem__) == answer
    assert acc == pytest.approx(right / len(ROWS))
