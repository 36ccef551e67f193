"""Video rows (`<video>` tags, a `videos` column) for the Qwen VL families, without torchvision: frames decoded from an
animated GIF, sampled at --fps up to --max_frames, and the ids equal the stock processor's own expansion (its
replace_video_token: Qwen3-VL's frame timestamps, Qwen2.5-VL's second_per_grid_ts); a video batch trains."""

from __future__ import annotations

import json

import pytest

from tests.multimodal.conftest import COLOURS, draw, gif


def _video_rows(tmp_path) -> list[dict]:
    names = list(COLOURS)
    rows = []
    for i in range(5):
        clip = gif(tmp_path / f"v{i}.gif", [names[(i + k) % 4] for k in range(4 + 2 * i)], (56 + 28 * (i % 2), 56))
        user = "<video>What happens?" if i % 2 == 0 else "<image>and <video>: same colour?"
        row = {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": f"Clip {i}."}]}
        row["videos"] = [str(clip)]
        if i % 2:
            row["images"] = [str(draw(tmp_path / f"i{i}.png", names[i % 4]))]
        rows.append(row)
    return rows


def _blocks(content: str) -> list[dict]:
    import re

    out = []
    for piece in re.split(r"(<image>|<video>)", content):
        if piece in ("<image>", "<video>"):
            out.append({"type": piece[1:-1]})
        elif piece:
            out.append({"type": "text", "text": piece})
    return out


@pytest.mark.parametrize("fixture", ["tiny_qwen2_5_vl", "tiny_qwen3_vl"])
def test_video_rows_are_token_exact_with_the_processor(fixture, request, tmp_path):
    import torch
    from PIL import Image

    from lmforge.args import ModelArgs, TemplateArgs
    from lmforge.models.setup import setup_tokenizer
    from lmforge.multimodal.video import load_video
    from lmforge.templates.encode import IGNORE
    from lmforge.thirdparty import stock_vl_processor

    model_dir = request.getfixturevalue(fixture)
    px = 56 * 56 if fixture == "tiny_qwen2_5_vl" else 64 * 64
    setup = setup_tokenizer(ModelArgs(model=str(model_dir)), TemplateArgs(max_pixels=px, min_pixels=px, fps=2.0))
    tpl = setup.template
    assert tpl.run_args() == {"min_pixels": px, "max_pixels": px, "fps": 2.0, "max_frames": 768}
    video = tpl.processor.video_processor
    proc = stock_vl_processor(tpl.family, tpl.image_processor, setup.tokenizer, tpl.jinja, video)
    for row in _video_rows(tmp_path):
        enc = tpl.encode(row["messages"], media={k: row[k] for k in ("images", "videos") if k in row})
        conv = [{"role": m["role"], "content": _blocks(m["content"])} for m in row["messages"]]
        if fixture == "tiny_qwen3_vl":  # the folder's Qwen3 template takes string content
            text = tpl.render(tpl.with_system([{**m, "content": m["content"]} for m in row["messages"]]))
            text = text.replace("<video>", "<|vision_start|><|video_pad|><|vision_end|>")
            text = text.replace("<image>", "<|vision_start|><|image_pad|><|vision_end|>")
        else:
            text = proc.apply_chat_template(conv, tokenize=False)
        frames, meta = load_video(row["videos"][0], "videos[0]", tpl.sampling, 2, tpl.family.frame_sampler())
        n = meta.total_num_frames // 2  # 4 fps sampled at 2; Qwen2.5-VL rounds to the temporal patch
        assert meta.fps == 4.0 and len(frames) == max(4, n // 2 * 2 if fixture == "tiny_qwen2_5_vl" else n)
        images = [Image.open(p).convert("RGB") for p in row.get("images", [])] or None
        ref = proc(text=[text], images=images, videos=[frames], video_metadata=[meta])
        assert enc.input_ids == list(ref["input_ids"][0])
        assert all(lab == IGNORE for t, lab in zip(enc.input_ids, enc.labels) if t == tpl.video_token_id)
        mine = tpl.process_media(row.get("images", []), row["videos"])
        assert torch.equal(mine["video_grid_thw"], torch.as_tensor(ref["video_grid_thw"]))
        assert torch.equal(mine["pixel_values_videos"], torch.as_tensor(ref["pixel_values_videos"]))
        if fixture == "tiny_qwen2_5_vl":  # 2 frames per temporal patch / the sampled frame rate
            sampled = len(frames) / meta.total_num_frames * meta.fps
            assert mine["second_per_grid_ts"].tolist() == list(ref["second_per_grid_ts"]) == [2 / sampled]
        else:
            assert " seconds>" in setup.tokenizer.decode(enc.input_ids)  # Qwen3-VL: a timestamp per frame pair
    frames, meta = load_video(str(tmp_path / "v2.gif"), "videos[0]", tpl.sampling, 2, tpl.family.frame_sampler())
    # 8 frames at 4 fps, sampled at 2 fps: Qwen2-VL's rule steps by total/n, Qwen3-VL's spreads by linspace
    assert meta.frames_indices == ([0, 2, 4, 6] if fixture == "tiny_qwen2_5_vl" else [0, 2, 5, 7])


def test_qwen3_vl_bounds_the_pixels_of_the_whole_clip(tiny_qwen3_vl, tmp_path):
    """Qwen3-VL's video processor spends its `size` on the whole clip (transformers 5.24's qwen3_vl smart_resize):
    with the folder's video_preprocessor_config.json budget of 16 x 128 x 128 pixels, 4 frames of 256 x 256 keep
    their size and 16 frames shrink to 128 x 128; --max_pixels then bounds each frame."""
    import shutil

    from lmforge.args import ModelArgs, TemplateArgs
    from lmforge.models.setup import setup_tokenizer

    folder = tmp_path / "m"
    shutil.copytree(tiny_qwen3_vl, folder)
    size = {"shortest_edge": 4096, "longest_edge": 16 * 128 * 128}
    (folder / "video_preprocessor_config.json").write_text(json.dumps({"size": size}))
    short = gif(tmp_path / "short.gif", ["red"] * 4, (256, 256), ms=500)  # 2 fps: every frame is sampled
    long = gif(tmp_path / "long.gif", ["blue"] * 16, (256, 256), ms=500)

    def grids(**flags: int) -> list[list[int]]:
        tpl = setup_tokenizer(ModelArgs(model=str(folder)), TemplateArgs(fps=2.0, **flags)).template
        return tpl.process_media([], [str(short), str(long)])["video_grid_thw"].tolist()

    assert grids() == [[2, 16, 16], [8, 8, 8]]  # patch 16: 256 px = 16 patches, 128 px = 8
    assert grids(max_pixels=96 * 96) == [[2, 6, 6], [8, 6, 6]]


def test_a_video_batch_trains_and_bad_videos_are_one_line(tiny_qwen2_5_vl, tmp_path, monkeypatch):
    from transformers import Qwen2_5_VLForConditionalGeneration

    from lmforge.args import DataArgs, ModelArgs, TemplateArgs
    from lmforge.data.pipeline import load_data
    from lmforge.models.setup import setup_tokenizer
    from lmforge.train.media import MediaCollator

    setup = setup_tokenizer(ModelArgs(model=str(tiny_qwen2_5_vl)), TemplateArgs(max_pixels=3136, min_pixels=3136))
    tpl = setup.template
    rows = _video_rows(tmp_path)[:2]
    rows[1]["messages"][0]["content"] = "No video here."  # a text row in the same batch
    rows[1].pop("videos"), rows[1].pop("images")
    encs = [tpl.encode(r["messages"], media={k: r[k] for k in ("images", "videos") if k in r}) for r in rows]
    media = [json.dumps({"videos": rows[0]["videos"]}), ""]
    batch = MediaCollator(tpl, setup.tokenizer.pad_token_id)(
        [{"input_ids": e.input_ids, "labels": e.labels, "media": m} for e, m in zip(encs, media)]
    )
    assert batch["mm_token_type_ids"].eq(2).sum() == sum(t == tpl.video_token_id for t in encs[0].input_ids)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_qwen2_5_vl)
    loss = model(**batch).loss
    loss.backward()
    assert loss.item() > 0 and model.model.visual.patch_embed.proj.weight.grad.abs().sum() > 0

    monkeypatch.setitem(__import__("sys").modules, "av", None)  # no PyAV installed: an mp4 has no decoder
    (tmp_path / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    draw(tmp_path / "still.png", "red")
    q = {"role": "user", "content": "<video>What happens?"}
    a = {"role": "assistant", "content": "Nothing."}
    data = tmp_path / "bad.jsonl"
    bad = [{"messages": [q, a], "videos": [v]} for v in ("clip.mp4", "still.png", "gone.gif")]
    bad.append({"messages": [{"role": "user", "content": "<video><video>Both?"}, a], "videos": ["v0.gif"]})
    data.write_text("".join(json.dumps(r) + "\n" for r in bad))
    reasons = load_data(DataArgs(dataset=[str(data)], load_from_cache_file=False)).parts[0].reasons
    assert reasons[0].startswith(f"{data}:1: videos[0]: ")
    assert reasons[0].endswith("clip.mp4: no video decoder for this file (hint: pip install 'lmforge[video]' "
                               "(PyAV), or give the frames as an animated GIF/WebP)")  # fmt: skip
    still = "a still image, not a video (hint: put it in 'images' with an <image> tag)"
    assert reasons[1] == f"{data}:2: videos[0]: {still}"
    assert reasons[2].startswith(f"{data}:3: videos[0]: gone.gif: no such file")
    assert reasons[3].startswith(f"{data}:4: messages: 2 <video> tags but 1 video")
    assert all("\n" not in r for r in reasons)


def test_deploy_takes_video_url_parts_and_answers_as_infer(tiny_qwen2_5_vl, tiny_llava, tiny_qwen3, tmp_path):
    """vLLM's `video_url` part with an animated GIF as a data URL: the server's answer equals `lmforge infer` on the
    same video; an image-only or a text-only model answers 400 naming the part."""
    import base64

    import openai

    from lmforge import cli
    from tests.multimodal.conftest import served

    clip = gif(tmp_path / "clip.gif", ["red", "blue", "green", "yellow"])
    url = "data:image/gif;base64," + base64.b64encode(clip.read_bytes()).decode()
    content = [{"type": "video_url", "video_url": {"url": url}}, {"type": "text", "text": "What is this?"}]

    def ask(client) -> str:
        r = client.chat.completions.create(model="m", messages=[{"role": "user", "content": content}], max_tokens=5)
        return r.choices[0].message.content

    test = tmp_path / "test.jsonl"
    row = {"messages": [{"role": "user", "content": "<video>What is this?"}], "videos": [str(clip)]}
    test.write_text(json.dumps(row))
    result = tmp_path / "res.jsonl"
    argv = ["infer", "--model", str(tiny_qwen2_5_vl), "--val_dataset", str(test), "--max_new_tokens", "5",
            "--result_path", str(result), "--torch_dtype", "float32", "--temperature", "0"]  # fmt: skip
    assert cli.main(argv) == 0
    expected = json.loads(result.read_text().splitlines()[0])["response"]
    with served(tiny_qwen2_5_vl) as client:
        assert ask(client) == expected
    with served(tiny_llava) as client, pytest.raises(openai.BadRequestError) as exc:
        ask(client)
    assert exc.value.body["message"] == (
        "messages.0.content.0: 'video_url' parts are not supported by this model (it takes image_url)"
    )
    with served(tiny_qwen3) as client, pytest.raises(openai.BadRequestError) as exc:
        ask(client)
    assert "text-only" in exc.value.body["message"] and "video_url" in exc.value.body["message"]
