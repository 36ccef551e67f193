"""Media in rows: every ms-swift form is accepted, every malformed case is one line naming the row."""

from __future__ import annotations

import base64
import json

import pytest

from tests.multimodal.conftest import draw, gif


def _load(tmp_path, rows: list[dict]) -> tuple[list[dict], list[str]]:
    from lmforge.args import DataArgs
    from lmforge.data.pipeline import load_data

    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    bundle = load_data(DataArgs(dataset=[str(path)], dataset_shuffle=False, load_from_cache_file=False))
    return [json.loads(r) for r in bundle.train["row"]], bundle.parts[0].reasons


def test_every_row_form_carries_its_images(tmp_path):
    red = draw(tmp_path / "red.png", "red")
    b64 = base64.b64encode(red.read_bytes()).decode()
    rows, reasons = _load(
        tmp_path,
        [
            {
                "messages": [{"role": "user", "content": "<image>Colour?"}, {"role": "assistant", "content": "Red"}],
                "images": "red.png",
            },  # one string where a list is expected; relative to the dataset file
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{b64}"}},
                            {"type": "text", "text": "Colour?"},
                        ],
                    },
                    {"role": "assistant", "content": "Red"},
                ]
            },  # OpenAI content parts
            {"instruction": "Colour?", "output": "Red", "images": [str(red)]},  # alpaca, no tag: one is added
            {
                "messages": [{"from": "human", "value": "<image>Colour?"}, {"from": "gpt", "value": "Red"}],
                "images": [b64],
            },  # sharegpt, raw base64
            {"query": "<image>Colour?", "response": "Red", "images": [{"bytes": list(red.read_bytes()), "path": None}]},
        ],
    )
    assert reasons == []
    assert len(rows) == 5
    for row in rows:
        assert len(row["images"]) == 1
        assert row["messages"][0]["content"].startswith("<image>") or "<image>" in row["messages"][-2]["content"]
    assert rows[0]["images"] == [str(red.resolve())]
    assert rows[1]["images"][0].startswith("data:image/png;base64,")


def test_malformed_media_rows_are_one_line_each(tmp_path):
    draw(tmp_path / "red.png", "red")
    (tmp_path / "bad.png").write_bytes(b"not an image at all")
    q = {"role": "user", "content": "<image><image>Colour?"}
    a = {"role": "assistant", "content": "Red"}
    _, reasons = _load(
        tmp_path,
        [
            {"messages": [q, a], "images": ["red.png"]},
            {"query": "Colour?", "response": "Red", "images": ["missing.png"]},
            {"query": "Colour?", "response": "Red", "images": ["bad.png"]},
            {"query": "Colour?", "response": "Red", "images": ["http://127.0.0.1:9/none.png"]},
            {"messages": [{"role": "user", "content": [{"type": "image_url"}]}, a]},
        ],
    )
    path = tmp_path / "train.jsonl"
    assert (
        reasons[0] == f"{path}:1: messages: 2 <image> tags but 1 image "
        "(hint: every <image> tag needs one entry in 'images', in order)"
    )
    assert reasons[1].startswith(f"{path}:2: images[0]: missing.png: no such file")
    assert reasons[2].startswith(f"{path}:3: images[0]: ") and "not a readable image" in reasons[2]
    assert reasons[3].startswith(f"{path}:4: images[0]: cannot fetch http://127.0.0.1:9/none.png")
    assert "offline?" in reasons[3]
    assert reasons[4] == f"{path}:5: messages[0].content: a image part without a url or path"
    assert all("\n" not in r for r in reasons)


@pytest.mark.parametrize("command", ["sft", "check"])
def test_a_text_only_model_refuses_images(command, tiny_qwen3, tmp_path, capsys):
    """In-process (the CLI entry itself): a subprocess per case cost a python + torch start each."""
    from lmforge import cli

    draw(tmp_path / "red.png", "red")
    data = tmp_path / "d.jsonl"
    row = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
    data.write_text(json.dumps(row) + "\n" + json.dumps({**row, "images": ["red.png"]}) + "\n")
    extra = ["--output_dir", str(tmp_path / "out")] if command == "sft" else []
    assert cli.main([command, "--model", str(tiny_qwen3), "--dataset", str(data), *extra]) == 1
    out, err = capsys.readouterr()
    want = f"{data}:2: --model {tiny_qwen3.name} is text-only: drop the images or pick a vision-language model"
    assert want in (err if command == "sft" else out)
    if command == "sft":
        assert err.strip().count("\n") == 0 and "Traceback" not in err
        data.write_text(json.dumps(row) + "\n")
        argv = ["sft", "--model", str(tiny_qwen3), "--dataset", str(data), "--freeze_vit", "false", "--vit_lr", "1e-5"]
        assert cli.main([*argv, *extra]) == 2
        want = "--vit_lr is for vision-language models; this model is text-only (hint: drop --vit_lr)"
        assert capsys.readouterr().err.strip().endswith(want)
        assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.safetensors"))


def test_check_reports_media_and_fails_on_bad_rows(tiny_qwen2_5_vl, tmp_path, capsys):
    from lmforge import cli

    for i, colour in enumerate(["red", "blue"]):
        draw(tmp_path / f"{i}.png", colour, (56, 112))
    gif(tmp_path / "clip.gif", ["red", "blue", "green", "yellow"])  # 4 frames at 4 fps, 56x56: 2 x 4 tokens
    q = {"role": "user", "content": "<image>Colour?"}
    a = {"role": "assistant", "content": "Red"}
    rows = [
        {"messages": [q, a], "images": ["0.png"]},
        {"messages": [{"role": "user", "content": "No image here."}, a]},  # mixed: rows without media are fine
        {"messages": [{"role": "user", "content": "<image><image>Both?"}, a], "images": ["0.png", "1.png"]},
        {"messages": [q, a], "images": ["gone.png"]},
        {"messages": [{"role": "user", "content": "<video>Colours?"}, a], "videos": ["clip.gif"]},
    ]
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    argv = ["check", "--model", str(tiny_qwen2_5_vl), "--dataset", str(data), "--max_pixels", str(56 * 56)]
    assert cli.main([*argv, "--fps", "4"]) == 1
    out = capsys.readouterr().out
    assert f"dropped: {data}:4: images[0]: gone.png: no such file" in out
    # 56x112 resized within 56*56 pixels: 28x56 -> 2x4 patches -> 2 tokens each
    assert "media: 3 images in 3 rows, 6 image tokens (resized to 3136..3136 pixels)" in out, out
    assert "; 1 videos, 8 video tokens (--fps 4, --max_frames 768)" in out, out


def test_llama_factory_dataset_info_maps_media_columns(tmp_path):
    """LLaMA-Factory's dataset_info.json: `columns` names the file's own media column (here `pics`)."""
    from lmforge.args import DataArgs
    from lmforge.data.pipeline import load_data

    draw(tmp_path / "red.png", "red")
    row = {"conversations": [{"from": "human", "value": "<image>Colour?"}, {"from": "gpt", "value": "Red"}],
           "pics": ["red.png"]}  # fmt: skip
    (tmp_path / "vqa.json").write_text(json.dumps([row, {**row, "pics": ["nope.png"]}]))
    info = {"vqa_lf": {"file_name": "vqa.json", "formatting": "sharegpt",
                       "columns": {"messages": "conversations", "images": "pics"}}}  # fmt: skip
    (tmp_path / "dataset_info.json").write_text(json.dumps(info))
    args = DataArgs(dataset=["vqa_lf"], custom_dataset_info=[str(tmp_path / "dataset_info.json")],
                    load_from_cache_file=False, dataset_shuffle=False)  # fmt: skip
    bundle = load_data(args)
    rows = [json.loads(r) for r in bundle.train["row"]]
    assert len(rows) == 1 and rows[0]["images"] == [str((tmp_path / "red.png").resolve())]
    assert rows[0]["messages"][0] == {"role": "user", "content": "<image>Colour?"}
    assert bundle.parts[0].reasons[0].startswith(f"{tmp_path / 'vqa.json'}: row 2: images[0]: nope.png: no such file")
