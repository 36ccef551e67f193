"""Tools in chat requests: `tools` and `tool_choice` checked and planned, and answers split into `content`,
`reasoning_content` and `tool_calls` (whole, or as streamed deltas). The markup itself is the family's
`lmforge.agent.parsers` entry; this module only maps it to the OpenAI shapes.

tool_choice: `none` renders no tools and parses nothing; `auto` renders them and parses calls; `required` and a
named function prefill the family's call opening (`<tool_call>` ...) so the model's answer is a call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lmforge.agent.parsers import StreamSplitter, ToolParser
from lmforge.agent.schema import tools_problem
from lmforge.infer.frontend import ThinkingRouter, assistant_message
from lmforge.serve.state import err

if TYPE_CHECKING:
    from fastapi.responses import JSONResponse

    from lmforge.serve.protocol import ChatRequest


@dataclass(frozen=True)
class ToolPlan:
    tools: list | None  # what the chat template renders
    parser: ToolParser | None  # None: answers are never read as calls
    prefix: str = ""  # prefilled call opening (tool_choice required / named)
    parallel: bool = True  # False: at most one call per answer

    def message(self, text: str) -> tuple[dict[str, Any], bool]:
        """An answer as the OpenAI message, and whether it is a tool call."""
        return assistant_message(text, self.parser, self.prefix, self.parallel)

    def streamer(self) -> ChoiceStream:
        return ChoiceStream(self)


class ChoiceStream:
    """One streamed choice: text deltas -> `delta` dicts (reasoning, content held where markup starts, calls)."""

    def __init__(self, plan: ToolPlan):
        self.plan = plan
        self.thinking = ThinkingRouter()
        self.splitter = StreamSplitter(plan.parser) if plan.parser else None
        if self.splitter and plan.prefix:
            self.splitter.feed(plan.prefix)
        self.called = False

    def deltas(self, text: str) -> list[dict[str, Any]]:
        out = []
        for piece, field in self.thinking.route(text):
            if field == "content" and self.splitter is not None:
                piece = self.splitter.feed(piece)
            if piece:
                out.append({field: piece})
        return out

    def finish(self) -> list[dict[str, Any]]:
        """The held text: calls (one delta each, complete), or content when it was not valid markup."""
        if self.splitter is None:
            return []
        content, calls = self.splitter.finish()
        calls = calls if self.plan.parallel else calls[:1]
        self.called = bool(calls)
        out = [{"content": content}] if content else []
        return out + [{"tool_calls": [c.openai(index=k)]} for k, c in enumerate(calls)]


def plan_tools(body: ChatRequest, parser: ToolParser) -> ToolPlan | JSONResponse:
    """The request's tools and tool_choice, checked (400 naming the param) and planned."""
    tools, choice = body.tools, body.tool_choice
    if tools is not None:
        problem = tools_problem(tools)
        if problem:
            return err(400, f"{problem[0]}: {problem[1]}", param=problem[0])
    names = [t.get("function", t)["name"] for t in tools or []]
    parallel = body.parallel_tool_calls is not False
    if choice in (None, "auto"):
        return ToolPlan(tools, parser if tools else None, parallel=parallel)
    if choice == "none":
        return ToolPlan(None, None)
    if not tools:
        return err(400, "tool_choice: needs tools to choose from", param="tool_choice")
    if choice == "required":
        return ToolPlan(tools, parser, parser.forced_prefix(None), parallel)
    name = ((choice.get("function") or {}).get("name")) if isinstance(choice, dict) else None
    if not isinstance(choice, dict) or choice.get("type") != "function" or not isinstance(name, str):
        return err(
            400,
            'tool_choice: "none", "auto", "required" or {"type": "function", "function": {"name": ...}}',
            param="tool_choice",
        )
    if name not in names:
        return err(400, f"tool_choice: unknown function {name!r}; tools: {', '.join(names)}", param="tool_choice")
    return ToolPlan(tools, parser, parser.forced_prefix(name), parallel)
