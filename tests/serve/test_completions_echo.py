"""`/v1/completions` as lm-eval's `local-completions` uses it: token-id prompts, `echo` with prompt logprobs,
`logprobs: N`, `max_tokens: 0`; driven with the official `openai` client against a real `lmforge deploy`."""

from __future__ import annotations

import json

import openai
import pytest

from tests.serve.test_deploy import raw


@pytest.fixture(scope="module")
def direct(tiny_qwen3):
    """log_softmax of one plain forward pass of the served weights, in the dtype deploy loads them in."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lmforge.models.loader import resolve_dtype

    model = AutoModelForCausalLM.from_pretrained(tiny_qwen3, dtype=resolve_dtype(None)).eval()
    tok = AutoTokenizer.from_pretrained(tiny_qwen3)

    def logprobs(ids: list[int]):
        with torch.inference_mode():
            return model(input_ids=torch.tensor([ids])).logits[0].float().log_softmax(-1)

    return logprobs, tok


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=f"{server}/v1", api_key="sk-test", max_retries=0, timeout=120)


def test_echo_scores_a_token_id_prompt_exactly(client, direct):
    logprobs, tok = direct
    ids = tok("The quick brown fox jumps over the lazy dog", add_special_tokens=False)["input_ids"]
    r = client.completions.create(model="tiny", prompt=ids, echo=True, max_tokens=0, logprobs=3, temperature=0)
    (choice,) = r.choices
    lp = choice.logprobs
    want = logprobs(ids)
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    expected = [float(want[i - 1, t]) for i, t in enumerate(ids) if i]
    assert lp.token_logprobs[1:] == pytest.approx(expected, abs=1e-5)
    for i in range(1, len(ids)):  # top-3 per position: the three best ids of the forward pass, same numbers
        best = want[i - 1].topk(3)
        got = lp.top_logprobs[i]
        assert sorted(got.values(), reverse=True) == pytest.approx(best.values.tolist(), abs=1e-5)
        assert set(got) == {tok.convert_tokens_to_string([tok.convert_ids_to_tokens(t)]) for t in best.indices.tolist()}
    assert lp.tokens == [tok.convert_tokens_to_string([t]) for t in tok.convert_ids_to_tokens(ids)]
    assert "".join(lp.tokens) == choice.text == tok.decode(ids)
    assert lp.text_offset == [sum(len(t) for t in lp.tokens[:i]) for i in range(len(ids))]
    assert r.usage.prompt_tokens == len(ids) and r.usage.completion_tokens == 0


def test_lm_eval_request_shape(server, direct):
    """What local-completions sends for log-likelihood: a batch of token-id lists, max_tokens 1, logprobs 1."""
    logprobs, tok = direct
    batch = [tok(t, add_special_tokens=False)["input_ids"] for t in ("Paris is in France", "Two plus two is four")]
    body = {"model": "tiny", "prompt": batch, "temperature": 0, "max_tokens": 1, "logprobs": 1, "seed": 1234}
    status, r = raw(server, "/v1/completions", json.dumps({**body, "echo": True}).encode())
    assert status == 200, r
    assert [c["index"] for c in r["choices"]] == [0, 1]
    for ids, c in zip(batch, r["choices"]):
        lp = c["logprobs"]
        assert len(lp["token_logprobs"]) == len(lp["top_logprobs"]) == len(ids) + 1  # prompt + the generated token
        want = logprobs(ids)
        ctx = 2  # lm-eval sums [ctxlen:-1] and calls it greedy when each token equals its position's top value
        got = lp["token_logprobs"][ctx:-1]
        assert got == pytest.approx([float(want[i - 1, ids[i]]) for i in range(ctx, len(ids))], abs=1e-5)
        greedy = all(t == max(top.values()) for t, top in zip(got, lp["top_logprobs"][ctx:-1]))
        assert greedy == all(int(want[i - 1].argmax()) == ids[i] for i in range(ctx, len(ids)))
        # the generated token is greedy (temperature 0), so its logprob is its position's best
        assert lp["token_logprobs"][-1] == pytest.approx(float(want[-1].max()), abs=1e-5)
    # a string prompt echoes its text in front of the generated one
    status, r = raw(server, "/v1/completions", json.dumps({**body, "prompt": "Hello", "echo": True}).encode())
    assert status == 200 and r["choices"][0]["text"].startswith("Hello"), r


@pytest.mark.parametrize(
    "extra, needle",
    [
        ({"prompt": "hi", "max_tokens": 0}, "max_tokens: 0 generates nothing"),
        ({"prompt": "hi", "echo": True, "stream": True}, "echo: not supported with stream"),
        ({"prompt": [5, 10**9], "echo": True, "max_tokens": 0}, "prompt[0]: token id 1000000000 is outside"),
        ({"prompt": [], "max_tokens": 1}, "prompt: one prompt"),
        ({"prompt": [[]], "max_tokens": 1}, "prompt: empty"),
        ({"prompt": "hi", "max_tokens": -1}, "max_tokens"),
        ({"prompt": "hi", "logprobs": 21}, "logprobs"),
    ],
)
def test_bad_combinations_are_a_400(server, extra, needle):
    status, r = raw(server, "/v1/completions", json.dumps({"model": "tiny", **extra}).encode())
    assert status == 400 and needle in r["error"]["message"], r
