"""A tiny vision-language model learns to name the colour of unseen images, end to end as a user runs it:
`lmforge sft` (LoRA on the language model and the aligner, the vision tower frozen), `lmforge infer` on held-out
images (batch and interactive), `lmforge deploy` answering the official openai client's image, and
`lmforge export --merge_lora true` giving a checkpoint transformers loads with its own auto class and that answers
exactly as base + adapter."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys

import pytest

from lmforge.multimodal.demo import PIXELS, QUESTION, TRAIN_FLAGS, build_qwen2_5_vl, colour_rows, write_rows
from tests.conftest import run_cli
from tests.multimodal.conftest import gif
from tests.serve.conftest import free_port, wait_ready
from tests.train.helpers import only_run


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("vl-e2e")
    model = build_qwen2_5_vl(tmp / "model")
    train = write_rows(tmp / "train.jsonl", colour_rows(tmp, 64, "tr", 0))
    test = write_rows(tmp / "test.jsonl", colour_rows(tmp, 20, "te", 1000))
    r = run_cli("sft", "--model", str(model), "--dataset", str(train), *TRAIN_FLAGS, "--output_dir", str(tmp / "out"))
    assert r.returncode == 0, r.stderr[-3000:]
    ckpt = only_run(tmp / "out") / "checkpoint-50"
    return {"tmp": tmp, "model": model, "test": test, "ckpt": ckpt, "log": r.stdout}


def test_sft_trains_the_language_model_and_saves_the_resize_bounds(trained):
    saved = json.loads((trained["ckpt"] / "args.json").read_text())
    assert saved["max_pixels"] == int(PIXELS) and saved["min_pixels"] == int(PIXELS)
    assert saved["fps"] == 2.0 and saved["max_frames"] == 768  # video sampling, restored by infer/deploy/export
    adapter = json.loads((trained["ckpt"] / "adapter_config.json").read_text())
    targets = adapter["target_modules"]
    assert any(t.startswith("model.language_model.") for t in targets)
    assert any(t.startswith("model.visual.merger.") for t in targets)  # --freeze_aligner false
    assert not any(t.startswith("model.visual.blocks.") for t in targets)  # the vision tower stays frozen
    assert "<|image_pad|>" in trained["log"] and "[[" in trained["log"]  # the first sample, media tokens untrained


def test_it_names_the_colour_of_unseen_images(trained):
    out = trained["tmp"] / "res.jsonl"
    r = run_cli(
        "infer",
        "--adapters",
        str(trained["ckpt"]),
        "--val_dataset",
        str(trained["test"]),
        "--metric",
        "acc",
        "--max_batch_size",
        "20",
        "--max_new_tokens",
        "4",
        "--result_path",
        str(out),
    )
    assert r.returncode == 0, r.stderr[-3000:]
    acc = float(re.search(r"acc: ([\d.]+) over 20 rows", r.stdout).group(1))
    assert acc >= 0.9, out.read_text()


def test_interactive_lines_take_images_and_videos(trained, monkeypatch, capsys):
    """`<image>path question` / `<video>clip.gif question` (in-process: the batch run above is the subprocess)."""
    import io

    from lmforge import cli

    img, clip = trained["tmp"] / "te-1.png", gif(trained["tmp"] / "clip.gif", ["red", "blue", "red", "blue"])
    lines = f"<image>{img} {QUESTION}\n<image>nowhere.png {QUESTION}\n<video>{clip} {QUESTION}\nquit\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(lines))
    argv = ["infer", "--adapters", str(trained["ckpt"]), "--max_new_tokens", "4", "--stream", "false"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert ">>> Green." in out
    assert "nowhere.png: no such file" in out
    assert out.count(">>> ") == 2, out  # the video line was answered too (frames sampled as saved: 2 fps)


def test_deploy_answers_the_openai_client(trained):
    import openai

    allowed = trained["tmp"]
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lmforge",
            "deploy",
            "--adapters",
            str(trained["ckpt"]),
            "--port",
            str(port),
            "--served_model_name",
            "vl",
            "--allowed_local_media_path",
            str(allowed),
            "--log_level",
            "warning",
            "--temperature",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_ready(proc, port)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x")
        b64 = base64.b64encode((trained["tmp"] / "te-2.png").read_bytes()).decode()

        def ask(url: str) -> str:
            parts = [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": QUESTION}]
            r = client.chat.completions.create(model="vl", messages=[{"role": "user", "content": parts}], max_tokens=4)
            return r.choices[0].message.content

        assert ask(f"data:image/png;base64,{b64}") == "Blue."
        assert ask(f"file://{trained['tmp'] / 'te-3.png'}") == "Yellow."
        with pytest.raises(openai.BadRequestError) as exc:
            ask("file:///etc/hostname")
        assert "outside --allowed_local_media_path" in exc.value.body["message"]
        with pytest.raises(openai.BadRequestError) as exc:
            ask("data:image/png;base64,bm90IGFuIGltYWdl")
        assert "not a readable image" in exc.value.body["message"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_merged_export_loads_in_transformers_and_answers_the_same(trained):
    import torch
    from transformers import AutoModelForImageTextToText

    from lmforge import cli

    out = trained["tmp"] / "merged"
    argv = ["export", "--adapters", str(trained["ckpt"]), "--merge_lora", "true", "--output_dir", str(out)]
    assert cli.main(argv) == 0
    assert json.loads((out / "processor_config.json").read_text())["processor_class"] == "Qwen2_5_VLProcessor"
    pre = json.loads((out / "preprocessor_config.json").read_text())
    assert pre["size"] == {"shortest_edge": int(PIXELS), "longest_edge": int(PIXELS)}
    merged = AutoModelForImageTextToText.from_pretrained(out, dtype=torch.float32)
    assert type(merged).__name__ == "Qwen2_5_VLForConditionalGeneration"

    from peft import PeftModel

    from lmforge.args import ModelArgs, TemplateArgs
    from lmforge.infer.frontend import Frontend
    from lmforge.infer.media import media_prompt
    from lmforge.models.setup import setup_tokenizer

    base = AutoModelForImageTextToText.from_pretrained(trained["model"], dtype=torch.float32)
    adapted = PeftModel.from_pretrained(base, trained["ckpt"]).eval()
    setup = setup_tokenizer(ModelArgs(model=str(out)), TemplateArgs())
    prompt = media_prompt(
        Frontend(setup.template),
        [{"role": "user", "content": "<image>" + QUESTION}],
        [str(trained["tmp"] / "te-0.png")],
    )
    inputs = {
        "input_ids": torch.tensor([prompt.token_ids]),
        "pixel_values": prompt.inputs["pixel_values"],
        "image_grid_thw": prompt.inputs["image_grid_thw"],
        "mm_token_type_ids": torch.tensor([prompt.inputs["mm_token_type_ids"]]),
    }
    with torch.no_grad():
        a, b = merged(**inputs).logits, adapted(**inputs).logits
    assert torch.allclose(a, b, atol=1e-4)
    answer = merged.generate(**inputs, max_new_tokens=3, do_sample=False)[0, len(prompt.token_ids) :]
    assert setup.tokenizer.decode(answer, skip_special_tokens=True).startswith("Red")


def test_app_page_takes_an_uploaded_image(trained):
    """`lmforge app` in a real headless Chromium: upload an unseen image, ask, and read the trained answer."""
    from playwright.sync_api import sync_playwright

    from tests.ui.test_app import CHROMIUM_FLAGS, chromium, wait_ready_page

    browser_path = chromium()
    port = free_port()
    argv = ["app", "--adapters", str(trained["ckpt"]), "--server_port", str(port), "--max_new_tokens", "4",
            "--temperature", "0"]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "lmforge", *argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        wait_ready_page(proc, port)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=browser_path, args=CHROMIUM_FLAGS)
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}", wait_until="networkidle")
            page.locator("#image input[type=file]").set_input_files(str(trained["tmp"] / "te-2.png"))  # blue
            page.wait_for_selector("#image img", timeout=30_000)
            page.locator("#message textarea").fill(QUESTION)
            page.locator("#message textarea").press("Enter")
            page.wait_for_function(
                "() => { const b = document.querySelectorAll('#chatbot .bot-row');"
                " return b.length > 0 && b[b.length - 1].innerText.includes('.'); }",
                timeout=120_000,
            )
            assert page.locator("#chatbot .bot-row").last.inner_text().strip() == "Blue."
            assert page.locator("#chatbot .user-row img").count() == 1  # the upload is shown in the chat
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
