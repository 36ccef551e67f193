"""Tool definitions and calls, checked: a tool list must be OpenAI function tools whose `parameters` is a JSON
schema; a call must name a declared tool with JSON arguments that fit its schema; a tool reply must follow a call.

The schema check covers the JSON-schema keywords tool definitions use (type, properties, required, enum, items,
additionalProperties, anyOf/oneOf); other keywords are accepted and not enforced.
Each problem is `(field, message)`, so `lmforge check` can name row and field and the server the request param.
"""

from __future__ import annotations

import json
from typing import Any

TYPES: dict[str, Any] = {
    "object": dict,
    "array": list,
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
    "null": type(None),
}
Problem = tuple[str, str]


def _schema_problem(schema: Any, where: str) -> Problem | None:
    """Whether `schema` is a JSON schema (the structural part tool definitions rely on)."""
    if not isinstance(schema, dict):
        return where, f"a JSON schema is an object, got {type(schema).__name__}"
    kinds = schema.get("type")
    for kind in kinds if isinstance(kinds, list) else [kinds] if kinds is not None else []:
        if kind not in TYPES:
            return f"{where}.type", f"unknown JSON schema type {kind!r}; known: {', '.join(TYPES)}"
    props = schema.get("properties", {})
    if not isinstance(props, dict):
        return f"{where}.properties", "must be an object of property schemas"
    for name, sub in props.items():
        found = _schema_problem(sub, f"{where}.properties.{name}")
        if found:
            return found
    required = schema.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        return f"{where}.required", "must be a list of property names"
    if "items" in schema and isinstance(schema["items"], dict):
        return _schema_problem(schema["items"], f"{where}.items")
    return None


def tools_problem(tools: Any) -> Problem | None:
    """A tool list that is not OpenAI function tools with JSON-schema parameters."""
    if not isinstance(tools, list):
        return "tools", "must be a list of tool definitions"
    seen = set()
    for i, tool in enumerate(tools):
        where = f"tools.{i}"
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            return where, 'expected {"type": "function", "function": {...}}'
        fn = tool.get("function", tool)  # ms-swift rows may list bare {"name", "parameters"}
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            return f"{where}.function.name", "a tool needs a non-empty name"
        if fn["name"] in seen:
            return f"{where}.function.name", f"tool {fn['name']!r} declared twice"
        seen.add(fn["name"])
        if "parameters" in fn:
            found = _schema_problem(fn["parameters"], f"{where}.function.parameters")
            if found:
                return found
            if fn["parameters"].get("type", "object") != "object":
                return f"{where}.function.parameters.type", "tool parameters must be an object schema"
    return None


def tool_schemas(tools: list | None) -> dict[str, dict]:
    """name -> parameters schema of each declared tool."""
    out = {}
    for tool in tools or []:
        fn = tool.get("function", tool)
        out[fn["name"]] = fn.get("parameters") or {"type": "object"}
    return out


def _type_ok(value: Any, kind: str) -> bool:
    if kind in ("integer", "number") and isinstance(value, bool):
        return False
    if kind == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, TYPES[kind])


def arguments_problem(value: Any, schema: dict, where: str = "arguments") -> str | None:
    """Why `value` does not fit `schema` (None: it fits)."""
    kinds = schema.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds] if kinds else []
    if kinds and not any(_type_ok(value, k) for k in kinds):
        return f"{where}: expected {'/'.join(kinds)}, got {json.dumps(value, ensure_ascii=False)[:40]}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{where}: {value!r} is not one of {schema['enum']}"
    for key in ("anyOf", "oneOf"):
        if key in schema and all(arguments_problem(value, s, where) for s in schema[key]):
            return f"{where}: fits none of the {key} schemas"
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                return f"{where}: missing required {name!r}"
        for name, sub in value.items():
            if name in props:
                found = arguments_problem(sub, props[name], f"{where}.{name}")
                if found:
                    return found
            elif schema.get("additionalProperties") is False:
                return f"{where}: unexpected property {name!r}"
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for k, item in enumerate(value):
            found = arguments_problem(item, schema["items"], f"{where}[{k}]")
            if found:
                return found
    return None


def call_problem(call: Any, schemas: dict[str, dict] | None, where: str) -> Problem | None:
    """An OpenAI-shaped call to an undeclared tool, or with arguments that are not JSON or do not fit. `schemas`
    None: the row declares no tools at all (sharegpt function_call rows often don't), so only the shape and the
    arguments' JSON are checked."""
    fn = call.get("function", call) if isinstance(call, dict) else None
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        return where, 'expected {"type": "function", "function": {"name", "arguments"}}'
    if schemas is not None and fn["name"] not in schemas:
        known = ", ".join(schemas) or "none declared"
        return f"{where}.function.name", f"calls undeclared tool {fn['name']!r} (tools: {known})"
    args = fn.get("arguments", {})
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except json.JSONDecodeError as e:
            return f"{where}.function.arguments", f"not JSON ({e.msg} at char {e.pos})"
    if schemas is None:
        return None
    problem = arguments_problem(args, schemas[fn["name"]])
    return (f"{where}.function.arguments", f"do not fit the schema of {fn['name']!r}: {problem}") if problem else None


def messages_problem(messages: list[dict], tools: list | None, field: str = "messages") -> Problem | None:
    """Tools, calls and tool replies of one conversation, checked together."""
    if tools is not None:
        found = tools_problem(tools)
        if found:
            return found
    schemas, pending = (tool_schemas(tools) if tools is not None else None), 0
    for k, msg in enumerate(messages):
        if msg.get("role") == "assistant" and msg.get("tool_calls"):
            calls = msg["tool_calls"]
            if not isinstance(calls, list):
                return f"{field}[{k}].tool_calls", "must be a list of calls"
            for j, call in enumerate(calls):
                found = call_problem(call, schemas, f"{field}[{k}].tool_calls[{j}]")
                if found:
                    return found
            pending = len(calls)
        elif msg.get("role") == "tool":
            if pending <= 0:
                return f"{field}[{k}]", "a tool reply with no tool call before it"
            pending -= 1
        elif msg.get("role") in ("user", "assistant"):
            pending = 0
    return None
