"""dataset_info.json in both schemas, subsets, relative paths, plug-ins."""

from __future__ import annotations

import json

from lmforge.args import DataArgs
from lmforge.data.pipeline import load_data
from tests.data.test_formats import rows_of, write


def test_ms_swift_dataset_info(tmp_path):
    sub = tmp_path / "sub"
    sub.mkdir()
    write(sub / "q.jsonl", [{"prompt_x": "q", "resp_x": "r"}])
    info = tmp_path / "info.json"
    info.write_text(
        json.dumps(
            [
                {
                    "dataset_name": "my-ms",
                    "dataset_path": "sub/q.jsonl",
                    "columns": {"prompt_x": "query", "resp_x": "response"},
                }
            ]
        )
    )
    b = load_data(DataArgs(dataset=["my-ms"], custom_dataset_info=[str(info)]))
    r = json.loads(b.train[0]["row"])
    assert [m["content"] for m in r["messages"]] == ["q", "r"]


def test_ms_swift_subsets_with_columns(tmp_path):
    write(tmp_path / "d.jsonl", [{"a": "q", "b": "r", "c": "other"}])
    info = tmp_path / "info.json"
    info.write_text(
        json.dumps(
            [
                {
                    "dataset_name": "subbed",
                    "dataset_path": "d.jsonl",
                    "subsets": [
                        {"name": "one", "columns": {"a": "query", "b": "response"}},
                        {"name": "two", "columns": {"a": "query", "c": "response"}},
                    ],
                }
            ]
        )
    )
    args = DataArgs(dataset=["subbed:all"], custom_dataset_info=[str(info)], dataset_shuffle=False)
    b = load_data(args)
    assert [json.loads(r)["messages"][1]["content"] for r in b.train["row"]] == ["r", "other"]
    b2 = load_data(DataArgs(dataset=["subbed:two"], custom_dataset_info=[str(info)]))
    assert json.loads(b2.train[0]["row"])["messages"][1]["content"] == "other"


def test_llamafactory_dataset_info(tmp_path):
    write(tmp_path / "alp.json", [{"instruction": "i", "input": "x", "output": "o"}])
    write(
        tmp_path / "sg.json",
        [{"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}], "system": "S"}],
    )
    write(
        tmp_path / "oai.json", [{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}]
    )
    info = tmp_path / "dataset_info.json"
    info.write_text(
        json.dumps(
            {
                "lf_alpaca": {
                    "file_name": "alp.json",
                    "columns": {"prompt": "instruction", "query": "input", "response": "output"},
                },
                "lf_sharegpt": {
                    "file_name": "sg.json",
                    "formatting": "sharegpt",
                    "columns": {"messages": "conversations", "system": "system"},
                },
                "lf_openai": {
                    "file_name": "oai.json",
                    "formatting": "sharegpt",
                    "columns": {"messages": "messages"},
                    "tags": {
                        "role_tag": "role",
                        "content_tag": "content",
                        "user_tag": "user",
                        "assistant_tag": "assistant",
                    },
                },
            }
        )
    )
    for name, want in (("lf_alpaca", ["i\nx", "o"]), ("lf_sharegpt", ["S", "q", "a"]), ("lf_openai", ["q", "a"])):
        b = load_data(DataArgs(dataset=[name], custom_dataset_info=[str(info)]))
        assert [m["content"] for m in json.loads(b.train[0]["row"])["messages"]] == want, name


def test_plugin_registers_dataset_with_preprocess(tmp_path):
    write(tmp_path / "raw.jsonl", [{"ask": "hello", "reply": "world"}, {"ask": "skip me", "reply": "x"}])
    plugin = tmp_path / "plug.py"
    plugin.write_text(f"""
from lmforge.data.registry import DatasetMeta, register_dataset

def pre(row, args):
    if row["ask"].startswith("skip"):
        return None
    return {{"query": row["ask"].upper(), "response": row["reply"]}}

register_dataset(DatasetMeta(name="plugged", dataset_path={str(tmp_path / "raw.jsonl")!r}, preprocess=pre),
                 exist_ok=True)
""")
    from lmforge.plugins import load_plugins

    load_plugins([str(plugin)])
    b = load_data(DataArgs(dataset=["plugged"]))
    assert len(b.train) == 1
    assert json.loads(b.train[0]["row"])["messages"][0]["content"] == "HELLO"
    assert rows_of(b.parts)[0]["messages"][1]["content"] == "world"
