"""The LoRA checkpoint every export test starts from (trained once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.infer.helpers import train_calculator_lora


@pytest.fixture(scope="session")
def lora_ckpt(tmp_path_factory, tiny_llama) -> Path:
    return train_calculator_lora(tmp_path_factory.mktemp("lora"), tiny_llama)
