"""Every dataset form, detected per dataset and converted to the standard row."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lmforge.args import DataArgs
from lmforge.data.loader import load_specs
from lmforge.data.pipeline import load_data


def write(path: Path, rows: list) -> Path:
    if path.suffix == ".json":
        path.write_text(json.dumps(rows, ensure_ascii=False))
    else:
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


def rows_of(loaded) -> list[dict]:
    return [json.loads(r) for p in loaded for r in p.rows["row"]]


def load(*specs: str, **kw) -> list:
    return load_specs(list(specs), DataArgs(**kw))


def msgs(row: dict) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in row["messages"]]


def test_alpaca(tmp_path):
    f = write(
        tmp_path / "a.jsonl",
        [
            {"instruction": "Add", "input": "1 2", "output": "3", "system": "S"},
            {"instruction": "Hi", "input": "", "output": "Hello"},
        ],
    )
    (p,) = load(str(f))
    assert p.format == "alpaca"
    r = rows_of([p])
    assert msgs(r[0]) == [("system", "S"), ("user", "Add\n1 2"), ("assistant", "3")]
    assert msgs(r[1]) == [("user", "Hi"), ("assistant", "Hello")]


def test_sharegpt_from_value_and_pairs(tmp_path):
    f = write(
        tmp_path / "s.json",
        [
            {
                "conversations": [
                    {"from": "system", "value": "S"},
                    {"from": "human", "value": "q"},
                    {"from": "gpt", "value": "a"},
                    {"from": "function_call", "value": '{"name": "f", "arguments": {}}'},
                    {"from": "observation", "value": "obs"},
                    {"from": "gpt", "value": "done"},
                ]
            }
        ],
    )
    (p,) = load(str(f))
    assert p.format == "sharegpt"
    (r,) = rows_of([p])
    roles = [m["role"] for m in r["messages"]]
    assert roles == ["system", "user", "assistant", "assistant", "tool", "assistant"]
    assert r["messages"][3]["tool_calls"][0]["function"]["name"] == "f"
    g = write(
        tmp_path / "pairs.jsonl",
        [{"conversation": [{"human": "q1", "assistant": "a1"}, {"human": "q2", "assistant": "a2"}]}],
    )
    (r2,) = rows_of(load(str(g)))
    assert msgs(r2) == [("user", "q1"), ("assistant", "a1"), ("user", "q2"), ("assistant", "a2")]


def test_llamafactory_function_call_rows(tmp_path):
    """LLaMA-Factory's sharegpt tool form: `tools` a JSON string of bare functions, `function_call` turns holding
    one call or a JSON list (parallel calls), `observation` replies."""
    weather = {"name": "get_weather", "description": "w", "parameters": {"type": "object", "properties": {}}}
    calls = [{"name": "get_weather", "arguments": {"city": "Paris"}}, {"name": "get_weather", "arguments": {}}]
    row = {
        "conversations": [
            {"from": "human", "value": "Weather in Paris and here?"},
            {"from": "function_call", "value": json.dumps(calls)},
            {"from": "observation", "value": '["sunny", "rain"]'},
            {"from": "gpt", "value": "Sunny there, rain here."},
        ],
        "tools": json.dumps([weather]),
    }
    (r,) = rows_of(load(str(write(tmp_path / "lf.json", [row]))))
    assert [m["role"] for m in r["messages"]] == ["user", "assistant", "tool", "assistant"]
    assert [c["function"] for c in r["messages"][1]["tool_calls"]] == calls
    assert r["tools"] == [{"type": "function", "function": weather}]  # the OpenAI form templates render


def test_query_response_with_history_and_aliases(tmp_path):
    f = write(tmp_path / "qr.jsonl", [{"query": "q", "response": "r", "history": [["h1", "h2"]], "system": "S"}])
    (r,) = rows_of(load(str(f)))
    assert msgs(r) == [("system", "S"), ("user", "h1"), ("assistant", "h2"), ("user", "q"), ("assistant", "r")]
    g = write(tmp_path / "alias.jsonl", [{"question": "q", "answer": "a", "solution": "42"}])
    (p,) = load(str(g))
    assert p.format == "query-response"
    (r2,) = rows_of([p])
    assert msgs(r2) == [("user", "q"), ("assistant", "a")] and r2["solution"] == "42"  # extra keys pass through


def test_messages_with_tools_and_extras(tmp_path):
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")  # media are checked when read (a missing file is a bad row)
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    f = write(
        tmp_path / "m.jsonl",
        [
            {
                "messages": [
                    {"role": "user", "content": "w?"},
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "{}"}}],
                    },
                    {"role": "tool", "content": "ok"},
                    {"role": "assistant", "content": "done"},
                ],
                "tools": json.dumps(tools),
                "images": ["a.png"],
                "label": True,
            }
        ],
    )
    (p,) = load(str(f))
    assert p.format == "messages"
    (r,) = rows_of([p])
    assert r["tools"] == tools and r["images"] == [str((tmp_path / "a.png").resolve())] and r["label"] is True
    assert r["messages"][1]["content"] == "" and r["messages"][1]["tool_calls"]


def test_text_rows_and_other_file_types(tmp_path):
    (p,) = load(str(write(tmp_path / "t.jsonl", [{"text": "once upon a time"}])))
    assert p.format == "text" and msgs(rows_of([p])[0]) == [("assistant", "once upon a time")]
    (tmp_path / "t.txt").write_text("line one\nline two\n")
    assert len(rows_of(load(str(tmp_path / "t.txt")))) == 2
    (tmp_path / "c.csv").write_text("query,response\nq1,r1\nq2,\n")
    c = rows_of(load(str(tmp_path / "c.csv")))
    assert msgs(c[0]) == [("user", "q1"), ("assistant", "r1")]
    import datasets

    datasets.Dataset.from_list([{"instruction": "i", "output": "o"}]).to_parquet(tmp_path / "p.parquet")
    assert msgs(rows_of(load(str(tmp_path / "p.parquet")))[0]) == [("user", "i"), ("assistant", "o")]
    folder = tmp_path / "folder"
    folder.mkdir()
    write(folder / "a.jsonl", [{"query": "1", "response": "2"}])
    write(folder / "b.jsonl", [{"query": "3", "response": "4"}])
    assert len(rows_of(load(str(folder)))) == 2


def test_preference_rows(tmp_path):
    f = write(tmp_path / "p.jsonl", [{"prompt": "p", "chosen": "good", "rejected": "bad"}])
    (p,) = load(str(f))
    assert p.format == "preference"
    (r,) = rows_of([p])
    assert msgs(r) == [("user", "p"), ("assistant", "good")] and r["rejected_response"] == "bad"


def test_columns_rename(tmp_path):
    f = write(tmp_path / "c.jsonl", [{"Src_Q": "q", "ans": "a"}])
    (r,) = rows_of(load(str(f), columns='{"src_q": "query", "ans": "response"}'))
    assert msgs(r) == [("user", "q"), ("assistant", "a")]


def test_sample_three_regimes(tmp_path):
    f = write(tmp_path / "n.jsonl", [{"query": str(i), "response": str(i)} for i in range(10)])
    q = lambda rows: [r["messages"][0]["content"] for r in rows]  # noqa: E731
    fewer = q(rows_of(load(f"{f}#4")))
    assert len(fewer) == 4 and len(set(fewer)) == 4 and fewer != ["0", "1", "2", "3"]
    assert fewer == q(rows_of(load(f"{f}#4")))  # seeded by --data_seed
    assert fewer != q(rows_of(load(f"{f}#4", data_seed=7)))
    more = q(rows_of(load(f"{f}#25")))
    assert len(more) == 25 and all(more.count(str(i)) >= 2 for i in range(10))
    assert len(set(more[20:])) == 5  # the remainder is sampled without replacement
    assert q(rows_of(load(f"{f}#3", dataset_shuffle=False))) == ["0", "1", "2"]


def test_val_split_and_val_dataset(tmp_path):
    f = write(tmp_path / "n.jsonl", [{"query": str(i), "response": "r"} for i in range(20)])
    b = load_data(DataArgs(dataset=[str(f)], split_dataset_ratio=0.1))
    assert len(b.train) == 18 and len(b.val) == 2
    b2 = load_data(DataArgs(dataset=[str(f)], val_dataset=[f"{f}#3"]))
    assert len(b2.train) == 20 and len(b2.val) == 3


def test_streaming(tmp_path):
    f = write(tmp_path / "n.jsonl", [{"query": str(i), "response": "r"} for i in range(10)])
    b = load_data(DataArgs(dataset=[f"{f}#4"], streaming=True, dataset_shuffle=False))
    got = [json.loads(r["row"])["messages"][0]["content"] for r in b.train]
    assert got == ["0", "1", "2", "3"]


@pytest.mark.parametrize(
    "names,authors,zh,en",
    [
        (["小锻", "lmforge-bot"], ["锻造组", "lmforge"], ("小锻", "锻造组"), ("lmforge-bot", "lmforge")),
        (["forge"], ["team"], ("forge", "team"), ("forge", "team")),
    ],
)
def test_self_cognition_substitution(names, authors, zh, en):
    rows = rows_of(load("self-cognition", model_name=names, model_author=authors))
    assert len(rows) >= 100
    text = [r["messages"][-1]["content"] for r in rows]
    assert not any("{{" in t for t in text)
    zh_rows = [t for t in text if any("\u4e00" <= ch <= "\u9fff" for ch in t)]
    en_rows = [t for t in text if t not in zh_rows]
    assert len(zh_rows) >= 50 and len(en_rows) >= 50
    assert all(zh[0] in t or zh[1] in t for t in zh_rows) and any(zh[0] in t and zh[1] in t for t in zh_rows)
    assert all(en[0] in t or en[1] in t for t in en_rows)


def test_self_cognition_alias_and_subset():
    rows = rows_of(load("swift/self-cognition:empty_think#5", model_name=["x"], model_author=["y"]))
    assert len(rows) == 5 and all(r["messages"][-1]["content"].startswith("<think>\n\n</think>\n\n") for r in rows)
