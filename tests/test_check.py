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
