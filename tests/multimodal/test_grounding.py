"""Grounding rows (ms-swift's `objects` + `<ref-object>` / `<bbox>` tags) in each family's own convention: Qwen2-VL
on the 0-1000 scale, Qwen2.5-VL in pixels of the resized image; the box in the answer is trained."""

from __future__ import annotations

import pytest

from tests.multimodal.conftest import draw

MSGS = [
    {"role": "user", "content": "<image>Where is the <ref-object>?"},
    {"role": "assistant", "content": "<bbox>"},
]


@pytest.mark.parametrize("fixture", ["tiny_qwen2_vl", "tiny_qwen2_5_vl"])
def test_boxes_are_rendered_in_the_family_convention(fixture, request, tmp_path):
    from lmforge.args import ModelArgs, TemplateArgs
    from lmforge.models.setup import setup_tokenizer
    from lmforge.templates.encode import IGNORE

    px = 28 * 28 * 8
    setup = setup_tokenizer(
        ModelArgs(model=str(request.getfixturevalue(fixture))), TemplateArgs(max_pixels=px, min_pixels=px)
    )
    tpl, tok = setup.template, setup.tokenizer
    img = str(draw(tmp_path / "wide.png", "red", (200, 100)))
    w, h = tpl.resized(tpl.process_media([img]))[0]
    want = f"({round(w / 4)},{round(h / 4)}),({round(w * 0.75)},{round(h * 0.75)})"  # Qwen2.5-VL: resized pixels
    if fixture == "tiny_qwen2_vl":
        want = "(250,250),(750,750)"  # the 0-1000 scale
    for objects in (
        {"ref": ["square"], "bbox": [[50, 25, 150, 75]]},  # bbox_type real: pixels of the original 200x100
        {"ref": ["square"], "bbox": [[0.25, 0.25, 0.75, 0.75]], "bbox_type": "norm1"},
        [{"caption": "square", "bbox": [50, 25, 150, 75], "bbox_type": "real", "image": 0}],  # ms-swift 2.x list
    ):
        enc = tpl.encode(MSGS, media={"images": [img], "objects": objects})
        text = tok.decode(enc.input_ids)
        assert "Where is the <|object_ref_start|>square<|object_ref_end|>?" in text
        trained = tok.decode([t for t, lab in zip(enc.input_ids, enc.labels) if lab != IGNORE])
        assert trained.startswith(f"<|box_start|>{want}<|box_end|>"), trained


def test_malformed_grounding_rows_are_one_line(tiny_qwen2_5_vl, tmp_path):
    from lmforge.args import ModelArgs, TemplateArgs
    from lmforge.models.setup import setup_tokenizer
    from lmforge.templates.encode import EncodeError

    tpl = setup_tokenizer(ModelArgs(model=str(tiny_qwen2_5_vl)), TemplateArgs(max_pixels=3136)).template
    img = str(draw(tmp_path / "sq.png", "blue", (100, 100)))
    two = [MSGS[0], {"role": "assistant", "content": "<bbox> and <bbox>"}]
    cases = [
        (two, {"ref": ["a"], "bbox": [[1, 2, 3, 4]]}, "messages: 2 <bbox> tags but 1 bbox"),
        (MSGS, {"ref": ["a"], "bbox": [[1, 2, 3]]}, "objects.bbox[0]: expected [x1, y1, x2, y2] or [x, y] numbers"),
        (MSGS, {"ref": ["a"], "bbox": [[1, 2, 300, 4]]}, "objects.bbox[0]: [1, 2, 300, 4] lies outside the image"),
        (MSGS, {"ref": ["a"], "bbox": [[1, 2, 3, 4]], "image_id": [1]}, "objects.image_id[0]: 1 is not an image"),
        (MSGS, {"ref": [], "bbox": [[1, 2, 3, 4]]}, "messages: 1 <ref-object> tags but 0 refs"),
        (MSGS, "{not json", "objects: not valid JSON"),
        (MSGS, [{"caption": "a"}], "objects[0]: expected {'caption': ..., 'bbox': [...]}"),
        (
            MSGS,
            [
                {"caption": "a", "bbox": [1, 2, 3, 4]},
                {"caption": "b", "bbox": [0.1, 0.1, 0.2, 0.2], "bbox_type": "norm1"},
            ],
            "objects: mixed bbox_type ['norm1', 'real']",
        ),  # fmt: skip
    ]
    for msgs, objects, want in cases:
        with pytest.raises(EncodeError) as exc:
            tpl.encode(msgs, media={"images": [img], "objects": objects})
        assert str(exc.value).startswith(want) and "\n" not in str(exc.value), str(exc.value)
