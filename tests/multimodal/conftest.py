"""Tiny random vision-language models built from configs, saved as a hub folder looks (preprocessor_config.json
naming Qwen2VLImageProcessor, processor_config.json naming the stock processor, the published chat template), with
the real Qwen tokenizer; images drawn with PIL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import qwen_tokenizer_dir

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "yellow": (230, 220, 30)}
SMALL = 28 * 28 * 4  # min_pixels/max_pixels of the tests: every image is 2x2 patches, 1 token


def vl_template() -> str:
    from lmforge.templates import JINJA_DIR

    return (JINJA_DIR / "qwen2_vl.jinja").read_text(encoding="utf-8")


def draw(path: Path, colour: str, size: tuple[int, int] = (56, 56), shape: str = "square", seed: int = 0) -> Path:
    """A coloured shape on a grey background."""
    import random

    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    img = Image.new("RGB", size, (128, 128, 128))
    d = ImageDraw.Draw(img)
    w, h = size
    x0, y0 = rng.randint(0, w // 4), rng.randint(0, h // 4)
    box = (x0, y0, x0 + w // 2 + rng.randint(0, w // 4), y0 + h // 2 + rng.randint(0, h // 4))
    (d.ellipse if shape == "circle" else d.rectangle)(box, fill=COLOURS[colour])
    img.save(path)
    return path


def _save_hub_like(model, d: Path, processor_class: str, image_processor) -> None:
    from transformers import AutoTokenizer

    model.save_pretrained(d)
    tok = AutoTokenizer.from_pretrained(qwen_tokenizer_dir())
    tok.chat_template = vl_template()
    tok.save_pretrained(d)
    image_processor.save_pretrained(d)
    cfg = json.loads((d / "preprocessor_config.json").read_text())
    cfg["image_processor_type"], cfg["processor_class"] = "Qwen2VLImageProcessor", processor_class
    (d / "preprocessor_config.json").write_text(json.dumps(cfg))
    (d / "processor_config.json").write_text(json.dumps({"processor_class": processor_class}))


def build_qwen2_5_vl(d: Path, seed: int = 0) -> Path:
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    torch.manual_seed(seed)
    text = dict(
        vocab_size=151936,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]},
        tie_word_embeddings=True,
        max_position_embeddings=2048,
        # wider embeddings than the default 0.02: a 64-wide model can then put a clear margin on one of 151k tokens
        initializer_range=0.1,
    )
    vision = dict(
        depth=2,
        hidden_size=32,
        intermediate_size=64,
        num_heads=2,
        out_hidden_size=64,
        window_size=56,
        fullatt_block_indexes=[1],
    )
    cfg = Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=151655,
        video_token_id=151656,
        vision_start_token_id=151652,
        bos_token_id=151643,
        eos_token_id=151645,
        pad_token_id=151643,
        tie_word_embeddings=True,
    )
    _save_hub_like(
        Qwen2_5_VLForConditionalGeneration(cfg),
        d,
        "Qwen2_5_VLProcessor",
        Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=28 * 28 * 64),
    )
    return d


def build_qwen2_vl(d: Path, seed: int = 0) -> Path:
    import torch
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    torch.manual_seed(seed)
    cfg = Qwen2VLConfig(
        text_config=dict(
            vocab_size=151936,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]},
            tie_word_embeddings=True,
        ),
        vision_config=dict(depth=2, embed_dim=32, hidden_size=64, num_heads=2, mlp_ratio=2),
        image_token_id=151655,
        video_token_id=151656,
        vision_start_token_id=151652,
        bos_token_id=151643,
        eos_token_id=151645,
        pad_token_id=151643,
        tie_word_embeddings=True,
    )
    _save_hub_like(
        Qwen2VLForConditionalGeneration(cfg),
        d,
        "Qwen2VLProcessor",
        Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=28 * 28 * 64),
    )
    return d


@pytest.fixture(scope="session")
def tiny_qwen2_5_vl(tmp_path_factory) -> Path:
    return build_qwen2_5_vl(tmp_path_factory.mktemp("tiny-qwen2_5_vl"))


@pytest.fixture(scope="session")
def tiny_qwen2_vl(tmp_path_factory) -> Path:
    return build_qwen2_vl(tmp_path_factory.mktemp("tiny-qwen2_vl"))
