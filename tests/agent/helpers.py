"""Synthetic single-tool conversations: each row declares one tool, the user asks, the assistant calls it with
arguments taken from the question, the tool answers and the assistant reports."""

from __future__ import annotations

import json
import random
from pathlib import Path

TOOLS = {
    "get_weather": ({"city": {"type": "string"}}, "What is the weather in {city}?", "It is {v} in {city}."),
    "get_time": ({"city": {"type": "string"}}, "What time is it in {city}?", "It is {v} in {city}."),
    "get_population": ({"city": {"type": "string"}}, "How many people live in {city}?", "{city} has {v} people."),
}
CITIES = ["Paris", "Rome", "Tokyo", "Lima", "Oslo", "Cairo", "Delhi", "Quito", "Dakar", "Hanoi", "Accra", "Sofia"]
HELD_OUT = ["Berlin", "Madrid", "Nairobi", "Seoul", "Vienna", "Dublin", "Lisbon", "Prague"]


def tool_def(name: str) -> dict:
    props = TOOLS[name][0]
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": name.replace("_", " "),
            "parameters": {"type": "object", "properties": props, "required": list(props)},
        },
    }


def tool_row(name: str, city: str, rng: random.Random, *, with_answer: bool = True) -> dict:
    _, question, answer = TOOLS[name]
    value = str(rng.choice(["sunny", "rainy", "10:00", "12:30", "2 million", "900 thousand"]))
    call = {"type": "function", "function": {"name": name, "arguments": json.dumps({"city": city})}}
    msgs = [
        {"role": "user", "content": question.format(city=city)},
        {"role": "assistant", "content": "", "tool_calls": [call]},
    ]
    if with_answer:
        msgs += [
            {"role": "tool", "content": json.dumps({"result": value})},
            {"role": "assistant", "content": answer.format(city=city, v=value)},
        ]
    return {"tools": [tool_def(name)], "messages": msgs}


def write_tool_data(path: Path, cities: list[str], *, seed: int = 0, with_answer: bool = True) -> Path:
    rng = random.Random(seed)
    rows = [tool_row(name, city, rng, with_answer=with_answer) for city in cities for name in TOOLS]
    rng.shuffle(rows)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path
