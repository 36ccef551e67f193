"""Token-exact: lmforge's encoding of rows with 0-3 images equals the processor's own apply_chat_template + processor
output (input_ids, pixel_values, image_grid_thw), and media tokens never carry loss."""

from __future__ import annotations

import random

import pytest

from tests.multimodal.conftest import COLOURS, draw, vl_template

QUESTIONS = ["What colour is this?", "Describe the picture.", "Which is bigger?", "Name the shape.", "Count them."]


def _rows(tmp_path, n: int = 20) -> list[dict]:
    rng = random.Random(0)
    rows = []
    for i in range(n):
        k = i % 4  # 0-3 images
        paths = []
        for j in range(k):
            size = (rng.choice([40, 56, 80, 120]), rng.choice([40, 64, 90]))
            paths.append(str(draw(tmp_path / f"{i}-{j}.png", rng.choice(list(COLOURS)), size, seed=i * 7 + j)))
        user = "".join("<image>" for _ in paths) + rng.choice(QUESTIONS)
        msgs = [{"role": "user", "content": user}, {"role": "assistant", "content": f"Answer {i}."}]
        if i % 5 == 3:  # multi-turn with a system prompt and an image in the second turn too
            msgs = [{"role": "system", "content": "Be brief."}, *msgs, {"role": "user", "content": "And now?"}]
            msgs.append({"role": "assistant", "content": "Still."})
        rows.append({"messages": msgs, "images": paths})
    return rows


def _structured(messages: list[dict], images: list[str]) -> list[dict]:
    """ms-swift's `<image>` tags -> the content blocks the processor's template takes."""
    it = iter(images)
    out = []
    for m in messages:
        pieces = m["content"].split("<image>")
        blocks = [{"type": "image", "path": next(it)} for _ in pieces[1:]]
        content = blocks + ([{"type": "text", "text": pieces[-1]}] if pieces[-1] else [])
        out.append({"role": m["role"], "content": content})
    return out


@pytest.mark.parametrize("fixture,n_rows", [("tiny_qwen2_5_vl", 20), ("tiny_qwen2_vl", 8)])
def test_token_exact_with_the_processor(fixture, n_rows, request, tmp_path):
    import torch

    from lmforge.args import ModelArgs, TemplateArgs
    from lmforge.models.setup import setup_tokenizer
    from lmforge.templates.encode import IGNORE
    from lmforge.thirdparty import stock_vl_processor

    model_dir = request.getfixturevalue(fixture)
    setup = setup_tokenizer(ModelArgs(model=str(model_dir)), TemplateArgs(max_pixels=28 * 28 * 16, min_pixels=56 * 56))
    tpl = setup.template
    assert tpl.pixels == {"min_pixels": 56 * 56, "max_pixels": 28 * 28 * 16}
    proc = stock_vl_processor(tpl.family, tpl.image_processor, setup.tokenizer, vl_template())
    n_images = 0
    for row in _rows(tmp_path, n_rows):
        enc = tpl.encode(row["messages"], media={"images": row["images"]})
        ref = proc.apply_chat_template(_structured(row["messages"], row["images"]), tokenize=True, return_dict=True)
        assert enc.input_ids == list(
            ref["input_ids"][0] if hasattr(ref["input_ids"][0], "__len__") else ref["input_ids"]
        )
        media = {tpl.image_token_id, tpl.video_token_id}
        assert all(lab == IGNORE for t, lab in zip(enc.input_ids, enc.labels) if t in media)
        assert any(lab != IGNORE for lab in enc.labels)
        if row["images"]:
            mine = tpl.process_images(row["images"])
            assert torch.equal(mine["image_grid_thw"], torch.as_tensor(ref["image_grid_thw"]))
            assert torch.allclose(mine["pixel_values"], torch.as_tensor(ref["pixel_values"]))
            assert sum(t == tpl.image_token_id for t in enc.input_ids) == int(
                mine["image_grid_thw"].prod(-1).sum() // 4
            )
            n_images += len(row["images"])
    assert n_images == {20: 30, 8: 12}[n_rows]


def test_qwen3_vl_encodes_as_its_processor_and_trains(tiny_qwen3_vl, tmp_path):
    """Qwen3-VL (patch 16, the folder's own template): ids equal the processor's, and a media batch trains."""
    import json

    from PIL import Image
    from transformers import Qwen3VLForConditionalGeneration

    from lmforge.args import ModelArgs, TemplateArgs
    from lmforge.models.setup import setup_tokenizer
    from lmforge.thirdparty import stock_vl_processor
    from lmforge.train.media import MediaCollator

    setup = setup_tokenizer(ModelArgs(model=str(tiny_qwen3_vl)), TemplateArgs())
    tpl = setup.template
    assert tpl.family.name == "qwen3_vl" and setup.template_name == "auto"
    imgs = [str(draw(tmp_path / f"{k}.png", c, (64 + 32 * k, 64))) for k, c in enumerate(["red", "blue"])]
    msgs = [{"role": "user", "content": "<image>and<image>: colours?"}, {"role": "assistant", "content": "Red, blue."}]
    enc = tpl.encode(msgs, media={"images": imgs})
    proc = stock_vl_processor(tpl.family, tpl.image_processor, setup.tokenizer, tpl.jinja)
    placeholder = "<|vision_start|><|image_pad|><|vision_end|>"
    text = tpl.render(
        tpl.with_system([{**msgs[0], "content": msgs[0]["content"].replace("<image>", placeholder)}, msgs[1]])
    )
    ref = proc(text=[text], images=[Image.open(p).convert("RGB") for p in imgs])
    assert enc.input_ids == list(ref["input_ids"][0])
    batch = MediaCollator(tpl, setup.tokenizer.pad_token_id)(
        [{"input_ids": enc.input_ids, "labels": enc.labels, "media": json.dumps({"images": imgs})}]
    )
    assert batch["image_grid_thw"].tolist() == ref["image_grid_thw"].tolist()
    model = Qwen3VLForConditionalGeneration.from_pretrained(tiny_qwen3_vl)
    loss = model(**batch).loss
    loss.backward()
    assert loss.item() > 0 and model.model.visual.patch_embed.proj.weight.grad is not None
