"""Every trl import lives here. CPO (also SimPO), ORPO and GKD are in `trl.experimental` since trl 1.x; PPO is gone
from trl (lmforge.train.ppo implements it). Checked against trl 1.16."""

from __future__ import annotations

import importlib
from typing import Any

# method -> (module, config class, trainer class)
_TRAINERS = {
    "dpo": ("trl", "DPOConfig", "DPOTrainer"),
    "kto": ("trl", "KTOConfig", "KTOTrainer"),
    "cpo": ("trl.experimental.cpo", "CPOConfig", "CPOTrainer"),
    "orpo": ("trl.experimental.orpo", "ORPOConfig", "ORPOTrainer"),
    "rm": ("trl", "RewardConfig", "RewardTrainer"),
    "grpo": ("trl", "GRPOConfig", "GRPOTrainer"),
    "gkd": ("trl.experimental.gkd", "GKDConfig", "GKDTrainer"),
}


def trainer_classes(name: str) -> tuple[Any, Any]:
    """(ConfigClass, TrainerClass) for a key of the table above."""
    module, config, trainer = _TRAINERS[name]
    mod = importlib.import_module(module)
    return getattr(mod, config), getattr(mod, trainer)
