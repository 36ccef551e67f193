"""The embedded model learns to call tools: a short LoRA fine-tune on synthetic single-tool conversations lifts
the held-out tool-call parse rate from its base figure to >= 80% (`lmforge infer --metric toolcall`), and the
official openai SDK's two-turn tool loop (call, tool result, final answer) works against `lmforge deploy`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import openai
import pytest

from tests.agent.helpers import CITIES, HELD_OUT, tool_row, write_tool_data
from tests.conftest import run_cli
from tests.serve.conftest import free_port, stop_server, wait_ready
from tests.train.helpers import only_run


def _called(client: openai.OpenAI, model: str, row: dict) -> bool:
    r = client.chat.completions.create(
        model=model, messages=row["messages"][:1], tools=row["tools"], max_tokens=40, temperature=0
    )
    return r.choices[0].finish_reason == "tool_calls" and bool(r.choices[0].message.tool_calls)


# 16 steps of the 135M model, then infer and a server: over 10 minutes inside the 2-core suite (it timed out at 600 s
# in CI beside the other worker), so it runs on request; the figures it checks were measured by hand (see README)
@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("LMFORGE_LEARNING_TESTS"), reason="set LMFORGE_LEARNING_TESTS=1 (~10 min)")
def test_tool_finetune_learns_and_serves_the_sdk_loop(tmp_path):
    train = write_tool_data(tmp_path / "train.jsonl", CITIES)
    val = write_tool_data(tmp_path / "val.jsonl", HELD_OUT[:4], seed=1, with_answer=False)
    r = run_cli(
        "sft",
        "--dataset",
        str(train),
        "--max_steps",
        "16",
        "--learning_rate",
        "3e-3",
        "--per_device_train_batch_size",
        "4",
        "--gradient_accumulation_steps",
        "1",
        "--save_steps",
        "16",
        "--output_dir",
        str(tmp_path / "out"),
    )
    assert r.returncode == 0, r.stderr[-2000:]
    ckpt = only_run(tmp_path / "out") / "checkpoint-16"
    r = run_cli(
        "infer",
        "--adapters",
        str(ckpt),
        "--val_dataset",
        str(val),
        "--metric",
        "toolcall",
        "--max_new_tokens",
        "40",
        "--max_batch_size",
        "12",
        "--result_path",
        str(tmp_path / "res.jsonl"),
    )
    assert r.returncode == 0, r.stderr[-2000:]
    scores = dict(re.findall(r"(parse_rate|name_acc|args_equal): ([0-9.]+)", r.stdout))
    assert float(scores["parse_rate"]) >= 0.8 and float(scores["name_acc"]) >= 0.8, r.stdout

    port = free_port()
    cmd = [sys.executable, "-m", "lmforge", "deploy", "--adapters", f"tools={ckpt}", "--port", str(port)]
    proc = subprocess.Popen(
        [*cmd, "--served_model_name", "base", "--log_level", "warning"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_ready(proc, port)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0, timeout=300)
        rows = [json.loads(line) for line in val.read_text().splitlines()][:4]
        base = sum(_called(client, "base", row) for row in rows) / len(rows)
        tuned = sum(_called(client, "tools", row) for row in rows) / len(rows)
        assert tuned >= 0.75 and tuned > base, (base, tuned)

        # the SDK agent loop: the model calls, the 'tool' answers, the model reports
        import random

        row = tool_row("get_weather", "Madrid", random.Random(0), with_answer=False)
        msgs = row["messages"][:1]
        first = client.chat.completions.create(
            model="tools", messages=msgs, tools=row["tools"], max_tokens=40, temperature=0
        )
        call = first.choices[0].message.tool_calls[0]
        assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Madrid"}
        msgs.append(first.choices[0].message.model_dump(exclude_none=True))
        msgs.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps({"result": "sunny"})})
        final = client.chat.completions.create(
            model="tools", messages=msgs, tools=row["tools"], max_tokens=24, temperature=0
        )
        answer = final.choices[0].message
        assert final.choices[0].finish_reason == "stop" and not answer.tool_calls and "Madrid" in answer.content
    finally:
        stop_server(proc)
