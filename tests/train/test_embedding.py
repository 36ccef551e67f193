"""`sft --task_type embedding` on a tiny random llama, as a user runs it: InfoNCE raises held-out recall@1 (unseen
topics) to at least twice the base model's; infer writes .jsonl + .npy; the merged export loads in
sentence-transformers with the same vectors; `lmforge deploy` answers the official openai client's
`embeddings.create` (base64 and float) with infer's vectors; bad rows and flags are one line."""

from __future__ import annotations

import contextlib
import json
import random
import time
from pathlib import Path

import numpy as np
import pytest

from lmforge import cli
from tests.serve.conftest import free_port
from tests.train.helpers import only_run

TOPICS = (
    "cats dogs rain pizza guitar soccer trains coffee moon books bread ocean tigers snow pasta piano tennis planes "
    "tea stars poems cheese rivers wolves storms salad violin chess ships juice comets novels apples lakes horses "
    "wind soup drums golf boats milk planets songs grapes forests"
).split()


def paraphrase_rows(topics: list[str], n: int, seed: int) -> list[dict]:
    rnd = random.Random(seed)
    asks, says = ["Tell me about", "What do you know of", "Explain", "Describe"], ["A passage on", "Notes on"]
    return [
        {
            "query": f"{rnd.choice(asks)} {topics[i % len(topics)]}",
            "response": f"{rnd.choice(says)} {topics[i % len(topics)]}.",
        }
        for i in range(n)
    ]


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def metric(out: str, name: str) -> float:
    line = next(x for x in out.splitlines() if f"{name}: " in x)
    return float(line.split(f"{name}: ")[1].split()[0])


def base_recall(ckpt: Path, data: Path, capsys) -> float:
    """The same checkpoint with its adapter switched off: the base model's figure."""
    from lmforge.args import parse_flags
    from lmforge.infer.run import batch_rows
    from lmforge.infer.task_batch import task_batch
    from lmforge.infer.task_runner import load_runner
    from lmforge.runargs import resolve_model

    argv = ["--adapters", str(ckpt), "--val_dataset", str(data), "--metric", "recall@1"]
    args = parse_flags(argv, cli.COMMANDS["infer"].groups)
    resolved = resolve_model(args, True)
    runner = load_runner(resolved)
    capsys.readouterr()
    with runner.model.disable_adapter():
        task_batch(args, resolved, batch_rows(args, resolved.saved), data.with_name("base.jsonl"), runner)
    return metric(capsys.readouterr().out, "recall@1")


@contextlib.contextmanager
def deployed_in_thread(monkeypatch, argv: list[str]):
    """`lmforge deploy ARGV` through the CLI (flag checks, task serving, a uvicorn server on a real port) in a thread
    of this process, where torch is already imported (a subprocess would import it again); stopped at the end."""
    import threading
    import urllib.request

    import uvicorn

    servers: list = []

    def run(app, **kwargs) -> None:  # uvicorn.run, keeping the server so that the test can stop it
        servers.append(uvicorn.Server(uvicorn.Config(app, **kwargs)))
        servers[-1].run()

    monkeypatch.setattr(uvicorn, "run", run)
    port = free_port()
    thread = threading.Thread(target=cli.main, args=(["deploy", *argv, "--port", str(port)],), daemon=True)
    thread.start()
    deadline = time.time() + 240
    while True:
        assert thread.is_alive() and time.time() < deadline, "deploy did not start"
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            break
        except OSError:
            time.sleep(0.2)
    try:
        yield port
    finally:
        servers[0].should_exit = True
        thread.join(30)


def test_infonce_learns_infer_export_deploy(tmp_path, tiny_llama, capsys, monkeypatch):
    import openai
    from sentence_transformers import SentenceTransformer

    train = write_rows(tmp_path / "train.jsonl", paraphrase_rows(TOPICS[:32], 64, 0))
    test = write_rows(tmp_path / "test.jsonl", paraphrase_rows(TOPICS[32:], 16, 1))
    argv = ["sft", "--model", str(tiny_llama), "--dataset", str(train), "--task_type", "embedding"]
    argv += ["--loss_type", "infonce", "--max_steps", "20", "--learning_rate", "3e-3", "--save_steps", "20"]
    argv += ["--per_device_train_batch_size", "8", "--gradient_accumulation_steps", "1", "--report_to", "none"]
    assert cli.main([*argv, "--torch_dtype", "float32", "--output_dir", str(tmp_path / "o")]) == 0
    ckpt = only_run(tmp_path / "o") / "checkpoint-20"
    saved = json.loads((ckpt / "args.json").read_text())
    assert (saved["task_type"], saved["pooling"], saved["resolved_infonce_temperature"]) == ("embedding", "last", 0.1)

    result = tmp_path / "emb.jsonl"
    capsys.readouterr()
    infer = ["infer", "--adapters", str(ckpt), "--val_dataset", str(test), "--result_path", str(result)]
    assert cli.main([*infer, "--metric", "recall@1"]) == 0
    trained = metric(capsys.readouterr().out, "recall@1")
    base = base_recall(ckpt, test, capsys)
    assert trained >= 2 * base and trained > 0.5, (base, trained)
    vectors = np.load(result.with_suffix(".npy"))
    records = [json.loads(x) for x in result.read_text().splitlines()]
    assert vectors.shape == (16, 64) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert np.allclose(np.array([r["embedding"] for r in records]), vectors)

    assert cli.main(["export", "--adapters", str(ckpt), "--merge_lora", "true"]) == 0
    st = SentenceTransformer(str(ckpt) + "-merged", device="cpu")
    tok = st[0].tokenizer
    texts = [tok.apply_chat_template(r["messages"], tokenize=False) + tok.eos_token for r in records]
    assert np.abs(st.encode(texts) - vectors).max() < 1e-5

    with deployed_in_thread(monkeypatch, ["--adapters", str(ckpt), "--api_key", "k"]) as port:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k", max_retries=0)
        name = client.models.list().data[0].id
        queries = [r["messages"][-1]["content"] for r in records]
        got = client.embeddings.create(model=name, input=queries)  # the client asks for base64 and decodes it
        assert np.abs(np.array([d.embedding for d in got.data]) - vectors).max() < 1e-6
        assert got.usage.prompt_tokens == got.usage.total_tokens > 16
        one = client.embeddings.create(model=name, input=queries[3], encoding_format="float")
        assert np.abs(np.array(one.data[0].embedding) - vectors[3]).max() < 1e-6
        ids = tok(texts[3])["input_ids"]  # token ids in (OpenAI's other input form) reach the model as they are
        by_ids = client.embeddings.create(model=name, input=[ids, ids[:-1]], encoding_format="float")
        assert np.abs(np.array(by_ids.data[0].embedding) - vectors[3]).max() < 1e-5
        assert by_ids.usage.prompt_tokens == 2 * len(ids) - 1
        with pytest.raises(openai.BadRequestError, match=r"input\[0\]: token id 10000000 is outside the vocabulary"):
            client.embeddings.create(model=name, input=[10**7])
        with pytest.raises(openai.BadRequestError, match="task is embedding, not chat: use /v1/embeddings"):
            client.chat.completions.create(model=name, messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(openai.BadRequestError, match="must not be empty"):
            client.embeddings.create(model=name, input=[])
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="no").embeddings.create(model=name, input="x")


def test_embeddings_route_on_a_chat_model_names_the_task():
    from fastapi.testclient import TestClient

    from lmforge.infer.engine import SamplingConfig
    from lmforge.serve.app import build_app
    from lmforge.serve.state import ServeState

    app = build_app(ServeState(None, "chat-model", {}, SamplingConfig()))  # the task routes never touch the engine
    r = TestClient(app).post("/v1/embeddings", json={"input": "hello"})
    assert r.status_code == 400
    assert "/v1/embeddings needs a --task_type embedding model; 'chat-model' has task causal_lm" in r.text


@pytest.mark.parametrize(
    "rows,flags,needle",
    [
        (
            [{"query": "a"}, {"query": "c"}],
            ["--per_device_train_batch_size", "2"],
            "response: --loss_type infonce needs a positive for each anchor",
        ),
        (
            [{"query": "a", "response": "b"}, {"query": "c", "response": "d"}],
            ["--per_device_train_batch_size", "1"],
            "--loss_type infonce with a batch of 1 and no hard negatives has no negatives to contrast",
        ),
        (
            [{"query": "a", "response": "b"}],
            ["--loss_type", "cosine_similarity"],
            "data.jsonl:1: label: --loss_type cosine_similarity needs a number per pair",
        ),
    ],
    ids=["infonce_without_response", "infonce_batch_of_1", "pair_without_label"],
)
def test_bad_embedding_input_one_line(tmp_path, tiny_llama, capsys, rows, flags, needle):
    data = write_rows(tmp_path / "data.jsonl", rows)
    argv = ["sft", "--model", str(tiny_llama), "--dataset", str(data), "--task_type", "embedding", *flags]
    assert cli.main([*argv, "--output_dir", str(tmp_path / "o"), "--report_to", "none"]) != 0
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_pooling_follows_the_model_family(tmp_path):
    """Without --pooling: the last token for decoder families (Qwen3-Embedding's), the first ([CLS]) for BERT-style
    encoders (gte-modernbert's), as ms-swift's embedding models; padding on either side finds the real tokens."""
    import torch

    from lmforge.models.pooling import pool, pooling_for

    for model_type, want in (("qwen3", "last"), ("llama", "last"), ("modernbert", "cls"), ("some_new_lm", "last")):
        (tmp_path / "config.json").write_text(json.dumps({"model_type": model_type}))
        assert pooling_for(tmp_path) == want, model_type
    assert pooling_for(tmp_path, "mean") == "mean"
    hidden = torch.randn(2, 4, 8)
    mask = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 0]])  # left-padded, right-padded
    unit = torch.nn.functional.normalize
    assert torch.allclose(pool(hidden, mask, "cls"), unit(torch.stack([hidden[0, 1], hidden[1, 0]]), dim=-1))
    assert torch.allclose(pool(hidden, mask, "last"), unit(torch.stack([hidden[0, 3], hidden[1, 2]]), dim=-1))
    mean = torch.stack([hidden[0, 1:].mean(0), hidden[1, :3].mean(0)])
    assert torch.allclose(pool(hidden, mask, "mean"), unit(mean, dim=-1), atol=1e-6)
