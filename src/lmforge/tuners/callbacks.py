"""Training-time tuners that are a callback: LISA (layerwise importance sampling; full training only)."""

from __future__ import annotations

import random
from typing import Any

from transformers import TrainerCallback


class LISA(TrainerCallback):
    """Train `k` randomly chosen decoder layers at a time (plus embeddings and head), re-drawn every `interval`
    steps. AdamW skips parameters whose grad is None, so frozen layers cost no optimizer work."""

    def __init__(self, k: int, interval: int, seed: int = 42):
        self.k, self.interval, self.rng = k, interval, random.Random(seed)
        self.active: set[int] = set()

    def _layers(self, model: Any) -> Any:
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        return base.model.layers

    def resample(self, model: Any) -> None:
        layers = self._layers(model)
        self.active = set(self.rng.sample(range(len(layers)), min(self.k, len(layers))))
        for i, layer in enumerate(layers):
            for p in layer.parameters():
                p.requires_grad_(i in self.active)
                if i not in self.active:
                    p.grad = None

    def on_train_begin(self, args, state, control, model=None, **kw):  # noqa: ANN001
        self.resample(model)

    def on_step_begin(self, args, state, control, model=None, **kw):  # noqa: ANN001
        if state.global_step and state.global_step % self.interval == 0:
            self.resample(model)
