"""The OpenAI-compatible server, driven with the official `openai` client and raw HTTP."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request

import openai
import pytest

from tests.conftest import run_cli
from tests.serve.conftest import free_port

MSG = [{"role": "user", "content": "Say something"}]


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=f"{server}/v1", api_key="sk-test", max_retries=0, timeout=120)


def raw(server: str, path: str, body: bytes | None, key: str | None = "sk-test") -> tuple[int, dict]:
    req = urllib.request.Request(server + path, data=body, method="POST" if body is not None else "GET")
    req.add_header("Content-Type", "application/json")
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_models_and_api_key(client, server):
    assert [m.id for m in client.models.list().data] == ["tiny", "alpha", "beta"]
    bad = openai.OpenAI(base_url=f"{server}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    status, body = raw(server, "/v1/models", None, key=None)
    assert status == 401 and body["error"]["type"] == "authentication_error"
    with urllib.request.urlopen(f"{server}/health") as r:  # /health needs no key
        assert r.status == 200


def test_chat_non_streaming_and_streaming_agree(client):
    r = client.chat.completions.create(model="tiny", messages=MSG, max_tokens=12, temperature=0)
    text = r.choices[0].message.content
    assert r.choices[0].finish_reason in ("stop", "length") and r.usage.prompt_tokens > 0
    assert r.usage.completion_tokens > 0 and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    stream = client.chat.completions.create(model="tiny", messages=MSG, max_tokens=12, temperature=0, stream=True)
    pieces, reasons = [], []
    for chunk in stream:
        for c in chunk.choices:
            pieces.append(c.delta.content or "")
            reasons.append(c.finish_reason)
    assert "".join(pieces) == text and reasons[-1] in ("stop", "length")


def test_completions_stop_and_n(client):
    r = client.completions.create(model="tiny", prompt="Once upon a time", max_tokens=10, temperature=0)
    full = r.choices[0].text
    assert full and r.object == "text_completion"
    stop = full.strip()[:3]
    r2 = client.completions.create(model="tiny", prompt="Once upon a time", max_tokens=10, temperature=0, stop=[stop])
    assert stop not in r2.choices[0].text and r2.choices[0].finish_reason == "stop"
    r3 = client.chat.completions.create(model="tiny", messages=MSG, max_tokens=8, temperature=1.0, n=3, seed=1)
    assert [c.index for c in r3.choices] == [0, 1, 2]


def test_multi_lora_pick(client):
    outs = {
        m: client.chat.completions.create(
            model=m, messages=MSG, max_tokens=16, temperature=0, logprobs=True, top_logprobs=2
        )
        for m in ("tiny", "alpha", "beta")
    }
    assert {o.model for o in outs.values()} == {"tiny", "alpha", "beta"}
    first = {m: o.choices[0].logprobs.content[0].logprob for m, o in outs.items()}
    assert len({round(v, 4) for v in first.values()}) == 3  # three different models answered
    assert len(outs["alpha"].choices[0].logprobs.content[0].top_logprobs) == 2


@pytest.mark.parametrize(
    "body,status,needle",
    [
        (b"{not json", 400, "JSON"),
        (json.dumps({"model": "tiny"}).encode(), 400, "messages"),
        (json.dumps({"messages": "hello"}).encode(), 400, "messages"),
        (json.dumps({"messages": MSG, "max_tokens": "many"}).encode(), 400, "max_tokens"),
        (json.dumps({"messages": MSG, "temperature": -1}).encode(), 400, "temperature"),
        (json.dumps({"messages": [{"role": "wizard", "content": "x"}]}).encode(), 400, "role"),
        (json.dumps({"messages": []}).encode(), 400, "messages"),
        (json.dumps({"model": "nope", "messages": MSG}).encode(), 404, "model 'nope' not found"),
        (json.dumps({"messages": MSG, "max_tokens": 10_000_000}).encode(), 400, "exceeds the model's context"),
        (json.dumps({"messages": MSG, "pad": "x" * (10 * 2**20)}).encode(), 413, "request body over"),
    ],
)
def test_bad_requests_get_4xx(server, body, status, needle):
    got, err = raw(server, "/v1/chat/completions", body)
    assert got == status and needle in err["error"]["message"], err
    with urllib.request.urlopen(f"{server}/health") as r:  # and the server is still alive
        assert r.status == 200


def test_disconnect_mid_stream_frees_the_slot(client, server):
    req = urllib.request.Request(
        f"{server}/v1/chat/completions",
        method="POST",
        data=json.dumps({"messages": MSG, "max_tokens": 2000, "temperature": 0, "stream": True}).encode(),
    )
    req.add_header("Content-Type", "application/json")
    req.add_header("Authorization", "Bearer sk-test")
    resp = urllib.request.urlopen(req, timeout=60)
    resp.readline()  # the first event arrived: generation is running
    resp.close()  # the client goes away
    t0 = time.perf_counter()
    r = client.chat.completions.create(model="tiny", messages=MSG, max_tokens=4, temperature=0)
    assert r.choices[0].message.content is not None
    assert time.perf_counter() - t0 < 30  # not stuck behind 2000 abandoned tokens


def test_concurrent_streaming_clients(client):
    """Short version of bench/serve_load.py: 32 concurrent streaming clients, no errors."""
    errors, done = [], []

    def one(i: int) -> None:
        try:
            stream = client.chat.completions.create(
                model="tiny", messages=[{"role": "user", "content": f"n {i}"}], max_tokens=8, temperature=0, stream=True
            )
            text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
            done.append(text)
        except Exception as e:  # collected and asserted below
            errors.append(repr(e))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors and len(done) == 32


def test_busy_port_is_an_error_naming_it(tiny_qwen3):
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        r = run_cli("deploy", "--model", str(tiny_qwen3), "--port", str(port))
    assert r.returncode != 0 and f"port {port} on 127.0.0.1 is busy" in r.stderr


def test_reasoning_split():
    from lmforge.infer.frontend import ThinkingRouter, split_reasoning

    assert split_reasoning("<think>\nhmm\n</think>\n\nAnswer") == ("hmm", "Answer")
    assert split_reasoning("plain") == (None, "plain")
    parts = ThinkingRouter().route("<think>\nreason</think>\n\nanswer")
    assert parts == [("reason", "reasoning_content"), ("answer", "content")]
    router = ThinkingRouter()  # markers split over deltas
    assert router.route("<think>a") + router.route("b</think>c") == [
        ("a", "reasoning_content"),
        ("b", "reasoning_content"),
        ("c", "content"),
    ]


def test_an_image_part_to_a_text_only_model_is_a_400(client, server):
    parts = [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ]
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": parts}], max_tokens=4)
    message = exc.value.body["message"]
    assert "model 'tiny' is text-only" in message and "image_url" in message and "messages[0].content[1]" in message
    audio = [{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]
    got, body = raw(
        server, "/v1/chat/completions", json.dumps({"messages": [{"role": "user", "content": audio}]}).encode()
    )
    assert got == 400 and "input_audio" in body["error"]["message"]
    text_parts = [{"type": "text", "text": "Say"}, {"type": "text", "text": " something"}]
    r = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": text_parts}], max_tokens=4)
    assert r.choices[0].finish_reason in ("stop", "length")  # text parts alone are fine


@pytest.mark.parametrize(
    "extra,needle",
    [
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"frequency_penalty": 1}, "frequency_penalty"),
        ({"logit_bias": {"42": 5}}, "logit_bias"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"best_effort_field": 1}, "best_effort_field: unknown field"),
    ],
)
def test_fields_not_honoured_are_a_400(server, extra, needle):
    got, err = raw(server, "/v1/chat/completions", json.dumps({"messages": MSG, "max_tokens": 2, **extra}).encode())
    assert got == 400 and needle in err["error"]["message"], err


def test_neutral_values_of_those_fields_are_fine(client):
    r = client.chat.completions.create(
        model="tiny",
        messages=MSG,
        max_tokens=3,
        temperature=0,
        presence_penalty=0,
        frequency_penalty=0,
        response_format={"type": "text"},
        user="someone",
    )
    assert r.choices[0].message.content is not None


def test_completion_logprobs_are_returned(client):
    r = client.completions.create(model="alpha", prompt="Once upon a time", max_tokens=5, temperature=0, logprobs=2)
    lp = r.choices[0].logprobs
    assert lp is not None and len(lp.tokens) == len(lp.token_logprobs) == r.usage.completion_tokens
    assert all(len(t) == 2 for t in lp.top_logprobs) and lp.text_offset[0] == 0
    assert all(v <= 0 for v in lp.token_logprobs)


def test_usage_chunk_only_when_asked(client):
    def chunks(**kw):
        return list(client.chat.completions.create(model="tiny", messages=MSG, max_tokens=4, stream=True, **kw))

    assert all(c.usage is None for c in chunks())
    last = chunks(stream_options={"include_usage": True})[-1]
    assert last.usage is not None and last.usage.completion_tokens > 0 and last.choices == []


def test_a_streamed_answer_equals_the_whole_one_with_n_choices(client):
    kw = {"model": "beta", "messages": MSG, "max_tokens": 10, "temperature": 0, "n": 2}
    whole = client.chat.completions.create(**kw)
    texts = ["", ""]
    for chunk in client.chat.completions.create(**kw, stream=True):
        for c in chunk.choices:
            texts[c.index] += c.delta.content or ""
    assert texts == [c.message.content for c in whole.choices]
