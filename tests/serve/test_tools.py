"""Tool calls and the thinking split through the OpenAI server, driven with the official openai client, on Qwen3's
real chat template; the answers come from a scripted engine so what is parsed is known exactly."""

from __future__ import annotations

import json

import openai
import pytest

from tests.serve.scripted import ScriptedEngine

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
ASK = [{"role": "user", "content": "Weather and time in Paris?"}]
CALLS = (
    "Let me check.\n<tool_call>\n"
    '{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
    '<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>'
)


def reply(prompt: str) -> str:
    """The script: what the 'model' answers, by what its prompt holds."""
    tail = prompt.rsplit("<|im_start|>", 1)[-1]
    if "<tool_response>" in tail or "<tool_response>" in prompt.rsplit("<|im_start|>user", 1)[-1]:
        return "It is sunny in Paris at noon."
    if prompt.endswith('"arguments": '):
        return '{"city": "Lyon"}}\n</tool_call>'
    if prompt.endswith("<tool_call>\n"):
        return '{"name": "get_time", "arguments": {}}\n</tool_call>'
    if "BROKEN" in prompt:
        return '<tool_call>\n{"name": "get_weather", "arguments": {"city": }\n</tool_call>'
    if "THINK" in prompt:
        return "<think>\nI need the weather.\n</think>\n\n" + CALLS
    return CALLS


@pytest.fixture(scope="module")
def served(qwen_tok):
    from fastapi.testclient import TestClient

    from lmforge.infer.engine import SamplingConfig
    from lmforge.infer.frontend import Frontend
    from lmforge.serve.app import build_app
    from lmforge.serve.state import ServeState
    from lmforge.templates import get_template
    from lmforge.templates.encode import ChatTemplate

    engine = ScriptedEngine(Frontend(ChatTemplate(qwen_tok, get_template("qwen3"))), reply)
    app = build_app(ServeState(engine, "scripted", {}, SamplingConfig(max_new_tokens=200)))
    with TestClient(app) as http:
        yield openai.OpenAI(base_url="http://testserver/v1", api_key="x", http_client=http, max_retries=0), engine


def _streamed(client: openai.OpenAI, **kw) -> tuple[str, dict[int, dict], str | None, str]:
    """Accumulate a stream as an agent framework does: content, calls by index, the finish reason, reasoning."""
    content, calls, reason, reasoning = "", {}, None, ""
    for chunk in client.chat.completions.create(model="scripted", stream=True, **kw):
        for c in chunk.choices:
            content += c.delta.content or ""
            reasoning += getattr(c.delta, "reasoning_content", None) or ""
            for tc in c.delta.tool_calls or []:
                slot = calls.setdefault(tc.index, {"id": tc.id, "name": "", "arguments": ""})
                slot["name"] += tc.function.name or ""
                slot["arguments"] += tc.function.arguments or ""
            reason = c.finish_reason or reason
    return content, calls, reason, reasoning


def test_parallel_calls_whole_and_streamed(served):
    client, engine = served
    r = client.chat.completions.create(model="scripted", messages=ASK, tools=[WEATHER, TIME])
    msg = r.choices[0].message
    assert r.choices[0].finish_reason == "tool_calls" and msg.content == "Let me check."
    assert [(c.function.name, json.loads(c.function.arguments)) for c in msg.tool_calls] == [
        ("get_weather", {"city": "Paris"}),
        ("get_time", {}),
    ]
    assert len({c.id for c in msg.tool_calls}) == 2 and "<tools>" in engine.prompts[-1]
    content, calls, reason, _ = _streamed(client, messages=ASK, tools=[WEATHER, TIME])
    assert reason == "tool_calls" and content.strip() == "Let me check."
    assert [(c["name"], json.loads(c["arguments"])) for c in calls.values()] == [
        ("get_weather", {"city": "Paris"}),
        ("get_time", {}),
    ]
    one = client.chat.completions.create(
        model="scripted", messages=ASK, tools=[WEATHER, TIME], parallel_tool_calls=False
    )
    assert [c.function.name for c in one.choices[0].message.tool_calls] == ["get_weather"]


def test_malformed_markup_is_content_and_none_parses_nothing(served):
    client, engine = served
    bad = [{"role": "user", "content": "BROKEN"}]
    r = client.chat.completions.create(model="scripted", messages=bad, tools=[WEATHER])
    assert r.choices[0].finish_reason == "stop" and r.choices[0].message.tool_calls is None
    assert r.choices[0].message.content.startswith("<tool_call>")
    content, calls, reason, _ = _streamed(client, messages=bad, tools=[WEATHER])
    assert reason == "stop" and not calls and content == r.choices[0].message.content
    r = client.chat.completions.create(model="scripted", messages=ASK, tools=[WEATHER], tool_choice="none")
    assert r.choices[0].message.tool_calls is None and "<tool_call>" in r.choices[0].message.content
    assert "<tools>" not in engine.prompts[-1]  # tool_choice none: the tools are not offered either


def test_required_and_named_choice_force_a_call(served):
    client, engine = served
    r = client.chat.completions.create(
        model="scripted",
        messages=ASK,
        tools=[WEATHER, TIME],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    assert engine.prompts[-1].endswith('<tool_call>\n{"name": "get_weather", "arguments": ')
    call = r.choices[0].message.tool_calls[0]
    assert r.choices[0].finish_reason == "tool_calls"
    assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather", {"city": "Lyon"})
    _, calls, reason, _ = _streamed(client, messages=ASK, tools=[WEATHER, TIME], tool_choice="required")
    assert reason == "tool_calls" and [c["name"] for c in calls.values()] == ["get_time"]


@pytest.mark.parametrize(
    ("kw", "param"),
    [
        ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "strng"}}}]}, "tools"),
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": "city"}}]}, "tools"),
        ({"tools": [{"type": "function", "function": {"description": "no name"}}]}, "tools"),
    ],
)
def test_bad_tools_and_choices_are_400(served, kw, param):
    client, _ = served
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="scripted", messages=ASK, **kw)
    assert e.value.body["param"].startswith(param), e.value.body


def test_two_turn_loop_with_reasoning_in_history(served):
    """The SDK agent loop: call, tool result, final answer; reasoning split out and sent back in the history."""
    client, engine = served
    msgs = [{"role": "user", "content": "THINK: weather in Paris?"}]
    r = client.chat.completions.create(model="scripted", messages=msgs, tools=[WEATHER])
    msg = r.choices[0].message
    assert msg.reasoning_content == "I need the weather." and msg.content == "Let me check."
    assert "<think>" not in msg.content and r.choices[0].finish_reason == "tool_calls"
    _, _, _, reasoning = _streamed(client, messages=msgs, tools=[WEATHER])
    assert reasoning.strip() == "I need the weather."
    msgs.append(msg.model_dump(exclude_none=True))
    for call in msg.tool_calls:
        msgs.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps({"sky": "sunny"})})
    final = client.chat.completions.create(model="scripted", messages=msgs, tools=[WEATHER])
    assert final.choices[0].message.content == "It is sunny in Paris at noon."
    assert final.choices[0].finish_reason == "stop" and final.choices[0].message.tool_calls is None
    seen = engine.prompts[-1]
    assert '<tool_response>\n{"sky": "sunny"}\n</tool_response>' in seen and '"city": "Paris"' in seen
    assert "<think>\nI need the weather.\n</think>" in seen  # the reasoning went back into the prompt
