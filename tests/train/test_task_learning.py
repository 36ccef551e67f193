"""The issue's learning claims on the embedded SmolLM2-135M, through the CLI: a two-class sentiment classifier
(chat template on) reaches >= 90% held-out accuracy after a short LoRA run; InfoNCE raises held-out recall@1 to at
least twice the base model's; a reranker's held-out MRR rises. The 135M runs take minutes on 2 cores, so they run on
request (LMFORGE_LEARNING_TESTS=1); the default suite shows the same claims on a tiny model (test_seq_cls.py,
test_embedding.py, test_reranker.py). Figures measured by hand are in the README."""

from __future__ import annotations

import os

import pytest

from lmforge import cli
from tests.train.helpers import only_run
from tests.train.test_embedding import TOPICS, base_recall, metric, paraphrase_rows, write_rows
from tests.train.test_reranker import held_out_mrr, rerank_rows
from tests.train.test_seq_cls import sentiment_rows

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.environ.get("LMFORGE_LEARNING_TESTS"), reason="set LMFORGE_LEARNING_TESTS=1 (~10 min)"),
]


def train(tmp_path, data, steps: int, lr: str, batch: int, *flags: str):
    """A LoRA run of the embedded model (no --model: the default); returns its last checkpoint."""
    argv = ["sft", "--dataset", str(data), "--max_steps", str(steps), "--learning_rate", lr]
    argv += ["--save_steps", str(steps), "--per_device_train_batch_size", str(batch)]
    argv += ["--gradient_accumulation_steps", "1", "--report_to", "none", "--torch_dtype", "float32"]
    argv += ["--logging_steps", "1"]
    assert cli.main([*argv, *flags, "--output_dir", str(tmp_path / "o")]) == 0
    return only_run(tmp_path / "o") / f"checkpoint-{steps}"


def test_smollm2_sentiment_classifier(tmp_path, capsys):
    data = write_rows(tmp_path / "train.jsonl", sentiment_rows(128, 0))
    test = write_rows(tmp_path / "test.jsonl", sentiment_rows(32, 1))
    # the chat template with a short system turn (the default one doubles the tokens of every step)
    flags = ["--task_type", "seq_cls", "--labels", "pos", "neg", "--system", "Sentiment."]
    ckpt = train(tmp_path, data, 16, "5e-4", 8, *flags)
    capsys.readouterr()
    assert cli.main(["infer", "--adapters", str(ckpt), "--val_dataset", str(test), "--metric", "acc"]) == 0
    acc = metric(capsys.readouterr().out, "acc")
    print("seq_cls held-out acc", acc)
    assert acc >= 0.9, acc


def test_smollm2_infonce_doubles_recall(tmp_path, capsys):
    data = write_rows(tmp_path / "train.jsonl", paraphrase_rows(TOPICS[:32], 64, 0))
    test = write_rows(tmp_path / "test.jsonl", paraphrase_rows(TOPICS[32:], 16, 1))
    flags = ["--task_type", "embedding", "--loss_type", "infonce", "--system", "Embed."]
    ckpt = train(tmp_path, data, 24, "5e-4", 8, *flags)
    capsys.readouterr()
    assert cli.main(["infer", "--adapters", str(ckpt), "--val_dataset", str(test), "--metric", "recall@1"]) == 0
    trained = metric(capsys.readouterr().out, "recall@1")
    base = base_recall(ckpt, test, capsys)
    print("infonce held-out recall@1 base", base, "trained", trained)
    assert trained >= 2 * base, (base, trained)


def test_smollm2_reranker_mrr_rises(tmp_path, capsys):
    data = write_rows(tmp_path / "train.jsonl", rerank_rows(TOPICS[:32], 64, 0))
    test = write_rows(tmp_path / "test.jsonl", rerank_rows(TOPICS[32:], 16, 1))
    flags = ["--task_type", "generative_reranker", "--loss_type", "listwise_reranker", "--use_chat_template", "false"]
    ckpt = train(tmp_path, data, 10, "1e-3", 2, *flags)
    trained, base = held_out_mrr(ckpt, test, capsys, False), held_out_mrr(ckpt, test, capsys, True)
    print("generative_reranker held-out mrr base", base, "trained", trained)
    assert trained > base + 0.1, (base, trained)
