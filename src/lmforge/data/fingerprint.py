"""The fingerprint of the encoding step, computed cheaply.

`datasets` names a map's cache file after a hash of everything the map function holds. For our encoder that is
the ChatTemplate and so the tokenizer, whose Python copies of the vocabulary and merges (the inputs its Rust
tokenizer was built from, 150k entries each for Qwen3) went through dill item by item: about 4.8 s per sft run on a
tiny model. Here the same state is hashed without those copies (the Rust tokenizer, which is what encodes, is hashed
whole: its vocabulary, merges, added tokens, normalizer, pre- and post-processor), other large containers as one
JSON string, so the cache key still covers the tokenizer, the chat template, --system, --max_length, the loss scale
and every other attribute of the template: changing any of them encodes afresh."""

from __future__ import annotations

import json
import sys
from typing import Any

import lmforge

BIG = 1000  # containers longer than this are hashed as one JSON string
CONTAINERS = (
    ("transformers.tokenization_utils_base", "PreTrainedTokenizerBase"),
    ("transformers.processing_utils", "ProcessorMixin"),
)
BACKEND_INPUTS = ("_vocab", "_merges")  # what a transformers tokenizer built its Rust `_tokenizer` from


def encode_fingerprint(ds: Any, template: Any, stage: str) -> str | None:
    """The fingerprint of `ds` encoded with `template` for `stage` (None: let `datasets` compute its own)."""
    base = getattr(ds, "_fingerprint", None)
    if not base:
        return None
    from datasets.fingerprint import Hasher

    h = Hasher()
    for part in (base, "lmforge.encode_rows", lmforge.__version__, stage, _state(template)):
        h.update(part)
    return h.hexdigest()


def _state(obj: Any) -> Any:
    """What decides how `obj` encodes, with tokenizers (also inside processors) taken apart cheaply."""
    if isinstance(obj, _taken_apart()):
        skip = {"cache"} | (set(BACKEND_INPUTS) if _has_backend(obj) else set())  # `datasets` leaves out cache too
        state = {k: v for k, v in vars(obj).items() if k not in skip}
        return (_class_path(obj), {k: _state(v) for k, v in sorted(state.items())})
    if isinstance(obj, dict | list | tuple) and len(obj) > BIG:
        try:
            return json.dumps(obj, ensure_ascii=False)
        except (TypeError, ValueError):  # tuple keys, objects: `datasets` hashes it as it is (slow, still right)
            return obj
    return obj


def _has_backend(obj: Any) -> bool:
    from tokenizers import Tokenizer

    return isinstance(getattr(obj, "_tokenizer", None), Tokenizer)


def _taken_apart() -> tuple[type, ...]:
    """Templates, tokenizers and processors: looked up where already imported (importing transformers' processing
    module for the check alone costs seconds; an object of a class not yet imported cannot exist)."""
    from lmforge.templates.encode import ChatTemplate

    found = (getattr(sys.modules.get(m), c, None) for m, c in CONTAINERS)
    return (ChatTemplate, *(c for c in found if isinstance(c, type)))


def _class_path(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"
