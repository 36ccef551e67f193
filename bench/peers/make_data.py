"""The benchmark's fixed synthetic alpaca set: 200 rows, 8 task types over 40 topics, seeded, so every tool trains
on the same bytes. Each row renders to roughly 100-250 tokens with the SmolLM2 chat template and system prompt.

Run: python bench/peers/make_data.py OUT_DIR   (writes train.jsonl, val_messages.jsonl, dataset_info.json)
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

TOPICS = [
    "coral reefs",
    "volcanoes",
    "honey bees",
    "solar panels",
    "the printing press",
    "glaciers",
    "sourdough bread",
    "electric cars",
    "the human heart",
    "tides",
    "rainforests",
    "chess openings",
    "compost",
    "lighthouses",
    "paper making",
    "the moon",
    "wind turbines",
    "octopuses",
    "tea cultivation",
    "bridges",
    "deserts",
    "vaccines",
    "bicycles",
    "recycling plastic",
    "hot air balloons",
    "earthquakes",
    "photosynthesis",
    "libraries",
    "jazz music",
    "satellites",
    "mushrooms",
    "public transport",
    "clocks",
    "penguins",
    "rivers",
    "the internet",
    "pottery",
    "migration of birds",
    "batteries",
    "city parks",
]
TASKS = [
    ("Explain {t} to a ten-year-old.", ""),
    ("Give three practical tips related to {t}.", ""),
    ("Summarize the following text.", "A short report on {t}: {fact} Experts continue to study it closely."),
    ("Write a short paragraph about {t}.", ""),
    ("Answer the question using the context.", "Context: {fact} Question: why does {t} matter?"),
    ("List the steps to learn about {t}.", ""),
    ("Rewrite this sentence in a formal tone.", "{t} are kind of cool and people like them a lot."),
    ("Compare {t} with something from everyday life.", ""),
]
WORDS = (
    "people often notice that {t} change over time and depend on many small factors working together in ways "
    "that are easy to overlook at first sight but become clear with careful observation and patient study of "
    "the details which also shows how {t} connect with weather water light energy and the habits of living "
    "things around them so learning a little each day helps anyone understand why {t} deserve attention and "
    "care from curious minds young and old"
).split()


def sentence(rng: random.Random, topic: str, n: int) -> str:
    start = rng.randrange(len(WORDS) - n) if n < len(WORDS) else 0
    words = [w.replace("{t}", topic) for w in WORDS[start : start + n]]
    return " ".join(words).capitalize() + "."


def row(rng: random.Random, i: int) -> dict:
    topic = TOPICS[i % len(TOPICS)]
    instruction, inp = TASKS[(i // len(TOPICS) + i) % len(TASKS)]
    fact = sentence(rng, topic, rng.randint(10, 18))
    n_words = rng.randint(58, 125)
    parts, left = [], n_words
    while left > 0:
        k = min(left, rng.randint(9, 18))
        parts.append(sentence(rng, topic, k))
        left -= k
    return {
        "instruction": instruction.format(t=topic),
        "input": inp.format(t=topic, fact=fact),
        "output": " ".join(parts),
    }


def main(out: Path) -> None:
    rng = random.Random(42)
    out.mkdir(parents=True, exist_ok=True)
    rows = [row(rng, i) for i in range(200)]
    (out / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    val = [[{"role": "user", "content": f"Write two sentences about the number {i}."}] for i in range(16)]
    (out / "val_messages.jsonl").write_text("".join(json.dumps({"messages": m}) + "\n" for m in val))
    info = {
        "smol_alpaca": {"file_name": "train.jsonl"},
        "smol_val": {
            "file_name": "val_messages.jsonl",
            "formatting": "sharegpt",
            "columns": {"messages": "messages"},
            "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"},
        },
    }
    (out / "dataset_info.json").write_text(json.dumps(info, indent=2))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
