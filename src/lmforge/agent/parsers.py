"""Tool-call markup per model family: text -> (content, calls), whole or streamed, and the reverse (tools and
calls rendered into plain messages for chat templates that know nothing of tools).

    @register_tool_parser("mine")
    class Mine(ToolParser): ...

A parser never raises on model output: markup it cannot read stays in `content` (a server must not 500 on what
a model wrote).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lmforge.registry import Registry

TOOL_PARSERS: Registry = Registry("agent template", "--agent_template")


def register_tool_parser(name: str) -> Callable[[type], type]:
    def deco(cls: type) -> type:
        TOOL_PARSERS.register(name, cls())
        return cls

    return deco


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: str  # JSON text, as the OpenAI API carries it
    id: str = field(default_factory=lambda: f"call_{uuid.uuid4().hex[:24]}")

    def openai(self, index: int | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }
        return out if index is None else {"index": index, **out}


def _call(obj: Any, args_key: str) -> ToolCall | None:
    """{"name": str, args_key: object or JSON text} -> a ToolCall; anything else None."""
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str) or not obj["name"]:
        return None
    args = obj.get(args_key, obj.get("arguments", {}))
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except json.JSONDecodeError:
            return None
    if not isinstance(args, dict):
        return None
    return ToolCall(obj["name"], json.dumps(args, ensure_ascii=False))


def call_arguments(call: dict) -> Any:
    """The arguments of an OpenAI-shaped call ({"function": {"arguments": text or object}}), decoded."""
    args = (call.get("function") or call).get("arguments", {})
    return json.loads(args) if isinstance(args, str) else args


class ToolParser:
    """One family's markup. `parse` reads a whole answer; `start` finds where markup begins in a partial one
    (streaming buffers from there); `forced_prefix` is the text that makes the model call (a named) tool."""

    def parse(self, text: str) -> tuple[str, list[ToolCall]]:
        raise NotImplementedError

    def start(self, text: str) -> int | None:
        raise NotImplementedError

    def hold(self, text: str) -> int:
        """Trailing characters of `text` that may still turn into markup (not sent yet when streaming)."""
        return 0

    def forced_prefix(self, name: str | None) -> str:
        raise NotImplementedError

    def render_call(self, call: dict) -> str:
        raise NotImplementedError

    def render_tools(self, tools: list[dict]) -> str:
        raise NotImplementedError

    def render_messages(self, messages: list[dict], tools: list | None) -> list[dict]:
        """Tools into the system turn, calls into assistant text, tool replies into user turns: for chat templates
        without tool support (ms-swift's agent templates)."""
        out = [dict(m) for m in messages]
        if tools:
            if out and out[0]["role"] == "system":
                out[0]["content"] = f"{out[0]['content']}\n\n{self.render_tools(tools)}"
            else:
                out.insert(0, {"role": "system", "content": self.render_tools(tools)})
        for m in out:
            calls = m.pop("tool_calls", None)
            if m["role"] == "assistant" and calls:
                text = "\n".join(self.render_call(c) for c in calls)
                m["content"] = f"{m.get('content') or ''}\n{text}".lstrip("\n")
            elif m["role"] == "tool":
                m["role"], m["content"] = "user", f"<tool_response>\n{m.get('content') or ''}\n</tool_response>"
                m.pop("tool_call_id", None)
        return out


def _dump(call: dict, args_key: str) -> str:
    fn = call.get("function") or call
    return json.dumps({"name": fn.get("name"), args_key: call_arguments(call)}, ensure_ascii=False)


@register_tool_parser("hermes")
class Hermes(ToolParser):
    """Qwen2.5/Qwen3/Hermes: `<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>`, one block per call."""

    OPEN, CLOSE = "<tool_call>", "</tool_call>"
    _block = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S)

    def parse(self, text: str) -> tuple[str, list[ToolCall]]:
        if self.OPEN not in text:
            return text, []
        calls = []
        for m in self._block.finditer(text):
            try:
                call = _call(json.loads(m.group(1)), "arguments")
            except json.JSONDecodeError:
                call = None
            if call is None:
                return text, []  # malformed markup: the whole answer is content
            calls.append(call)
        return self._block.sub("", text).strip(), calls

    def start(self, text: str) -> int | None:
        at = text.find(self.OPEN)
        return at if at >= 0 else None

    def hold(self, text: str) -> int:
        return max((k for k in range(1, len(self.OPEN)) if text.endswith(self.OPEN[:k])), default=0)

    def forced_prefix(self, name: str | None) -> str:
        return f'{self.OPEN}\n{{"name": "{name}", "arguments": ' if name else f"{self.OPEN}\n"

    def render_call(self, call: dict) -> str:
        return f"{self.OPEN}\n{_dump(call, 'arguments')}\n{self.CLOSE}"

    def render_tools(self, tools: list[dict]) -> str:
        listed = "\n".join(json.dumps(t, ensure_ascii=False) for t in tools)
        return (
            "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
            f"You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{listed}\n</tools>"
            "\n\nFor each function call, return a json object with function name and arguments within "
            '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}'
            "\n</tool_call>"
        )


@register_tool_parser("llama3")
class Llama3(ToolParser):
    """Llama 3.1+ JSON calls: the answer is `{"name": ..., "parameters": {...}}` (several joined by `;`),
    optionally after `<|python_tag|>`."""

    TAG = "<|python_tag|>"

    def parse(self, text: str) -> tuple[str, list[ToolCall]]:
        body = text.strip().removeprefix(self.TAG).strip()
        if not body.startswith("{"):
            return text, []
        calls, at, decoder = [], 0, json.JSONDecoder()
        while at < len(body):
            try:
                obj, at = decoder.raw_decode(body, at)
            except json.JSONDecodeError:
                return text, []
            call = _call(obj, "parameters")
            if call is None:
                return text, []
            calls.append(call)
            while at < len(body) and body[at] in " \n\t;":
                at += 1
        return "", calls

    def start(self, text: str) -> int | None:
        body = text.lstrip()
        return 0 if body.startswith("{") or body.startswith(self.TAG) else None

    def hold(self, text: str) -> int:
        body = text.lstrip()
        return len(text) if not body or self.TAG.startswith(body) else 0

    def forced_prefix(self, name: str | None) -> str:
        return f'{{"name": "{name}", "parameters": ' if name else '{"name": "'

    def render_call(self, call: dict) -> str:
        return _dump(call, "parameters")

    def render_tools(self, tools: list[dict]) -> str:
        listed = "\n\n".join(json.dumps(t, indent=4, ensure_ascii=False) for t in tools)
        return (
            "Given the following functions, please respond with a JSON for a function call with its proper "
            'arguments that best answers the given prompt.\n\nRespond in the format {"name": function name, '
            f'"parameters": dictionary of argument name and its value}}. Do not use variables.\n\n{listed}'
        )


def parser_for(chat_template: str, agent_template: str | None = None) -> ToolParser:
    """`--agent_template` wins; else the markup the chat template itself uses; else hermes."""
    if agent_template:
        return TOOL_PARSERS.lookup(agent_template)
    if "<|python_tag|>" in chat_template or ('"parameters"' in chat_template and "<|eot_id|>" in chat_template):
        return TOOL_PARSERS.lookup("llama3")
    return TOOL_PARSERS.lookup("hermes")


def renders_tools(chat_template: str) -> bool:
    """Whether a jinja chat template renders `tools` and assistant `tool_calls` itself."""
    return "tools" in chat_template and "tool_call" in chat_template


class StreamSplitter:
    """Streaming form of `parse`: `feed` returns content that is final; from where markup starts, text is held
    and read at `finish` (calls, or the held text back as content when it is not valid markup)."""

    def __init__(self, parser: ToolParser):
        self.parser, self.text, self.sent, self.markup_at = parser, "", 0, None

    def feed(self, delta: str) -> str:
        self.text += delta
        if self.markup_at is None:
            self.markup_at = self.parser.start(self.text)  # the whole text: llama3 calls are whole answers
        end = self.markup_at if self.markup_at is not None else len(self.text) - self.parser.hold(self.text)
        out, self.sent = self.text[self.sent : max(end, self.sent)], max(end, self.sent)
        return out

    def finish(self) -> tuple[str, list[ToolCall]]:
        rest = self.text[self.sent :]
        if self.markup_at is not None and self.markup_at < self.sent:  # text already sent: not a call after all
            return rest, []
        if self.markup_at is None:
            return rest, []
        content, calls = self.parser.parse(rest)
        return (content, calls) if calls else (rest, [])
