"""`--infer_backend llamacpp`: the embedded GGUF through llama-cpp-python gives the PyTorch engine's greedy tokens,
every llama.cpp sampler is set from the SamplingConfig (no backend default leaks), and bad input is one line."""

from __future__ import annotations

import inspect

import pytest

from tests.conftest import run_cli

llama_cpp = pytest.importorskip("llama_cpp", reason="the llamacpp extra (llama-cpp-python) is not installed")


def test_every_sampler_setting_is_passed():
    from lmforge.infer.engine import SamplingConfig
    from lmforge.infer.llamacpp import sampler_kwargs

    params = set(inspect.signature(llama_cpp.Llama.generate).parameters)
    not_sampling = {"self", "tokens", "reset", "logits_processor", "stopping_criteria", "grammar"}
    kw = sampler_kwargs(SamplingConfig(temperature=0.7, top_p=0.9, top_k=5, repetition_penalty=1.1))
    assert params - not_sampling <= set(kw), params - not_sampling - set(kw)
    assert (kw["temp"], kw["top_p"], kw["top_k"], kw["repeat_penalty"], kw["min_p"]) == (0.7, 0.9, 5, 1.1, 0.0)


def test_bad_gguf_and_adapters_are_one_line(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF but not really a model")
    r = run_cli("infer", "--model", str(bad), "--infer_backend", "llamacpp", input_text="hi\n")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "is not a GGUF model llama.cpp can load" in r.stderr, r.stderr[-800:]


def _last_logits(llama):  # noqa: ANN001, ANN202
    import numpy as np

    ptr = llama_cpp.llama_get_logits_ith(llama.ctx, -1)
    return np.ctypeslib.as_array(ptr, shape=(llama.n_vocab(),)).copy()


@pytest.mark.slow
def test_greedy_tokens_follow_pytorch_and_streams_agree():
    """Same token ids in; along the PyTorch fp32 engine's greedy answer, each of its tokens is llama.cpp's argmax or
    within 0.5 logit of it (Q4_1 arithmetic against dequantised fp32 weights can flip a near tie: "What is the
    capital of France?" starts with "The" at 25.33 vs "L" at 25.24 in PyTorch, 24.65 vs 24.74 in llama.cpp)."""
    from lmforge.infer.engine import SamplingConfig
    from lmforge.infer.engines import load_engine

    ll = load_engine(None, backend="llamacpp")
    pt = load_engine(None, dtype="float32")
    cfg = SamplingConfig(max_new_tokens=16)
    convs = [[{"role": "user", "content": q}] for q in ("What is the capital of France?", "Name three colors.")]
    prompts = [ll.frontend.prompt_ids(c) for c in convs]
    assert prompts == [pt.frontend.prompt_ids(c) for c in convs]  # one front end: the same token ids
    for prompt, want in zip(prompts, pt.generate(prompts, cfg)):
        ll.llama.reset()
        ll.llama.eval(prompt)
        for tok in want.token_ids:
            logits = _last_logits(ll.llama)
            assert logits.max() - logits[tok] < 0.5, (want.text, tok, int(logits.argmax()))
            ll.llama.eval([tok])
    got = ll.generate(prompts, cfg)
    assert all(c.completion_tokens >= 1 and c.finish_reason in ("stop", "length") for c in got)
    streamed = list(ll.stream(prompts[1], cfg))
    assert "".join(e.text for e in streamed) == got[1].text and streamed[-1].finish_reason == got[1].finish_reason


@pytest.mark.slow
def test_deploy_with_llamacpp_answers_the_openai_client_as_infer_does():
    """`lmforge deploy --infer_backend llamacpp` on the embedded GGUF, driven by the official openai client: the
    greedy answer, whole and streamed, equals the in-process engine's."""
    import openai

    from lmforge.infer.engine import SamplingConfig
    from lmforge.infer.engines import load_engine
    from lmforge.models.loader import embedded_gguf
    from tests.serve.conftest import deployed

    msg = [{"role": "user", "content": "What is the capital of France?"}]
    engine = load_engine(None, backend="llamacpp")
    want = engine.chat([msg], SamplingConfig(max_new_tokens=12))[0].text
    with deployed(embedded_gguf(), "--infer_backend", "llamacpp") as port:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0, timeout=120)
        whole = client.chat.completions.create(model="tiny", messages=msg, max_tokens=12, temperature=0)
        stream = client.chat.completions.create(model="tiny", messages=msg, max_tokens=12, temperature=0, stream=True)
        streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert whole.choices[0].message.content == want == streamed and want.strip()
