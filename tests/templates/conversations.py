"""Conversations for the golden template tests: single/multi-turn, with and without system, thinking, tools,
Chinese and emoji text."""

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]


def U(c):  # noqa: N802
    return {"role": "user", "content": c}


def A(c, **kw):  # noqa: N802
    return {"role": "assistant", "content": c, **kw}


def S(c):  # noqa: N802
    return {"role": "system", "content": c}


def T(c):  # noqa: N802
    return {"role": "tool", "content": c}


CALL = [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]

CONVERSATIONS = [
    [U("hi"), A("hello")],
    [S("You are terse."), U("hi"), A("yo")],
    [U("What is 2+2?"), A("4"), U("and 3+3?"), A("6")],
    [S("sys"), U("a"), A("b"), U("c"), A("d"), U("e"), A("f")],
    [U("你好"), A("你好！有什么可以帮你？")],
    [S("你是一个助手。"), U("今天天气怎么样？"), A("我无法获取实时天气。")],
    [U("emoji 🎉?"), A("Sure 🎉🎈✨")],
    [U("mixed 中文 and English 😀"), A("好的 OK 👍")],
    [U("think"), A("<think>\nLet me think.\n</think>\n\nThe answer is 42.")],
    [U("q1"), A("<think>\nr1\n</think>\n\na1"), U("q2"), A("<think>\nr2\n</think>\n\na2")],
    [U("q1"), A("a1"), U("q2"), A("<think>\nreason\n</think>\n\na2")],
    [U("q"), A("answer", reasoning_content="hidden reasoning")],
    [U("q1"), A("a1", reasoning_content="r1"), U("q2"), A("a2")],
    [U("Weather in Paris?"), A("", tool_calls=CALL), T("sunny, 21C"), A("It is sunny in Paris.")],
    [S("Use tools."), U("Weather?"), A("Let me check.", tool_calls=CALL), T("rain"), A("Rain today.")],
    [U("two calls"), A("", tool_calls=CALL + CALL), T("a"), T("b"), A("Both done.")],
    [U("multi\nline\ninput"), A("multi\nline\noutput")],
    [U("  leading spaces"), A("  leading spaces back")],
    [U("trailing newline\n"), A("ok\n")],
    [U("code"), A("```python\nprint('hi')\n```")],
    [U("json"), A('{"a": 1, "b": [1, 2]}')],
    [U("long " * 50), A("long answer " * 40)],
    [S(""), U("empty system"), A("fine")],
    [U("q"), A("")],
    [U("<b>html</b>"), A("<i>ok</i>")],
    [U("x"), A("y"), U("z"), A("w")],
    [S("s"), U("你好吗"), A("我很好😀"), U("再见"), A("再见！👋")],
    [U("tabs\there"), A("tabs\tback")],
    [U("numbers 1234567890"), A("0987654321")],
    [U("question?"), A("<think>\n\n</think>\n\nno thinking here")],
    [U("a"), A("b"), U("c"), A("<think>\nx\n</think>\n\nd", loss=True)],
    [U("Weather?"), A("", tool_calls=CALL), T("sun")],  # ends with a tool turn: encode rejects it in sft, not here
]

# rows that end in an assistant turn: what SFT trains on
TRAINABLE = [c for c in CONVERSATIONS if c[-1]["role"] == "assistant"]
WITH_TOOLS = {13, 14, 15}  # indices rendered with the tools list too
