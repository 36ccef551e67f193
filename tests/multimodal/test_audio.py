"""An audio family from its registry entry alone (multimodal/families.py `qwen2_audio`): ms-swift rows with `<audio>`
tags and an `audios` column encode token-exact with the stock Qwen2AudioProcessor (ids, input_features, the feature
mask), `lmforge sft` trains a LoRA step with the audio tower frozen, `lmforge infer` answers as transformers'
own generate, `lmforge deploy` takes OpenAI `input_audio` parts, and bad rows end in one line each. Audio is sine
waves written in the test; it decodes with soundfile + soxr, never torchaudio."""

from __future__ import annotations

import base64
import json

import pytest

from tests.multimodal.conftest import audio_template, draw, served, sine_wav
from tests.multimodal.test_data import _load

pytest.importorskip("soundfile", reason="audio needs lmforge[audio] (soundfile + soxr)")


def _rows(tmp_path) -> list[dict]:
    """0, 1 and 2 audios a row, different lengths and sample rates, a flac and a stereo file among them."""
    import numpy as np
    import soundfile

    stereo = tmp_path / "stereo.wav"
    t = np.arange(int(0.7 * 44100)) / 44100
    soundfile.write(stereo, np.stack([np.sin(2 * np.pi * 300 * t), np.sin(2 * np.pi * 500 * t)], 1) * 0.3, 44100)
    flac = tmp_path / "tone.flac"
    soundfile.write(flac, np.sin(2 * np.pi * 660 * np.arange(8000 * 3) / 8000) * 0.3, 8000)
    a = [str(sine_wav(tmp_path / f"a{k}.wav", s, hz, rate)) for k, (s, hz, rate) in
         enumerate([(1.0, 440, 16000), (2.3, 880, 22050), (0.4, 220, 16000)])]  # fmt: skip
    answer = {"role": "assistant", "content": "A tone."}
    return [
        {"messages": [{"role": "user", "content": "Say hi."}, answer]},
        {"messages": [{"role": "user", "content": "<audio>What is this sound?"}, answer], "audios": a[0]},
        {"messages": [{"role": "user", "content": "<audio>One<audio>two?"}, answer], "audios": [a[1], str(flac)]},
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "<audio>First?"},
                {"role": "assistant", "content": "Low."},
                {"role": "user", "content": "And <audio>this one?"},
                answer,
            ],
            "audios": [str(stereo), a[2]],
        },
    ]


def _structured(messages: list[dict], audios: list[str]) -> list[dict]:
    """`<audio>` tags -> the content blocks the stock processor's template takes."""
    it = iter(audios)
    out = []
    for m in messages:
        pieces = m["content"].split("<audio>")
        blocks = [{"type": "text", "text": pieces[0]}] if pieces[0] else []
        for piece in pieces[1:]:
            blocks += [{"type": "audio", "path": next(it)}, *([{"type": "text", "text": piece}] if piece else [])]
        out.append({"role": m["role"], "content": blocks})
    return out


def _stock(setup):
    from transformers import Qwen2AudioProcessor

    return Qwen2AudioProcessor(setup.template.feature_extractor, setup.tokenizer, chat_template=audio_template())


def test_audio_rows_are_token_exact_with_the_stock_processor(tiny_qwen2_audio, tmp_path):
    import torch

    from lmforge.args import ModelArgs, TemplateArgs
    from lmforge.models.setup import setup_tokenizer
    from lmforge.templates.encode import IGNORE

    setup = setup_tokenizer(ModelArgs(model=str(tiny_qwen2_audio)), TemplateArgs())
    tpl = setup.template
    assert tpl.family.name == "qwen2_audio" and tpl.family.kinds == ("audio",) and tpl.run_args() == {}
    proc = _stock(setup)
    n = 0
    for row in _rows(tmp_path):
        audios = [row["audios"]] if isinstance(row.get("audios"), str) else row.get("audios", [])
        enc = tpl.encode(row["messages"], media={"audios": audios})
        ref = proc.apply_chat_template(_structured(row["messages"], audios), tokenize=True, return_dict=True)
        assert enc.input_ids == list(ref["input_ids"][0])
        assert all(lab == IGNORE for t, lab in zip(enc.input_ids, enc.labels) if t == tpl.audio_token_id)
        assert any(lab != IGNORE for lab in enc.labels)
        if audios:
            mine = tpl.process_media([], [], audios)
            assert torch.equal(mine["input_features"], torch.as_tensor(ref["input_features"]))
            assert torch.equal(mine["feature_attention_mask"], torch.as_tensor(ref["feature_attention_mask"]))
            n += len(audios)
    assert n == 5


def test_bad_audio_rows_are_one_line_each(tmp_path):
    good = sine_wav(tmp_path / "ok.wav", 0.5)
    (tmp_path / "bad.wav").write_bytes(b"RIFF....WAVEjunk" * 8)
    b64 = base64.b64encode(good.read_bytes()).decode()
    a = {"role": "assistant", "content": "A tone."}
    rows = [
        {"messages": [{"role": "user", "content": "<audio><audio>Which?"}, a], "audios": ["ok.wav"]},
        {"messages": [{"role": "user", "content": "<audio>What?"}, a], "audios": ["gone.wav"]},
        {"messages": [{"role": "user", "content": "<audio>What?"}, a], "audios": ["bad.wav"]},
        {"messages": [{"role": "user", "content": "<audio>What?"}, a], "audios": f"data:audio/wav;base64,{b64}"},
        {"query": "What?", "response": "A tone.", "audios": ["ok.wav"]},  # no tag: put in front (ms-swift)
    ]
    kept, reasons = _load(tmp_path, rows)
    path = tmp_path / "train.jsonl"
    assert reasons[0] == (
        f"{path}:1: messages: 2 <audio> tags but 1 audio "
        "(hint: every <audio> tag needs one entry in 'audios', in order)"
    )
    assert reasons[1].startswith(f"{path}:2: audios[0]: gone.wav: no such file")
    assert reasons[2].startswith(f"{path}:3: audios[0]: ") and "not a readable audio file" in reasons[2]
    assert len(reasons) == 3 and all("\n" not in r for r in reasons)
    assert [len(r["audios"]) for r in kept] == [1, 1] and kept[1]["messages"][0]["content"] == "<audio>What?"


def _short_rows(tmp_path) -> list[dict]:
    """Three rows for the training run: 0, 1 and 2 short audios (a 22.05 kHz wav and an 8 kHz flac among them), so
    the batch stays a few dozen audio tokens long."""
    import numpy as np
    import soundfile

    flac = tmp_path / "short.flac"
    soundfile.write(flac, np.sin(2 * np.pi * 660 * np.arange(2400) / 8000) * 0.3, 8000)
    a = [str(sine_wav(tmp_path / "s0.wav", 0.4)), str(sine_wav(tmp_path / "s1.wav", 0.5, 880, 22050))]
    answer = {"role": "assistant", "content": "A tone."}
    return [
        {"messages": [{"role": "user", "content": "Say hi."}, answer]},
        {"messages": [{"role": "user", "content": "<audio>What is this sound?"}, answer], "audios": a[0]},
        {"messages": [{"role": "user", "content": "<audio>One<audio>two?"}, answer], "audios": [a[1], str(flac)]},
    ]


def test_sft_trains_a_step_and_infer_answers_as_transformers(tiny_qwen2_audio, tmp_path, capsys):
    import torch
    from transformers import AutoModelForMultimodalLM

    from lmforge import cli
    from lmforge.args import ModelArgs, TemplateArgs
    from lmforge.models.setup import setup_tokenizer

    rows = _short_rows(tmp_path)
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    argv = ["sft", "--model", str(tiny_qwen2_audio), "--dataset", str(train), "--max_steps", "1", "--report_to",
            "none", "--per_device_train_batch_size", "3", "--output_dir", str(out), "--torch_dtype", "float32",
            "--freeze_aligner", "false"]  # fmt: skip
    assert cli.main(argv) == 0, capsys.readouterr().err[-2000:]
    ckpt = next(out.glob("v*/checkpoint-1"))
    targets = json.loads((ckpt / "adapter_config.json").read_text())["target_modules"]
    assert any(t.startswith("model.language_model.") for t in targets)
    assert "model.multi_modal_projector.linear" in targets or "linear" in targets  # --freeze_aligner false
    assert not any("audio_tower" in t or t in ("fc1", "fc2", "out_proj") for t in targets)  # tower frozen

    cli.main(["check", "--model", str(tiny_qwen2_audio), "--dataset", str(train)])
    report = capsys.readouterr().out
    assert "media: 3 audios in 2 rows (1.2 s in all, longest 0.5 s), 29 audio tokens\n" in report, report

    test = tmp_path / "test.jsonl"
    test.write_text(json.dumps({"messages": rows[2]["messages"], "audios": rows[2]["audios"]}) + "\n")
    result = tmp_path / "res.jsonl"
    argv = ["infer", "--model", str(tiny_qwen2_audio), "--val_dataset", str(test), "--max_new_tokens", "5",
            "--result_path", str(result), "--torch_dtype", "float32"]  # fmt: skip
    assert cli.main(argv) == 0, capsys.readouterr().err[-2000:]
    answer = json.loads(result.read_text().splitlines()[0])["response"]

    setup = setup_tokenizer(ModelArgs(model=str(tiny_qwen2_audio)), TemplateArgs())
    model = AutoModelForMultimodalLM.from_pretrained(tiny_qwen2_audio, dtype=torch.float32).eval()
    assert type(model).__name__ == "Qwen2AudioForConditionalGeneration"
    conv = _structured(rows[2]["messages"][:1], rows[2]["audios"])
    inputs = _stock(setup).apply_chat_template(
        conv, tokenize=True, return_dict=True, add_generation_prompt=True, return_tensors="pt"
    )
    ids = model.generate(**inputs, max_new_tokens=5, do_sample=False)[0, inputs["input_ids"].shape[1] :]
    assert answer == setup.tokenizer.decode(ids, skip_special_tokens=True)


def test_deploy_takes_input_audio_parts(tiny_qwen2_audio, tiny_qwen2_5_vl, tmp_path):
    import numpy as np
    import openai
    import soundfile

    wav = sine_wav(tmp_path / "q.wav", 0.8)
    mp3 = tmp_path / "q.mp3"
    soundfile.write(mp3, np.sin(2 * np.pi * 440 * np.arange(16000) / 16000) * 0.3, 16000, format="MP3")

    def part(path, fmt: str) -> dict:
        return {
            "type": "input_audio",
            "input_audio": {"data": base64.b64encode(path.read_bytes()).decode(), "format": fmt},
        }

    def ask(client, *parts) -> str:
        content = [*parts, {"type": "text", "text": "What is this?"}]
        r = client.chat.completions.create(model="m", messages=[{"role": "user", "content": content}], max_tokens=3)
        return r.choices[0].message.content

    with served(tiny_qwen2_audio) as client:
        assert isinstance(ask(client, part(wav, "wav")), str)
        assert isinstance(ask(client, part(wav, "wav"), part(mp3, "mp3")), str)
        with pytest.raises(openai.BadRequestError) as exc:
            ask(client, {"type": "input_audio", "input_audio": {"data": "bm90IGF1ZGlv", "format": "wav"}})
        assert "not a readable audio file" in exc.value.body["message"]
        with pytest.raises(openai.BadRequestError) as exc:
            img = base64.b64encode(draw(tmp_path / "red.png", "red").read_bytes()).decode()
            ask(client, {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{img}"}})
        assert exc.value.body["message"] == (
            "messages.0.content.0: 'image_url' parts are not supported by this model (it takes input_audio)"
        )
    with served(tiny_qwen2_5_vl) as client, pytest.raises(openai.BadRequestError) as exc:
        ask(client, part(wav, "wav"))
    assert exc.value.body["message"] == (
        "messages.0.content.0: 'input_audio' parts are not supported by this model (it takes image_url / video_url)"
    )
