"""`lmforge rlhf --rlhf_type dpo|kto|orpo|grpo` on rows with images: trl's vision collator runs the stock processor on
each batch (pixels and grids through the policy and the reference; GRPO's rollouts through lmforge's engine with the
pixels), LoRA on the language model only; the trl trainers without image support refuse a vision-language model in
one line before any weights load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.multimodal.conftest import draw


@pytest.fixture(autouse=True)
def _no_plots(monkeypatch):
    """The loss-curve PNGs (up to a second per run for the one- to four-point curves here) are not under test."""
    monkeypatch.setattr("lmforge.train.trainer.draw_plots", lambda run_dir: [])


def preference_rows(tmp_path) -> Path:
    rows = []
    for i, (colour, wrong) in enumerate([("red", "Blue."), ("blue", "Red."), ("green", "Yellow."), ("yellow", "Red.")]):
        img = draw(tmp_path / f"{i}.png", colour)
        q = {"role": "user", "content": "<image>What colour is the shape?"}
        rows.append({"messages": [q, {"role": "assistant", "content": f"{colour.capitalize()}."}],
                     "rejected_response": wrong, "images": [img.name]})  # fmt: skip
    rows.append(
        {
            "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}],
            "rejected_response": "Go away.",
        }
    )  # fmt: skip  (a text row in the same run)
    data = tmp_path / "pref.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return data


def test_dpo_trains_on_rows_with_images(tiny_qwen2_5_vl, tmp_path, capsys):
    from lmforge import cli

    data = preference_rows(tmp_path)
    base = ["rlhf", "--model", str(tiny_qwen2_5_vl), "--dataset", str(data), "--max_pixels", "3136",
            "--min_pixels", "3136", "--report_to", "none", "--torch_dtype", "float32"]  # fmt: skip
    out = tmp_path / "out"
    argv = [*base, "--rlhf_type", "dpo", "--max_steps", "1", "--per_device_train_batch_size", "2",
            "--output_dir", str(out), "--logging_steps", "1"]  # fmt: skip
    assert cli.main(argv) == 0, capsys.readouterr().err[-3000:]
    ckpt = next(out.glob("v*/checkpoint-1"))
    targets = json.loads((ckpt / "adapter_config.json").read_text())["target_modules"]
    assert targets and all(t.startswith("model.language_model.") for t in targets)
    saved = json.loads((ckpt / "processor_config.json").read_text())  # the stock class, as a hub folder
    assert saved == {"processor_class": "Qwen2_5_VLProcessor"}
    log = [json.loads(line) for line in (ckpt.parent / "logging.jsonl").read_text().splitlines()]
    assert any("rewards/chosen" in r or "loss" in r for r in log), log

    capsys.readouterr()
    assert cli.main([*base, "--rlhf_type", "cpo", "--output_dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (
        "lmforge rlhf: error: --rlhf_type cpo does not take vision-language models in this lmforge version "
        "(hint: use --rlhf_type dpo, kto, orpo, grpo)"
    ), err
    ppo = [*base, "--rlhf_type", "ppo", "--reward_funcs", "accuracy", "--output_dir", str(tmp_path / "p")]
    assert cli.main(ppo) == 2
    assert "--rlhf_type ppo does not take vision-language models" in capsys.readouterr().err  # never a silent drop


def test_kto_trains_on_rows_with_images(tiny_qwen2_5_vl, tmp_path, capsys):
    from lmforge import cli

    kto = []
    for i, colour in enumerate(["red", "blue", "green", "yellow"]):
        img = draw(tmp_path / f"{i}.png", colour)
        q = {"role": "user", "content": "<image>What colour is the shape?"}
        good = i % 2 == 0
        answer = colour.capitalize() if good else "Purple"
        kto.append({"messages": [q, {"role": "assistant", "content": f"{answer}."}], "label": good,
                    "images": [img.name]})  # fmt: skip
    kto.append(
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}], "label": True}
    )  # fmt: skip  (a text row in the same run)
    (tmp_path / "kto.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kto))
    out = tmp_path / "out"
    argv = ["rlhf", "--rlhf_type", "kto", "--model", str(tiny_qwen2_5_vl), "--dataset", str(tmp_path / "kto.jsonl"),
            "--max_pixels", "3136", "--min_pixels", "3136", "--report_to", "none", "--torch_dtype", "float32",
            "--max_steps", "1", "--logging_steps", "1", "--gradient_accumulation_steps", "1",
            "--per_device_train_batch_size", "4", "--output_dir", str(out)]  # fmt: skip
    assert cli.main(argv) == 0, capsys.readouterr().err[-3000:]
    ckpt = next(out.glob("v*/checkpoint-1"))
    targets = json.loads((ckpt / "adapter_config.json").read_text())["target_modules"]
    assert targets and all(t.startswith("model.language_model.") for t in targets)
    log = [json.loads(line) for line in (ckpt.parent / "logging.jsonl").read_text().splitlines()]
    assert any("loss" in r for r in log), log


def test_orpo_learns_the_preferred_answer_on_rows_with_images(tiny_qwen2_5_vl, tmp_path, capsys):
    """trl's ORPO has no image path: lmforge's own ORPO trainer (sft encoding of both sides, one batch). The log
    odds of the chosen answers rise over a few steps on the same rows."""
    from lmforge import cli

    out = tmp_path / "out"
    argv = ["rlhf", "--rlhf_type", "orpo", "--model", str(tiny_qwen2_5_vl), "--dataset",
            str(preference_rows(tmp_path)), "--max_pixels", "3136", "--min_pixels", "3136", "--report_to", "none",
            "--torch_dtype", "float32", "--max_steps", "4", "--logging_steps", "1", "--learning_rate", "5e-3",
            "--gradient_accumulation_steps", "1", "--per_device_train_batch_size", "5", "--save_steps", "4",
            "--output_dir", str(out)]  # fmt: skip
    assert cli.main(argv) == 0, capsys.readouterr().err[-3000:]
    run = next(out.glob("v*"))
    targets = json.loads((run / "checkpoint-4" / "adapter_config.json").read_text())["target_modules"]
    assert targets and all(t.startswith("model.language_model.") for t in targets)
    log = [json.loads(line) for line in (run / "logging.jsonl").read_text().splitlines()]
    odds = [r["log_odds_ratio"] for r in log if "log_odds_ratio" in r]
    assert len(odds) == 4 and odds[-1] > odds[0] + 0.1, odds
    assert json.loads((run / "args.json").read_text())["resolved_beta"] == 0.1

    capsys.readouterr()
    assert cli.main([*argv, "--max_completion_length", "8"]) == 2
    assert "--max_completion_length is not used by ORPO on vision-language models" in capsys.readouterr().err


def test_grpo_trains_on_rows_with_images(tiny_qwen2_5_vl, tmp_path, capsys, monkeypatch):
    """GRPO's rollouts go through lmforge's engine with the pixels; the prompt ids carry each image's expanded
        placeholder, which trl's training forward pairs with the processor's pixels and mm_token_type_ids (these must
        line up with the image tokens: thirdparty.grpo_vl_processor). One batch holds a row with two images and a text
    row."""
    from transformers.models.qwen2_5_vl import modeling_qwen2_5_vl as qwen

    from lmforge import cli

    aligned = []
    rope_index = qwen.Qwen2_5_VLModel.get_rope_index

    def checked(self, input_ids, *a, mm_token_type_ids=None, **kw):
        aligned.append(bool(((mm_token_type_ids == 1) == (input_ids == self.config.image_token_id)).all()))
        return rope_index(self, input_ids, *a, mm_token_type_ids=mm_token_type_ids, **kw)

    monkeypatch.setattr(qwen.Qwen2_5_VLModel, "get_rope_index", checked)
    blue, green = (draw(tmp_path / f"{c}.png", c).name for c in ("blue", "green"))
    rows = [
        {"messages": [{"role": "user", "content": "<image>and <image>: which colour comes first?"}],
         "solution": "Blue", "images": [blue, green]},
        {"messages": [{"role": "user", "content": "Say Red."}], "solution": "Red"},
    ]  # fmt: skip
    (tmp_path / "grpo.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    argv = ["rlhf", "--rlhf_type", "grpo", "--model", str(tiny_qwen2_5_vl), "--dataset", str(tmp_path / "grpo.jsonl"),
            "--max_pixels", "3136", "--min_pixels", "3136", "--report_to", "none", "--torch_dtype", "float32",
            "--max_steps", "1", "--logging_steps", "1", "--num_generations", "2", "--max_completion_length", "4",
            "--reward_funcs", "accuracy", "--log_completions", "true", "--output_dir", str(out)]  # fmt: skip
    batch = ["--per_device_train_batch_size", "4", "--gradient_accumulation_steps"]
    assert cli.main([*argv, *batch, "1"]) == 0, capsys.readouterr().err[-3000:]
    run = next(out.glob("v*"))
    targets = json.loads((run / "checkpoint-1" / "adapter_config.json").read_text())["target_modules"]
    assert targets and all(t.startswith("model.language_model.") for t in targets)
    log = [json.loads(line) for line in (run / "logging.jsonl").read_text().splitlines()]
    assert any("loss" in r for r in log), log
    logged = [json.loads(x) for x in (run / "completions.jsonl").read_text().splitlines()]
    assert len(logged) == 4 and sum("image" in json.dumps(r["prompt"]) for r in logged) == 2, logged[0]
    # the rollout's prefill (it saw the pixels), the reference's and the policy's training forwards
    assert aligned == [True, True, True], aligned

    capsys.readouterr()  # 4 x 2 / 2 = 4 distinct prompts a step from 2 rows: trl would train no step
    assert cli.main([*argv, *batch, "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "lmforge rlhf: error: --per_device_train_batch_size 4 x --gradient_accumulation_steps 2 / --num_generations 2 "
        "needs 4 distinct prompts a step, the training set has 2: GRPO would train no step (hint: lower "
        "--per_device_train_batch_size or --gradient_accumulation_steps, or add rows)"
    ), err
