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


@pytest.mark.parametrize("fixture", ["tiny_qwen2_5_vl", "tiny_qwen2_vl"])
def test_token_exact_with_the_processor(fixture, request, tmp_path):
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
    for row in _rows(tmp_path):
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
    assert n_images == 30
