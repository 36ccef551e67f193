"""Running a classifier or an embedding model (infer and deploy): the checkpoint's task (args.json `task_type`),
its tokenizer and template, weights with adapters, and batched forwards. The text of a row is made exactly as in
training (templates/task_text.py), so served vectors and scores equal the ones training optimised."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmforge.errors import UserError

if TYPE_CHECKING:
    from lmforge.runargs import ResolvedModel


def saved_task(resolved: ResolvedModel) -> str:
    """The task a checkpoint was trained for (a merged model keeps it in its args.json)."""
    raw = resolved.saved.raw if resolved.saved is not None else {}
    return raw.get("task_type") or "causal_lm"


class TaskRunner:
    """The base model with adapters, for one task; `texts(messages_list)` renders rows as training did."""

    task = "causal_lm"
    end_token = False
    special_tokens: bool | None = None  # tokenizer's add_special_tokens; None: only for raw text (as training)

    def __init__(self, resolved: ResolvedModel, max_batch_size: int = 16):
        from lmforge.infer.loading import load_for_inference
        from lmforge.models.setup import setup_tokenizer

        raw = resolved.saved.raw if resolved.saved is not None else {}
        self.raw = raw
        tok_dir = Path(resolved.tokenizer_dir) if resolved.tokenizer_dir else None
        self.setup = setup_tokenizer(resolved.model_args, resolved.template_args, tok_dir)
        self.tokenizer = self.setup.tokenizer
        self.use_chat_template = bool(raw.get("use_chat_template", True))
        self.max_batch_size = max(1, max_batch_size)
        m = resolved.model_args
        self.model = load_for_inference(
            self.setup.model_dir,
            resolved.adapters.plain,
            dtype=m.torch_dtype or raw.get("resolved_torch_dtype") or "float32",
            device_map=m.device_map,
            trust_remote_code=m.trust_remote_code,
            attn_impl=m.attn_impl,
            task=self.task,
            head=self.head(),
        )
        if getattr(self.model.config, "pad_token_id", None) is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.model_path = str(self.setup.model_dir)
        self.add_special = self.special_tokens if self.special_tokens is not None else not self.use_chat_template

    def head(self) -> dict[str, Any]:
        return {}

    def texts(self, conversations: list[list[dict]]) -> list[str]:
        from lmforge.templates.task_text import task_text

        tmpl = self.setup.template
        return [task_text(c, tmpl, self.use_chat_template, self.end_token) for c in conversations]

    def batches(self, texts: list[str]) -> Any:
        """(batch of tokenized inputs on the model's device, its size) for each slice of `texts`."""
        import torch

        device = next(self.model.parameters()).device
        for i in range(0, len(texts), self.max_batch_size):
            chunk = texts[i : i + self.max_batch_size]
            enc = self.tokenizer(chunk, padding=True, return_tensors="pt", add_special_tokens=self.add_special)
            with torch.inference_mode():
                yield {k: v.to(device) for k, v in enc.items()}

    def id_batches(self, arrays: list[list[int]]) -> Any:
        """Token id arrays as they are (no template), padded as the tokenizer pads, in slices."""
        import torch

        device = next(self.model.parameters()).device
        for i in range(0, len(arrays), self.max_batch_size):
            enc = self.tokenizer.pad({"input_ids": arrays[i : i + self.max_batch_size]}, return_tensors="pt")
            with torch.inference_mode():
                yield {k: v.to(device) for k, v in enc.items()}

    def count_tokens(self, texts: list[str]) -> int:
        ids = self.tokenizer(texts, add_special_tokens=self.add_special)["input_ids"]
        return sum(len(x) for x in ids)


class SeqClsRunner(TaskRunner):
    task = "seq_cls"

    def head(self) -> dict[str, Any]:
        from lmforge.data.labels import spec_from_saved

        self.spec = spec_from_saved(self.raw)
        return self.spec.head_config()

    def predict(self, texts: list[str]) -> list[dict[str, Any]]:
        """Per text: `label` (a name, a list of names for multi-label, a number for regression) and `probs`."""
        import torch

        from lmforge.data.labels import MULTI, REGRESSION

        out: list[dict[str, Any]] = []
        names = self.spec.id2label
        for batch in self.batches(texts):
            logits = self.model(**batch).logits.float()
            if self.spec.problem_type == REGRESSION:
                vals = logits.tolist()
                out += [{"label": v[0] if len(v) == 1 else v, "probs": None} for v in vals]
            elif self.spec.problem_type == MULTI:
                probs = torch.sigmoid(logits).tolist()
                out += [{"label": [names[i] for i, p in enumerate(ps) if p > 0.5], "probs": ps} for ps in probs]
            else:
                probs = torch.softmax(logits, -1).tolist()
                out += [{"label": names[max(range(len(ps)), key=ps.__getitem__)], "probs": ps} for ps in probs]
        return out


class EmbeddingRunner(TaskRunner):
    task = "embedding"
    end_token = True
    special_tokens = True  # sentence-transformers tokenises with the tokenizer's defaults

    def embed(self, texts: list[str]) -> Any:
        """Normalised embeddings (numpy, float32), pooled as in training."""
        return self.embed_batches(self.batches(texts))

    def embed_ids(self, arrays: list[list[int]]) -> Any:
        """Embeddings of token id arrays given as they are (OpenAI's token input)."""
        return self.embed_batches(self.id_batches(arrays))

    def embed_batches(self, batches: Any) -> Any:
        import numpy as np

        from lmforge.models.pooling import pool

        mode = self.raw.get("pooling") or "last"
        chunks = []
        for batch in batches:
            hidden = self.model(**batch).last_hidden_state
            chunks.append(pool(hidden, batch["attention_mask"], mode).float().cpu().numpy())
        if not chunks:
            return np.zeros((0, self.model.config.hidden_size), dtype=np.float32)
        return np.concatenate(chunks).astype(np.float32)


class RerankerRunner(TaskRunner):
    task = "reranker"

    def answer_tokens(self) -> tuple[int, int] | None:
        return None

    def pair_texts(self, query: list[dict], docs: list[list[dict]]) -> list[str]:
        from lmforge.models.rerank import pair_text

        generative = self.answer_tokens() is not None
        return [pair_text(query, d, self.setup.template, self.use_chat_template, generative) for d in docs]

    def score(self, texts: list[str]) -> list[float]:
        """One relevance score per pair text (models/rerank.py), as training scored it."""
        from lmforge.models.rerank import scores

        tokens = self.answer_tokens()
        out: list[float] = []
        for batch in self.batches(texts):
            out += scores(self.model, batch, tokens).cpu().tolist()
        return out


class GenerativeRerankerRunner(RerankerRunner):
    task = "generative_reranker"

    def answer_tokens(self) -> tuple[int, int] | None:
        ids = self.raw.get("answer_token_ids") or [None, None]
        return int(ids[0]), int(ids[1])


def load_runner(resolved: ResolvedModel, max_batch_size: int = 16) -> TaskRunner:
    """The runner of the checkpoint's task (tasks.py `runner`)."""
    from lmforge.tasks import get_task, task_callable

    task = get_task(saved_task(resolved))
    if task.runner is None:
        raise UserError(f"task '{task.name}' has no runner", hint="it is served as a chat model")
    return task_callable(task.runner)(resolved, max_batch_size)
