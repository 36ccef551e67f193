"""`sft --task_type seq_cls` end to end on a tiny random llama, as a user runs it (the CLI, in-process to keep the
suite fast): train with string labels, infer writes label + probabilities and scores acc/f1, export merges into a
checkpoint transformers' AutoModelForSequenceClassification loads with the same outputs; bad labels are one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lmforge import cli
from tests.conftest import run_cli
from tests.serve.conftest import free_port
from tests.train.helpers import only_run

POS = ["great", "wonderful", "lovely", "excellent", "fantastic", "superb", "brilliant", "delightful"]
NEG = ["awful", "terrible", "horrible", "boring", "dreadful", "poor", "dull", "painful"]
SUBJECTS = ["the movie", "this film", "the show", "that play", "the book", "this song"]


def sentiment_rows(n: int, seed: int) -> list[dict]:
    """A two-class sentiment set: sentences that end in one of 8 positive or 8 negative words (held-out rows are
    new sentences)."""
    import random

    rnd = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % 2
        word = rnd.choice(POS if label == 0 else NEG)
        text = f"I found {rnd.choice(SUBJECTS)} {word}"
        rows.append({"messages": [{"role": "user", "content": text}], "label": ["pos", "neg"][label]})
    return rows


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def last_line(text: str, needle: str) -> str:
    return next(line for line in text.splitlines() if needle in line)


TRAIN = ["--per_device_train_batch_size", "8", "--gradient_accumulation_steps", "1", "--report_to", "none"]


def test_seq_cls_ddp_train_infer_export(tmp_path, tiny_llama, capsys):
    """Trained by two torchrun ranks (gloo): one run folder, a checkpoint both ranks wrote, and it learned."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    train = write_rows(tmp_path / "train.jsonl", sentiment_rows(48, 0))
    test = write_rows(tmp_path / "test.jsonl", sentiment_rows(16, 1))
    argv = ["sft", "--model", str(tiny_llama), "--dataset", str(train), "--task_type", "seq_cls"]
    argv += ["--labels", "pos", "neg", "--max_steps", "10", "--learning_rate", "4e-3", "--save_steps", "10"]
    argv += ["--use_chat_template", "false", *TRAIN, "--torch_dtype", "float32", "--output_dir", str(tmp_path / "o")]
    r = run_cli(*argv, env={"NPROC_PER_NODE": "2", "MASTER_PORT": str(free_port()), "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "rank 0/2 trained 10 steps" in r.stdout and "rank 1/2 trained 10 steps" in r.stdout
    ckpt = only_run(tmp_path / "o") / "checkpoint-10"
    assert (ckpt / "adapter_model.safetensors").is_file() and (ckpt / "rng_state_1.pth").is_file()
    saved = json.loads((ckpt / "args.json").read_text())
    assert (saved["task_type"], saved["world_size"]) == ("seq_cls", 2)
    assert saved["label_spec"] == {
        "problem_type": "single_label_classification",
        "num_labels": 2,
        "labels": ["pos", "neg"],
    }

    capsys.readouterr()
    result = tmp_path / "pred.jsonl"
    infer = ["infer", "--adapters", str(ckpt), "--val_dataset", str(test), "--result_path", str(result)]
    assert cli.main([*infer, "--metric", "acc"]) == 0
    acc = float(last_line(capsys.readouterr().out, "acc:").split("acc: ")[1].split()[0])
    preds = [json.loads(x) for x in result.read_text().splitlines()]
    assert len(preds) == 16 and {p["label"] for p in preds} <= {"pos", "neg"}
    assert all(abs(sum(p["probs"]) - 1) < 1e-5 for p in preds)
    assert acc == sum(p["label"] == p["labels"] for p in preds) / 16
    assert acc >= 0.9, acc  # the word decides the class: a short LoRA run learns it, held out
    assert cli.main([*infer, "--metric", "f1", "--result_path", str(tmp_path / "f1.jsonl")]) == 0
    assert "f1: " in capsys.readouterr().out

    assert cli.main(["export", "--adapters", str(ckpt), "--merge_lora", "true"]) == 0
    merged = Path(str(ckpt) + "-merged")
    model = AutoModelForSequenceClassification.from_pretrained(merged).eval()
    assert model.config.id2label == {0: "pos", 1: "neg"}
    tok = AutoTokenizer.from_pretrained(merged)
    enc = tok([p["messages"][0]["content"] for p in preds], padding=True, return_tensors="pt")
    with torch.no_grad():
        probs = torch.softmax(model(**enc).logits, -1)
    assert torch.allclose(probs, torch.tensor([p["probs"] for p in preds]), atol=1e-4)


@pytest.mark.parametrize(
    "rows,flags,code,needle",
    [
        (
            [{"query": "a", "label": "pos"}, {"query": "b", "label": "neg"}],
            ["--num_labels", "2"],
            2,
            "label 'neg' is a string but --num_labels 2 expects integer labels",
        ),
        (
            [{"query": "a", "label": 0}, {"query": "b", "label": 3}],
            ["--num_labels", "2"],
            1,
            "data.jsonl:2: label: 3 is out of range for --num_labels 2",
        ),
        (
            [{"query": "a", "label": 0}, {"query": "b", "label": "x"}],
            ["--labels", "pos", "neg"],
            1,
            "data.jsonl:2: label: 'x' is not one of --labels pos neg",
        ),
    ],
    ids=["string_label_with_num_labels", "out_of_range", "unknown_name"],
)
def test_bad_labels_one_line(tmp_path, tiny_llama, capsys, rows, flags, code, needle):
    """`check` lists each bad row (exit 1); sft stops before the model loads, with the same line."""
    data = write_rows(tmp_path / "data.jsonl", rows)
    base = ["--model", str(tiny_llama), "--dataset", str(data), "--task_type", "seq_cls", *flags]
    assert cli.main(["check", *base]) == code
    out = capsys.readouterr()
    assert needle in out.out + out.err
    assert cli.main(["sft", *base, "--output_dir", str(tmp_path / "o"), "--report_to", "none"]) == code
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not list((tmp_path / "o").glob("*/checkpoint-*"))
