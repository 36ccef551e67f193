"""`sft --task_type reranker|generative_reranker` on a tiny random llama, as a user runs it: a short LoRA run raises
held-out MRR (unseen topics; each query ranks its positive among 3 negatives) above the base model's, read from
`lmforge infer --metric mrr`; bad rows are one line."""

from __future__ import annotations

import json
import random

import pytest

from lmforge import cli
from tests.train.helpers import only_run
from tests.train.test_embedding import TOPICS, metric, write_rows


def rerank_rows(topics: list[str], n: int, seed: int) -> list[dict]:
    rnd = random.Random(seed)
    rows = []
    for i in range(n):
        topic = topics[i % len(topics)]
        other = rnd.choice([t for t in topics if t != topic])
        # negatives: a passage on another topic (relevance by matching) and spam (relevance by kind)
        negatives = [f"A passage on {other}.", f"Buy cheap {topic} now!", f"Buy cheap {other} now!"]
        rows.append(
            {"query": f"Tell me about {topic}", "response": f"A passage on {topic}.", "rejected_response": negatives}
        )
    return rows


def held_out_mrr(ckpt, data, capsys, base: bool) -> float:
    """`lmforge infer --metric mrr`; `base`: the same checkpoint with its adapter switched off."""
    from lmforge.args import parse_flags
    from lmforge.infer.run import batch_rows
    from lmforge.infer.task_batch import task_batch
    from lmforge.infer.task_runner import load_runner
    from lmforge.runargs import resolve_model

    result = data.with_name(f"scores-{ckpt.parent.name}-{base}.jsonl")
    argv = ["--adapters", str(ckpt), "--val_dataset", str(data), "--metric", "mrr", "--result_path", str(result)]
    capsys.readouterr()
    if not base:
        assert cli.main(["infer", *argv]) == 0
        return metric(capsys.readouterr().out, "mrr")
    args = parse_flags(argv, cli.COMMANDS["infer"].groups)
    resolved = resolve_model(args, True)
    runner = load_runner(resolved)
    with runner.model.disable_adapter():
        task_batch(args, resolved, batch_rows(args, resolved.saved), result, runner)
    return metric(capsys.readouterr().out, "mrr")


@pytest.mark.parametrize(
    "task,loss", [("reranker", "pointwise_reranker"), ("generative_reranker", "listwise_reranker")]
)
def test_reranker_learns(tmp_path, tiny_llama, capsys, task, loss):
    train = write_rows(tmp_path / "train.jsonl", rerank_rows(TOPICS[:32], 64, 0))
    test = write_rows(tmp_path / "test.jsonl", rerank_rows(TOPICS[32:], 16, 1))
    argv = ["sft", "--model", str(tiny_llama), "--dataset", str(train), "--task_type", task, "--loss_type", loss]
    argv += ["--max_steps", "20", "--learning_rate", "5e-3", "--save_steps", "20", "--use_chat_template", "false"]
    argv += ["--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "1", "--report_to", "none"]
    assert cli.main([*argv, "--torch_dtype", "float32", "--output_dir", str(tmp_path / "o")]) == 0
    ckpt = only_run(tmp_path / "o") / "checkpoint-20"
    saved = json.loads((ckpt / "args.json").read_text())
    assert (saved["task_type"], saved["resolved_loss_type"]) == (task, loss)
    trained, base = held_out_mrr(ckpt, test, capsys, False), held_out_mrr(ckpt, test, capsys, True)
    print(task, loss, "base", base, "trained", trained)
    assert trained > base + 0.15 and trained > 0.7, (base, trained)
    rows = [json.loads(x) for x in (tmp_path / f"scores-{ckpt.parent.name}-False.jsonl").read_text().splitlines()]
    assert len(rows) == 16 and all(len(r["scores"]) == 4 for r in rows)
