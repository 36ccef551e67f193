"""`lmforge check` on tool rows: every kind of bad tool row is one line naming file:row and field; good rows
(OpenAI form and ms-swift's tool_call turns) pass and render the call markup into the trained span."""

from __future__ import annotations

import json

from tests.agent.helpers import tool_def
from tests.conftest import run_cli


def _call(name: str, args: str) -> dict:
    return {"type": "function", "function": {"name": name, "arguments": args}}


def test_check_reports_each_bad_tool_row(tmp_path, tiny_qwen3):
    weather = [tool_def("get_weather")]
    ask = {"role": "user", "content": "Weather in Paris?"}
    good_calls = [_call("get_weather", '{"city": "Paris"}')]
    rows = [
        {"tools": weather, "messages": [ask, {"role": "assistant", "content": "", "tool_calls": good_calls}]},
        {
            "tools": weather,
            "messages": [ask, {"role": "assistant", "content": "", "tool_calls": [_call("get_time", "{}")]}],
        },
        {
            "tools": weather,
            "messages": [ask, {"role": "assistant", "content": "", "tool_calls": [_call("get_weather", "{city")]}],
        },
        {
            "tools": weather,
            "messages": [
                ask,
                {"role": "assistant", "content": "", "tool_calls": [_call("get_weather", '{"city": 3}')]},
            ],
        },
        {
            "tools": weather,
            "messages": [ask, {"role": "tool", "content": "sunny"}, {"role": "assistant", "content": "ok"}],
        },
        {
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "text"}}}],
            "messages": [ask, {"role": "assistant", "content": "hi"}],
        },
        # ms-swift's form: a tool_call turn holding {"name", "arguments"}, then the tool's reply
        {
            "tools": json.dumps(weather),
            "messages": [
                ask,
                {"role": "tool_call", "content": json.dumps({"name": "get_weather", "arguments": {"city": "Rome"}})},
                {"role": "tool_response", "content": "sunny"},
                {"role": "assistant", "content": "Sunny."},
            ],
        },
    ]
    data = tmp_path / "tools.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    r = run_cli("check", "--model", str(tiny_qwen3), "--dataset", str(data), "--strict", "false", "--show_samples", "2")
    out = r.stdout + r.stderr
    assert r.returncode == 1 and "Traceback" not in out, out[-3000:]
    dropped = [line.strip() for line in out.splitlines() if line.strip().startswith("dropped:")]
    expected = [
        ("tools.jsonl:2", "messages[1].tool_calls[0].function.name", "undeclared tool 'get_time'"),
        ("tools.jsonl:3", "messages[1].tool_calls[0].function.arguments", "not JSON"),
        ("tools.jsonl:4", "messages[1].tool_calls[0].function.arguments", "city: expected string"),
        ("tools.jsonl:5", "messages[1]", "a tool reply with no tool call before it"),
        ("tools.jsonl:6", "tools.0.function.parameters.type", "unknown JSON schema type 'text'"),
    ]
    assert len(dropped) == len(expected), dropped
    for line, (where, field, problem) in zip(dropped, expected):
        assert where in line and field in line and problem in line, (line, where, field, problem)
    assert "kept 2" in out and "reasoning: 0 of 2 rows carry it" in out and "block: untrained" in out
    assert '[[<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>' in out
    assert '[[<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call>' in out  # ms-swift form
