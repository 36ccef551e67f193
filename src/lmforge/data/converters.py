"""Row converters: alpaca, sharegpt, query-response, messages, preference and text rows -> the standard row.

Standard row: {"messages": [...], "rejected_response"?, "label"?, "images"?, "videos"?, "audios"?, "tools"?,
"objects"?, ...extra keys passed through}. Formats are detected per dataset from its columns (as ms-swift's
AutoPreprocessor does); each converter is a plain function registered by name.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Callable
from typing import Any

from lmforge.errors import RowError
from lmforge.multimodal.parts import parts_to_text

CONVERTERS: dict[str, Callable[[dict], dict]] = {}

CONVERSATION_KEYS = ("messages", "conversation", "conversations")
QUERY_ALIASES = ("query", "prompt", "input", "instruction", "question", "problem")
RESPONSE_ALIASES = (
    "response",
    "answer",
    "output",
    "targets",
    "target",
    "answer_key",
    "answers",
    "completion",
    "content",
    "chosen",
    "text",
    "solution",
)
SYSTEM_ALIASES = ("system", "system_prompt")
MEDIA_ALIASES = {
    "image": "images",
    "images": "images",
    "video": "videos",
    "videos": "videos",
    "audio": "audios",
    "audios": "audios",
}
ROLE_MAP = {
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "bot": "assistant",
    "system": "system",
    "tool": "tool",
    "tool_response": "tool",
    "observation": "tool",
    "observations": "tool",
    "function_response": "tool",
    "tool_call": "tool_call",
    "function_call": "tool_call",
}
# keys a converter consumes; everything else passes through to later stages (e.g. `solution` for GRPO)
_CONSUMED = (
    set(CONVERSATION_KEYS)
    | set(QUERY_ALIASES)
    | set(RESPONSE_ALIASES)
    | set(SYSTEM_ALIASES)
    | {"history", "rejected", "rejected_response"}
)


def register_converter(name: str) -> Callable[[Callable[[dict], dict]], Callable[[dict], dict]]:
    def deco(fn: Callable[[dict], dict]) -> Callable[[dict], dict]:
        CONVERTERS[name] = fn
        return fn

    return deco


def detect_format(columns: list[str], first_row: dict | None = None) -> str:
    """Pick a converter from the column names (and the first row, to tell sharegpt from OpenAI messages)."""
    cols = set(columns)
    conv = next((k for k in CONVERSATION_KEYS if k in cols), None)
    if conv:
        turns = (first_row or {}).get(conv) or []
        first = turns[0] if isinstance(turns, list) and turns and isinstance(turns[0], dict) else {}
        if first and ("from" in first or "value" in first or ("role" not in first and "content" not in first)):
            return "sharegpt"
        return "messages"
    if "chosen" in cols and "rejected" in cols:
        return "preference"
    if "instruction" in cols and ("input" in cols or "output" in cols):
        return "alpaca"
    if cols & {"text"} and not cols & (set(QUERY_ALIASES) | set(RESPONSE_ALIASES) - {"text"}):
        return "text"
    if cols & set(QUERY_ALIASES) or cols & set(RESPONSE_ALIASES):
        return "query-response"
    return "unknown"


def _text(row: dict, field: str, required: bool = True) -> str | None:
    value = row.get(field)
    if value is None:
        if required:
            raise RowError(field, "missing or null", f"every row needs a non-null '{field}'")
        return None
    if isinstance(value, list) and value and isinstance(value[0], str):
        value = value[0]  # ms-swift takes the first of several reference answers
    if not isinstance(value, str):
        raise RowError(field, f"expected text, got {type(value).__name__}")
    return value


def _first(row: dict, aliases: tuple[str, ...]) -> str | None:
    """The first alias with a value; else the first present but null (so the error names it)."""
    return next((a for a in aliases if row.get(a) is not None), next((a for a in aliases if a in row), None))


def _extras(row: dict, out: dict, used: set) -> dict:
    """Keys the converter did not use pass through to later stages (e.g. `solution` for GRPO rewards)."""
    used = used | {"rejected_response", "history"} | set(SYSTEM_ALIASES)
    for key, value in row.items():
        if key in used or key in out or value is None:
            continue
        out[MEDIA_ALIASES.get(key, key)] = value
    if "rejected_response" in row and row["rejected_response"] is not None:
        out["rejected_response"] = _text(row, "rejected_response")
        rejected = row["rejected_response"]
        if isinstance(rejected, list) and len(rejected) > 1 and all(isinstance(r, str) for r in rejected):
            out["rejected_responses"] = rejected  # every negative, for embedding/reranker rows (data/pairs.py)
    return out


def _history(row: dict) -> list[dict]:
    hist = row.get("history")
    if hist in (None, "", []):
        return []
    if isinstance(hist, str):
        try:
            hist = ast.literal_eval(hist)
        except (ValueError, SyntaxError):
            raise RowError("history", "not a list of [query, response] pairs")
    out = []
    for k, pair in enumerate(hist):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2 or not all(isinstance(x, str) for x in pair):
            raise RowError(f"history[{k}]", "expected a [query, response] pair of strings")
        out += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
    return out


def _qr_messages(system: str | None, history: list[dict], query: str | None, response: str | None) -> list[dict]:
    msgs = [{"role": "system", "content": system}] if system else []
    msgs += history
    if query is not None:
        msgs.append({"role": "user", "content": query})
    if response is not None:
        msgs.append({"role": "assistant", "content": response})
    return msgs


@register_converter("alpaca")
def alpaca(row: dict) -> dict:
    instruction = _text(row, "instruction", required=False) or ""
    inp = _text(row, "input", required=False) or ""
    query = f"{instruction}\n{inp}" if instruction and inp else instruction or inp
    if not query:
        raise RowError("instruction", "empty instruction and input")
    response = (
        _text(row, "output", required="output" in row or "response" not in row)
        if "output" in row
        else (_text(row, "response"))
    )
    system = _text(row, _first(row, SYSTEM_ALIASES) or "system", required=False)
    return _extras(
        row,
        {"messages": _qr_messages(system, _history(row), query, response)},
        {"instruction", "input", "output", "response"},
    )


@register_converter("query-response")
def query_response(row: dict) -> dict:
    q_key = _first(row, QUERY_ALIASES)
    r_key = _first(row, RESPONSE_ALIASES)
    if q_key is None and r_key is None:
        raise RowError("query", "no query or response column", "use --columns to map yours to query/response")
    query = _text(row, q_key) if q_key else None
    response = _text(row, r_key) if r_key else None
    system = _text(row, _first(row, SYSTEM_ALIASES) or "system", required=False)
    return _extras(row, {"messages": _qr_messages(system, _history(row), query, response)}, {q_key, r_key})


@register_converter("preference")
def preference(row: dict) -> dict:
    """{"prompt", "chosen", "rejected"} (strings, or message lists as trl writes them)."""
    chosen, rejected = row.get("chosen"), row.get("rejected")
    prompt = row.get("prompt") or row.get("query") or row.get("question")
    if prompt is None and row.get("instruction"):  # LLaMA-Factory's alpaca ranking rows: instruction (+ input)
        prompt = "\n".join(x for x in (row["instruction"], row.get("input")) if x)
    if isinstance(chosen, list):  # conversational preference rows
        msgs = (normalize_messages(prompt) if isinstance(prompt, list) else []) + normalize_messages(chosen)
        rej = normalize_messages(rejected) if isinstance(rejected, list) else []
        rej_text = rej[-1]["content"] if rej else None
    else:
        msgs = _qr_messages(_text(row, "system", required=False), _history(row), prompt, _text(row, "chosen"))
        rej_text = _text(row, "rejected")
    if rej_text is None:
        raise RowError("rejected", "missing or null", "preference rows need a rejected answer")
    return _extras(
        row,
        {"messages": msgs, "rejected_response": rej_text},
        {"prompt", "query", "question", "instruction", "input", "chosen", "rejected"},
    )


@register_converter("text")
def text(row: dict) -> dict:
    return _extras(row, {"messages": [{"role": "assistant", "content": _text(row, "text")}]}, {"text"})


def _tool_calls(content: str) -> list[dict]:
    """A tool_call / function_call turn's calls: one JSON {"name", "arguments"}, or a JSON list of them
    (LLaMA-Factory's parallel calls)."""
    try:
        call = json.loads(content) if isinstance(content, str) else content
    except json.JSONDecodeError:
        raise RowError("content", 'a tool_call turn must hold JSON {"name", "arguments"}')
    return [{"type": "function", "function": c} for c in (call if isinstance(call, list) else [call])]


def _openai_tools(tools: Any) -> Any:
    """LLaMA-Factory's bare {"name", "description", "parameters"} tools as OpenAI {"type": "function", ...}."""
    if not isinstance(tools, list):
        return tools
    bare = [isinstance(t, dict) and "name" in t and "function" not in t and "type" not in t for t in tools]
    return [{"type": "function", "function": t} if b else t for t, b in zip(tools, bare)]


def normalize_messages(turns: Any, field: str = "messages") -> list[dict]:
    """OpenAI/sharegpt turns -> [{"role", "content", ...}] with roles user/assistant/system/tool."""
    if not isinstance(turns, list) or not turns:
        raise RowError(field, "empty conversation" if isinstance(turns, list) or turns is None else "not a list")
    out: list[dict] = []
    for k, turn in enumerate(turns):
        where = f"{field}[{k}]"
        if not isinstance(turn, dict):
            raise RowError(where, f"expected an object, got {type(turn).__name__}")
        if "role" not in turn and "from" not in turn and "content" not in turn and "value" not in turn:
            # sharegpt pairs: {"human": q, "assistant": a}
            for role in ("system", "human", "user", "assistant", "gpt"):
                if turn.get(role) is not None:
                    out.append({"role": ROLE_MAP[role], "content": turn[role]})
            continue
        raw_role = turn.get("role", turn.get("from"))
        role = ROLE_MAP.get(str(raw_role).lower()) if raw_role is not None else None
        if role is None:
            raise RowError(f"{where}.role", f"unknown role {raw_role!r}", "use user, assistant, system or tool")
        content = turn.get("content", turn.get("value"))
        msg = {k2: v for k2, v in turn.items() if k2 not in ("from", "value") and v is not None}
        msg["role"] = role
        if content is None and role == "assistant" and turn.get("tool_calls"):
            content = ""
        if content is None:
            raise RowError(f"{where}.content", "null content")
        if isinstance(content, list):  # OpenAI content parts: text, with a tag where each media part was
            content, media = parts_to_text(content)
            if media:
                msg["_media"] = media  # moved into the row's media columns (multimodal/media.normalize_row)
        if not isinstance(content, str):
            raise RowError(f"{where}.content", f"expected text, got {type(content).__name__}")
        msg["content"] = content
        if role == "tool_call":  # ms-swift style: fold into an assistant turn with tool_calls
            if out and out[-1]["role"] == "assistant" and out[-1].get("tool_calls") is not None:
                out[-1]["tool_calls"].extend(_tool_calls(content))
            else:
                out.append({"role": "assistant", "content": "", "tool_calls": _tool_calls(content)})
            continue
        out.append(msg)
    return out


def _conversation(row: dict) -> dict:
    conv_key = next(k for k in CONVERSATION_KEYS if k in row)
    msgs = normalize_messages(row.get(conv_key), conv_key)
    system = _text(row, _first(row, SYSTEM_ALIASES) or "system", required=False)
    if system and msgs[0]["role"] != "system":
        msgs.insert(0, {"role": "system", "content": system})
    for key in ("tools",):
        if isinstance(row.get(key), str):
            try:
                row = {**row, key: json.loads(row[key])}
            except json.JSONDecodeError:
                raise RowError(key, "not valid JSON", "tools is a JSON list of OpenAI tool definitions")
    if row.get("tools") is not None:
        row = {**row, "tools": _openai_tools(row["tools"])}
    if row.get("tools") is not None or any(m.get("tool_calls") or m["role"] == "tool" for m in msgs):
        from lmforge.agent.schema import messages_problem

        found = messages_problem(msgs, row.get("tools"), conv_key)
        if found:
            raise RowError(*found)
    return _extras(row, {"messages": msgs}, set(CONVERSATION_KEYS))


register_converter("messages")(_conversation)
register_converter("sharegpt")(_conversation)
