"""The encoding step's datasets cache: reused for the same template, never for a changed one (data/fingerprint.py)."""

from __future__ import annotations

import json

from lmforge.args import DataArgs
from lmforge.data import pipeline
from lmforge.data.pipeline import encode_rows, load_data
from lmforge.templates import TemplateSpec
from lmforge.templates.encode import ChatTemplate

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _encode(data, template: ChatTemplate, calls: list, cache: bool = True) -> tuple[list[list[int]], int]:
    """The input_ids, and how many rows the map function encoded (0: read back from the cache)."""
    rows = load_data(DataArgs(dataset=[str(data)], dataset_shuffle=False)).train
    before = len(calls)
    out = encode_rows(rows, template, "sft", load_from_cache_file=cache)["input_ids"]
    return out, len(calls) - before


def test_a_changed_chat_template_is_encoded_afresh(tmp_path, qwen_tok, monkeypatch):
    calls: list = []
    encode = pipeline._Encode.__call__
    monkeypatch.setattr(pipeline._Encode, "__call__", lambda self, r: calls.append(r) or encode(self, r))
    data = tmp_path / "train.jsonl"
    rows = [{"query": f"Q{i}", "response": f"answer {i}"} for i in range(4)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    jinja = tmp_path / "chat.jinja"  # the same file, edited between runs: only its contents tell them apart
    spec = TemplateSpec(jinja=str(jinja), name="custom")

    jinja.write_text(CHATML)
    first, n = _encode(data, ChatTemplate(qwen_tok, spec), calls)
    assert n == 4
    again, n = _encode(data, ChatTemplate(qwen_tok, spec), calls)
    assert (again, n) == (first, 0)  # the same template: read back from the cache, nothing encoded

    jinja.write_text(CHATML.replace("{{ m.content }}", "{{ m.content | upper }}"))
    changed, n = _encode(data, ChatTemplate(qwen_tok, spec), calls)
    fresh, _ = _encode(data, ChatTemplate(qwen_tok, spec), calls, cache=False)
    assert n == 4 and changed == fresh != first  # encoded again with the new template, not the stale cache

    system, n = _encode(data, ChatTemplate(qwen_tok, spec, system="Be brief."), calls)
    assert n == 4 and system != changed  # --system is part of the key too
