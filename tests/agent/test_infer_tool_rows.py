"""`lmforge infer` batch results carry the answer's tool calls parsed, as deploy returns them: `tool_calls` in the
result row and in the assistant message (content = the text outside the markup), finish_reason `tool_calls`.
The answers come from a scripted engine on Qwen3's real template, so what is parsed is known exactly."""

from __future__ import annotations

import json

from lmforge import cli
from lmforge.infer.frontend import Frontend
from lmforge.templates import get_template
from lmforge.templates.encode import ChatTemplate
from tests.serve.scripted import ScriptedEngine
from tests.serve.test_tools import TIME, WEATHER, reply


def test_infer_result_rows_carry_parsed_tool_calls(tmp_path, monkeypatch, qwen_tok, tiny_qwen3):
    engine = ScriptedEngine(Frontend(ChatTemplate(qwen_tok, get_template("qwen3"))), reply)
    monkeypatch.setattr("lmforge.infer.run.build_engine", lambda *_a: engine)
    rows = [
        {"messages": [{"role": "user", "content": "Weather and time in Paris?"}], "tools": [WEATHER, TIME]},
        {"messages": [{"role": "user", "content": "Say hi."}]},
    ]
    data = tmp_path / "val.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "result.jsonl"
    argv = ["infer", "--model", str(tiny_qwen3), "--val_dataset", str(data), "--result_path", str(out)]
    assert cli.main(argv) == 0
    called, plain = [json.loads(line) for line in out.read_text().splitlines()]
    assert called["finish_reason"] == "tool_calls"
    assert [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in called["tool_calls"]] == [
        ("get_weather", {"city": "Paris"}),
        ("get_time", {}),
    ]
    msg = called["messages"][-1]
    assert msg["content"] == "Let me check." and msg["tool_calls"] == called["tool_calls"]
    assert "<tool_call>" in called["response"]  # the raw answer stays, for --metric toolcall
    assert "tool_calls" not in plain and plain["messages"][-1] == {"role": "assistant", "content": plain["response"]}
