"""A non-Qwen family from its registry entry alone (multimodal/families.py `llava`): a llava-hf style folder encodes
token-exact with the stock LlavaProcessor, `lmforge sft` trains a step (LoRA on the language model only, the CLIP
tower and the projector frozen) and `lmforge infer` answers exactly as transformers' own generate on the
processor's inputs."""

from __future__ import annotations

import json

from tests.multimodal.conftest import COLOURS, draw


def _rows(tmp_path) -> list[dict]:
    rows = []
    for i in range(6):
        colours = [list(COLOURS)[(i + j) % 4] for j in range(i % 3)]
        paths = [str(draw(tmp_path / f"l{i}-{j}.png", c, (56 + 24 * j, 70))) for j, c in enumerate(colours)]
        user = "".join("<image>" for _ in paths) + "What colour?"
        msgs = [{"role": "user", "content": user}, {"role": "assistant", "content": "Red."}]
        rows.append({"messages": msgs, "images": paths})
    return rows


def test_llava_is_token_exact_trains_and_answers_as_transformers(tiny_llava, tmp_path, capsys):
    import torch
    from PIL import Image
    from transformers import LlavaForConditionalGeneration

    from lmforge import cli
    from lmforge.args import ModelArgs, TemplateArgs
    from lmforge.models.setup import setup_tokenizer
    from lmforge.templates.encode import IGNORE
    from lmforge.thirdparty import stock_vl_processor

    setup = setup_tokenizer(ModelArgs(model=str(tiny_llava)), TemplateArgs())
    tpl = setup.template
    assert tpl.family.name == "llava" and tpl.run_args() == {}
    proc = stock_vl_processor(
        tpl.family, tpl.image_processor, setup.tokenizer, tpl.jinja, patch_size=14,
        vision_feature_select_strategy="default", num_additional_image_tokens=1,
    )  # fmt: skip
    rows = _rows(tmp_path)
    for row in rows:
        enc = tpl.encode(row["messages"], media={"images": row["images"]})
        conv = []
        for m in row["messages"]:
            pieces = m["content"].split("<image>")
            blocks = [{"type": "image", "path": p} for p in row["images"][: len(pieces) - 1] if m["role"] == "user"]
            conv.append({"role": m["role"], "content": [*blocks, {"type": "text", "text": pieces[-1]}]})
        ref = proc.apply_chat_template(conv, tokenize=True, return_dict=True)
        assert enc.input_ids == list(ref["input_ids"][0])
        assert sum(t == tpl.image_token_id for t in enc.input_ids) == 16 * len(row["images"])  # 4x4 patches
        assert all(lab == IGNORE for t, lab in zip(enc.input_ids, enc.labels) if t == tpl.image_token_id)

    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    argv = ["sft", "--model", str(tiny_llava), "--dataset", str(train), "--max_steps", "1", "--report_to", "none",
            "--per_device_train_batch_size", "4", "--output_dir", str(out), "--torch_dtype", "float32",
            "--freeze_vit", "false", "--vit_lr", "1e-5"]  # fmt: skip
    assert cli.main([*argv, "--padding_free", "true"]) == 0, capsys.readouterr().err[-2000:]
    printed = capsys.readouterr().out
    assert "[lmforge] learning rates: 0.0001 (vit 1e-05, aligner 0.0001)" in printed
    assert "[lmforge] --padding_free: vision-language rows are trained in padded batches" in printed
    ckpt = next(out.glob("v*/checkpoint-1"))
    targets = json.loads((ckpt / "adapter_config.json").read_text())["target_modules"]
    # --freeze_vit false: LoRA on the CLIP tower too (peft saves the names as suffixes when they say the same)
    assert {"fc1", "fc2", "out_proj"} <= set(targets) or any(t.startswith("model.vision_tower.") for t in targets)
    assert not any("multi_modal_projector" in t or t.startswith("linear_") for t in targets)  # projector frozen
    assert cli.main([*argv[:-2], "--aligner_lr", "1e-3"]) == 2  # the aligner is frozen: one line, nothing loaded
    assert capsys.readouterr().err.strip() == (
        "lmforge sft: error: --aligner_lr is set but the aligner is frozen (hint: add --freeze_aligner false)"
    )

    test = tmp_path / "test.jsonl"
    test.write_text(json.dumps({"messages": rows[1]["messages"], "images": rows[1]["images"]}) + "\n")
    result = tmp_path / "res.jsonl"
    argv = ["infer", "--model", str(tiny_llava), "--val_dataset", str(test), "--max_new_tokens", "5",
            "--result_path", str(result)]  # fmt: skip
    assert cli.main(argv) == 0, capsys.readouterr().err[-2000:]
    answer = json.loads(result.read_text().splitlines()[0])["response"]

    model = LlavaForConditionalGeneration.from_pretrained(tiny_llava, dtype=torch.float32).eval()
    image = rows[1]["images"][0]
    conv = [{"role": "user", "content": [{"type": "image", "path": image}, {"type": "text", "text": "What colour?"}]}]
    inputs = proc.apply_chat_template(
        conv, tokenize=True, return_dict=True, add_generation_prompt=True, return_tensors="pt"
    )
    own = proc.image_processor(images=[Image.open(image).convert("RGB")], return_tensors="pt")
    assert torch.equal(inputs["pixel_values"], own["pixel_values"])
    ids = model.generate(**inputs, max_new_tokens=5, do_sample=False)[0, inputs["input_ids"].shape[1] :]
    assert answer == setup.tokenizer.decode(ids, skip_special_tokens=True)
