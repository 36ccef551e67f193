"""Bad input: one line naming file, row and field with a hint, and a non-zero exit code; never a traceback."""

from __future__ import annotations

import json

import pytest

from lmforge.cli import main

U = {"role": "user", "content": "q"}
A = {"role": "assistant", "content": "a"}

# (file name, file content, expected fragment of the one-line error)
CASES = [
    ("bad.jsonl", '{"query": "q", "response": "r"}\n{"query": "q", response: r}\n', "bad.jsonl:2: invalid JSON"),
    ("bad2.jsonl", '{"query": "q", "response": "r"}\n\n{"query": \n', "bad2.jsonl:3: invalid JSON"),
    ("list.json", '[{"query": "q", "response": "r"},, ]', "list.json:1: invalid JSON"),
    (
        "role.jsonl",
        json.dumps({"messages": [U, {"role": "boss", "content": "a"}]}),
        "role.jsonl:1: messages[1].role: unknown role 'boss'",
    ),
    (
        "null.jsonl",
        json.dumps({"messages": [U, {"role": "assistant", "content": None}]}),
        "null.jsonl:1: messages[1].content: null content",
    ),
    ("empty.jsonl", json.dumps({"messages": []}), "empty.jsonl:1: messages: empty conversation"),
    ("notlist.jsonl", json.dumps({"messages": "hello"}), "notlist.jsonl:1: messages: not a list"),
    ("turn.jsonl", json.dumps({"messages": [U, "a"]}), "turn.jsonl:1: messages[1]: expected an object, got str"),
    (
        "ends.jsonl",
        json.dumps({"messages": [A, U]}),
        "ends.jsonl:1: messages[1]: conversation does not end with an assistant turn",
    ),
    ("nofmt.jsonl", json.dumps({"foo": 1, "bar": 2}), "nofmt.jsonl:1: row: no recognisable format"),
    ("qnull.jsonl", json.dumps({"query": "q", "response": None}), "qnull.jsonl:1: response: missing or null"),
    ("qtype.jsonl", json.dumps({"query": "q", "response": 5}), "qtype.jsonl:1: response: expected text, got int"),
    (
        "hist.jsonl",
        json.dumps({"query": "q", "response": "r", "history": [["only one"]]}),
        "hist.jsonl:1: history[0]: expected a [query, response] pair",
    ),
    (
        "histstr.jsonl",
        json.dumps({"query": "q", "response": "r", "history": "not a list ["}),
        "histstr.jsonl:1: history: not a list of [query, response] pairs",
    ),
    (
        "alp.jsonl",
        json.dumps({"instruction": "", "input": "", "output": "o"}),
        "alp.jsonl:1: instruction: empty instruction and input",
    ),
    ("tools.jsonl", json.dumps({"messages": [U, A], "tools": "{not json"}), "tools.jsonl:1: tools: not valid JSON"),
    (
        "call.jsonl",
        json.dumps({"conversations": [{"from": "human", "value": "q"}, {"from": "function_call", "value": "call f"}]}),
        "call.jsonl:1: content: a tool_call turn must hold JSON",
    ),
    (
        "pref.jsonl",
        json.dumps({"prompt": "p", "chosen": "c", "rejected": None}),
        "pref.jsonl:1: rejected: missing or null",
    ),
    (
        "num.jsonl",
        json.dumps({"conversations": [{"from": "human", "value": 1}, {"from": "gpt", "value": "a"}]}),
        "num.jsonl:1: conversations[0].content: expected text, got int",
    ),
    (
        "rowtwo.jsonl",
        json.dumps({"query": "q", "response": "r"}) + "\n" + json.dumps({"query": "q", "response": 3}),
        "rowtwo.jsonl:2: response: expected text, got int",
    ),
    ("empty_file.jsonl", "", "empty_file.jsonl: empty file"),
    ("wrong.xml", "<a/>", "wrong.xml: unsupported file type '.xml'"),
]


def run(argv, capsys):
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    return code, err


@pytest.mark.parametrize("name,content,needle", CASES, ids=[c[0] for c in CASES])
def test_malformed_file(tmp_path, capsys, tiny_llama, name, content, needle):
    f = tmp_path / name
    f.write_text(content)
    code, err = run(["check", "--model", str(tiny_llama), "--dataset", str(f), "--strict", "true"], capsys)
    assert code != 0
    assert len(err) == 1, err
    assert needle in err[0], err[0]
    assert "Traceback" not in err[0]


@pytest.mark.parametrize(
    "spec,needle",
    [
        ("{dir}/d.jsonl#abc", "'#abc' is not a positive number of rows"),
        ("{dir}/missing.jsonl", "no such file, folder or registered dataset"),
        ("xx::foo/bar", "unknown hub prefix 'xx::'"),
        ("self-cognition:nosuch", "unknown subset 'nosuch'"),
    ],
)
def test_malformed_specs(tmp_path, capsys, tiny_llama, spec, needle):
    (tmp_path / "d.jsonl").write_text('{"query": "q", "response": "r"}\n')
    code, err = run(["check", "--model", str(tiny_llama), "--dataset", spec.format(dir=tmp_path)], capsys)
    assert code != 0 and len(err) == 1 and needle in err[0], err


def test_non_strict_drops_reports_and_exits_1(tmp_path, capsys, tiny_llama):
    f = tmp_path / "mixed.jsonl"
    f.write_text(
        "\n".join(
            json.dumps(r)
            for r in [{"query": "q", "response": "r"}, {"query": "q", "response": 1}, {"query": "q2", "response": "r2"}]
        )
    )
    code = main(["check", "--model", str(tiny_llama), "--dataset", str(f)])
    out = capsys.readouterr().out
    assert code == 1
    assert "rows 3, kept 2, dropped 1" in out and "mixed.jsonl:2: response: expected text, got int" in out


def test_training_refuses_mostly_bad_data(tmp_path):
    from lmforge.data.loader import Loaded
    from lmforge.data.pipeline import refuse_if_mostly_dropped
    from lmforge.errors import DataError

    with pytest.raises(DataError, match="3 of 4 rows unusable"):
        refuse_if_mostly_dropped([Loaded("x", "alpaca", [], 4, 3, ["x:1: bad"])])


def test_hub_dataset_offline_is_one_line(tmp_path, capsys, tiny_llama, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    code, err = run(["check", "--model", str(tiny_llama), "--dataset", "hf::nobody/nothing-here"], capsys)
    assert code != 0 and len(err) == 1 and "could not load dataset 'nobody/nothing-here' from Hugging Face" in err[0]
    code, err = run(["check", "--model", str(tiny_llama), "--dataset", "AI-ModelScope/alpaca-gpt4-data-en"], capsys)
    assert code != 0 and len(err) == 1 and "ModelScope" in err[0]
