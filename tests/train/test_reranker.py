"""`sft --task_type reranker|generative_reranker` on a tiny random llama, as a user runs it: a short LoRA run raises
held-out MRR (unseen topics; each query ranks its positive among 3 negatives) above the base model's, read from
`lmforge infer --metric mrr`; bad rows are one line."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

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
    check_export(ckpt, task, test, rows[0]["scores"])
    if task == "generative_reranker":  # the served routes, on one of the two (one deploy keeps the test short)
        check_deploy(ckpt, test, rows)


def check_export(ckpt, task: str, test, want: list[float]) -> None:
    """`export --merge_lora true`: transformers' own classes load the merged checkpoint and score the first held-out
    query's documents as base + adapter did (infer's scores): the head's logit, or logit(yes) - logit(no) at the
    last position of the plain-text prompt (the run's --use_chat_template false)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    assert cli.main(["export", "--adapters", str(ckpt), "--merge_lora", "true"]) == 0
    merged = Path(f"{ckpt}-merged")
    first = json.loads(test.read_text().splitlines()[0])
    docs = [first["response"], *first["rejected_response"]]
    tok = AutoTokenizer.from_pretrained(merged, padding_side="left")
    with torch.no_grad():
        if task == "reranker":
            model = AutoModelForSequenceClassification.from_pretrained(merged).eval()
            enc = tok([f"<Query>: {first['query']}\n<Document>: {d}" for d in docs], padding=True, return_tensors="pt")
            got = model(**enc).logits[:, 0]
        else:
            model = AutoModelForCausalLM.from_pretrained(merged).eval()
            yes, no = json.loads((merged / "args.json").read_text())["answer_token_ids"]
            texts = [f"<Query>: {first['query']}\n<Document>: {d}\nRelevant:" for d in docs]
            logits = model(**tok(texts, padding=True, return_tensors="pt")).logits[:, -1]
            got = logits[:, yes] - logits[:, no]
    assert type(model).__name__.startswith("Llama")
    assert torch.allclose(got, torch.tensor(want), atol=1e-4), (got, want)


def check_deploy(ckpt, test, rows: list[dict]) -> None:
    """The deploy app (`lmforge deploy`'s task_serving + build_app, in-process: the embedding test runs the real
    server) answers vLLM's /v1/rerank and /v1/score, and their /rerank, /v2/rerank and /score aliases, with
    sigmoid(infer's scores), behind the key."""
    from fastapi.testclient import TestClient

    from lmforge.args import parse_flags
    from lmforge.serve.app import build_app
    from lmforge.serve.tasks_routes import task_serving

    first = json.loads(test.read_text().splitlines()[0])
    docs = [first["response"], *first["rejected_response"]]
    want = [1 / (1 + math.exp(-x)) for x in rows[0]["scores"]]
    served = task_serving(parse_flags(["--adapters", str(ckpt), "--api_key", "k"], cli.COMMANDS["deploy"].groups))
    with TestClient(build_app(served.state, served.runner), headers={"Authorization": "Bearer k"}) as http:
        for route in ("/v1/rerank", "/v2/rerank", "/rerank"):
            r = http.post(route, json={"query": first["query"], "documents": docs, "top_n": 2})
            assert r.status_code == 200, (route, r.text)
            body = r.json()
            assert body["id"].startswith("rerank-") and body["usage"]["total_tokens"] > 0
            best = sorted(range(4), key=lambda i: -want[i])[:2]
            assert [x["index"] for x in body["results"]] == best
            for x in body["results"]:
                assert x["document"]["text"] == docs[x["index"]]
                assert abs(x["relevance_score"] - want[x["index"]]) < 1e-5
        for route in ("/v1/score", "/score"):
            r = http.post(route, json={"text_1": first["query"], "text_2": docs})
            assert r.status_code == 200, (route, r.text)
            data = r.json()["data"]
            assert [d["object"] for d in data] == ["score"] * 4
            assert max(abs(d["score"] - w) for d, w in zip(data, want)) < 1e-5
        pairwise = http.post("/v1/score", json={"text_1": [first["query"]] * 2, "text_2": docs[:2]}).json()["data"]
        assert [round(d["score"], 5) for d in pairwise] == [round(w, 5) for w in want[:2]]
        bad = [
            ("/v1/rerank", {"query": "q", "documents": []}, "must not be empty"),
            ("/rerank", {"query": "q", "documents": ["d"], "top_k": 1}, "top_k"),
            ("/v1/score", {"text_1": ["a", "b"], "text_2": ["c", "d", "e"]}, "give one text_1 or as many"),
            ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}, "use /v1/rerank"),
            ("/v1/embeddings", {"input": "hi"}, "/v1/embeddings needs a --task_type embedding model"),
        ]
        for route, payload, needle in bad:
            r = http.post(route, json=payload)
            assert r.status_code == 400 and needle in r.text, (route, r.status_code, r.text)
        no_key = http.post("/score", json={"text_1": "a", "text_2": "b"}, headers={"Authorization": "Bearer no"})
        assert no_key.status_code == 401


@pytest.mark.parametrize(
    "task,flags,needle",
    [
        ("reranker", [], "data.jsonl:2: rejected_response: a reranker row needs a positive and at least one negative"),
        ("reranker", ["--loss_type", "infonce"], "--loss_type infonce: not a reranker loss"),
        (
            "generative_reranker",
            ["--generative_reranker_positive_token", "absolutely relevant"],
            "--generative_reranker_positive_token 'absolutely relevant' is 3 tokens for this tokenizer",
        ),
    ],
    ids=["row_without_negative", "embedding_loss", "multi_token_answer"],
)
def test_bad_reranker_input_one_line(tmp_path, tiny_llama, capsys, task, flags, needle):
    rows = [{"query": "a", "response": "b", "rejected_response": ["c", "d"]}, {"query": "x", "response": "y"}]
    data = write_rows(tmp_path / "data.jsonl", rows)
    argv = ["sft", "--model", str(tiny_llama), "--dataset", str(data), "--task_type", task, *flags]
    assert cli.main([*argv, "--output_dir", str(tmp_path / "o"), "--report_to", "none"]) != 0
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_generative_prompt_is_qwen3_rerankers(qwen_tok):
    """On Qwen3's real template the prompt is Qwen3-Reranker's, token for token (its model card builds it as prefix
    ids + `<Instruct>/<Query>/<Document>` ids + suffix ids), and yes/no are its answer tokens."""
    from lmforge.models.rerank import answer_tokens, pair_text
    from lmforge.templates import get_template
    from lmforge.templates.encode import ChatTemplate

    prefix = (
        "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the Instruct "
        'provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n'
    )
    suffix = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    body = (
        "<Instruct>: Given a web search query, retrieve relevant passages that answer the query\n"
        "<Query>: What is the capital of China?\n<Document>: The capital of China is Beijing."
    )
    query = [{"role": "user", "content": "What is the capital of China?"}]
    doc = [{"role": "assistant", "content": "The capital of China is Beijing."}]
    for thinking in (None, True):  # the run's --enable_thinking does not change the reranker's prompt
        template = ChatTemplate(qwen_tok, get_template("qwen3"), enable_thinking=thinking)
        text = pair_text(query, doc, template, True, True)
        assert text == prefix + body + suffix
    ids = qwen_tok(text, add_special_tokens=False)["input_ids"]
    card = [qwen_tok.encode(x, add_special_tokens=False) for x in (prefix, body, suffix)]
    assert ids == card[0] + card[1] + card[2]
    assert answer_tokens(qwen_tok, None, None) == tuple(qwen_tok.convert_tokens_to_ids(["yes", "no"]))
