"""Sentence embeddings from hidden states: the last real token, the mean over real tokens or the first token,
then L2-normalised (sentence-transformers' `lasttoken`/`mean`/`cls` Pooling + Normalize, which embedding training
uses). Without --pooling the model family decides (FAMILY_POOLING)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

POOLING_MODES = {"last": "lasttoken", "mean": "mean", "cls": "cls"}  # --pooling -> sentence-transformers' mode

# config.json model_type -> pooling, as ms-swift's embedding models read them: decoder LLMs (Qwen3-Embedding,
# gte-Qwen2, gme-Qwen2-VL) the last token, which has seen the whole text; BERT-style encoders (gte-modernbert) the
# first ([CLS]) token. A family not listed is a causal LM: the last token.
FAMILY_POOLING = {
    **dict.fromkeys(("qwen2", "qwen3", "qwen3_moe", "qwen2_vl", "qwen2_5_vl", "qwen3_vl"), "last"),
    **dict.fromkeys(("llama", "mistral", "gemma", "gemma2", "gemma3_text", "phi3", "internlm2"), "last"),
    **dict.fromkeys(("bert", "roberta", "xlm-roberta", "modernbert", "new"), "cls"),
}
DEFAULT_POOLING = "last"


def pooling_for(model_dir: Path, flag: str | None = None) -> str:
    """--pooling when given, else the pooling of the model's family (its config.json model_type)."""
    if flag:
        return flag
    try:
        model_type = json.loads((Path(model_dir) / "config.json").read_text()).get("model_type")
    except (OSError, ValueError):
        model_type = None
    return FAMILY_POOLING.get(model_type or "", DEFAULT_POOLING)


def pool(hidden: Any, mask: Any, mode: str = "last") -> Any:
    """(batch, seq, dim) hidden states and the attention mask -> (batch, dim) unit vectors; works with left or
    right padding (the last real token is the last position whose mask is 1, the first the first such)."""
    import torch

    m = mask.to(hidden.dtype)
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    if mode == "cls":
        vec = hidden[rows, mask.long().argmax(1)].float()
    elif mode == "mean":
        summed = (hidden.float() * m.unsqueeze(-1).float()).sum(1)
        vec = summed / m.float().sum(1, keepdim=True).clamp(min=1e-9)
    else:
        positions = torch.arange(mask.shape[1], device=mask.device)
        last = (mask.long() * positions).argmax(1)
        vec = hidden[rows, last].float()
    return torch.nn.functional.normalize(vec, dim=-1)
