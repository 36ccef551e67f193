"""Every trl import lives here. CPO (also SimPO), ORPO and GKD are in `trl.experimental` since trl 1.x; PPO is gone
from trl (lmforge.train.ppo implements it)."""

from __future__ import annotations

from typing import Any


def trainer_classes(rlhf_type: str) -> tuple[Any, Any]:
    """(ConfigClass, TrainerClass) for an rlhf type."""
    if rlhf_type == "dpo":
        from trl import DPOConfig, DPOTrainer

        return DPOConfig, DPOTrainer
    if rlhf_type == "kto":
        from trl import KTOConfig, KTOTrainer

        return KTOConfig, KTOTrainer
    if rlhf_type in ("cpo", "simpo"):
        from trl.experimental.cpo import CPOConfig, CPOTrainer

        return CPOConfig, CPOTrainer
    if rlhf_type == "orpo":
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

        return ORPOConfig, ORPOTrainer
    if rlhf_type == "rm":
        from trl import RewardConfig, RewardTrainer

        return RewardConfig, RewardTrainer
    if rlhf_type == "grpo":
        from trl import GRPOConfig, GRPOTrainer

        return GRPOConfig, GRPOTrainer
    if rlhf_type == "gkd":
        from trl.experimental.gkd import GKDConfig, GKDTrainer

        return GKDConfig, GKDTrainer
    raise KeyError(rlhf_type)
