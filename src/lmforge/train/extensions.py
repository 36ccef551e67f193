"""What plug-ins add to a training job (torch-free tables; lmforge.plugins exports their register functions).

- LOSSES: `--loss_type NAME` in sft/pt: `fn(outputs, labels, num_items_in_batch=None) -> loss`, transformers'
  `compute_loss_func` contract (labels unshifted, as the model got them).
- CALLBACKS: `--callbacks NAME ...`: a transformers TrainerCallback class (or factory), instantiated per run.
- OPTIMIZERS: `--optimizer NAME`: `fn(model, lr=..., weight_decay=...) -> torch.optim.Optimizer`.
- TRAINERS: `--trainer NAME` in sft/pt: a subclass of lmforge.train.trainer.LmforgeTrainer.
"""

from __future__ import annotations

from lmforge.registry import Registry

LOSSES: Registry = Registry("loss", "--loss_type")
CALLBACKS: Registry = Registry("callback", "--callbacks")
OPTIMIZERS: Registry = Registry("optimizer", "--optimizer")
TRAINERS: Registry = Registry("trainer", "--trainer")
