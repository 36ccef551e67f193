"""`lmforge check` end to end through the CLI."""

from __future__ import annotations

import json

from lmforge.templates.encode import IGNORE
from tests.conftest import run_cli


def test_check_reports_and_dumps(tmp_path, tiny_qwen3):
    data = tmp_path / "train.jsonl"
    rows = [
        {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"answer {i}"}]}
        for i in range(5)
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    dump = tmp_path / "enc.jsonl"
    r = run_cli("check", "--model", str(tiny_qwen3), "--dataset", str(data), "--dump_encoded", str(dump))
    assert r.returncode == 0, r.stderr
    assert "format messages, rows 5, kept 5, dropped 0" in r.stdout
    assert "tokens per row: min" in r.stdout and "template qwen3" in r.stdout
    assert "[[answer" in r.stdout and "check: all rows usable" in r.stdout
    lines = [json.loads(x) for x in dump.read_text().splitlines()]
    assert len(lines) == 5
    for row in lines:
        trained = [t for t, lab in zip(row["input_ids"], row["labels"]) if lab != IGNORE]
        assert len(row["input_ids"]) == len(row["labels"]) and 0 < len(trained) < len(row["input_ids"])


def test_dump_keeps_the_data_order_and_names_each_rows_source(tmp_path, tiny_qwen3, qwen_tok):
    """Two files, blank lines and a bad row in the first: the dump lists the usable rows file by file in line
    order (not the training shuffle), each with its file:line, and its tokens are that line's conversation."""
    rows = [{"query": f"question {i}", "response": f"answer {i}"} for i in range(12)]
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a_lines = [json.dumps(r) for r in rows[:8]]
    a_lines.insert(3, "")  # blank line: later rows sit one line further down
    a_lines.insert(6, json.dumps({"query": "no answer"}))  # unusable row, dropped from the dump
    a.write_text("\n".join(a_lines) + "\n")
    b.write_text("".join(json.dumps(r) + "\n" for r in rows[8:]))
    dump = tmp_path / "enc.jsonl"
    r = run_cli("check", "--model", str(tiny_qwen3), "--dataset", str(b), str(a), "--dump_encoded", str(dump))
    assert "dropped 1" in r.stdout, r.stdout + r.stderr
    got = [json.loads(x) for x in dump.read_text().splitlines()]
    expected = [f"{b}:{n}" for n in range(1, 5)]
    expected += [f"{a}:{n + 1}" for n, text in enumerate(a_lines) if text and "response" in text]
    assert [g["source"] for g in got] == expected
    texts = [qwen_tok.decode(g["input_ids"]) for g in got]
    answers = [json.loads(line)["response"] for line in b.read_text().splitlines()]
    answers += [json.loads(t)["response"] for t in a_lines if t and "response" in t]
    assert all(ans in text for ans, text in zip(answers, texts)) and len(texts) == len(answers)


def test_check_reports_truncation_and_drops(tmp_path, tiny_llama):
    data = tmp_path / "t.jsonl"
    data.write_text(
        json.dumps({"query": "word " * 100, "response": "ok"}) + "\n" + json.dumps({"query": "q", "response": "r"})
    )
    r = run_cli("check", "--model", str(tiny_llama), "--dataset", str(data), "--max_length", "60")
    assert r.returncode == 1
    assert "t.jsonl:1:" in r.stdout and "> --max_length 60" in r.stdout
    r2 = run_cli(
        "check",
        "--model",
        str(tiny_llama),
        "--dataset",
        str(data),
        "--max_length",
        "60",
        "--truncation_strategy",
        "left",
    )
    assert r2.returncode == 0 and "1 truncated" in r2.stdout


def test_check_refuses_a_target_module_the_model_lacks(tmp_path, tiny_llama):
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"query": "q", "response": "r"}) + "\n")
    r = run_cli("check", "--model", str(tiny_llama), "--dataset", str(data), "--target_modules", "q_proj", "v_prj")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith("lmforge check: error: --target_modules v_prj: this model has no module of that name")
