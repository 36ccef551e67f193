"""The Engine interface in-process on tiny random models: score, batching, stop handling, the PPO contract."""

from __future__ import annotations

import asyncio
import shutil

import pytest
import torch

from lmforge.infer.engine import SamplingConfig
from tests.infer.helpers import liven

QUESTIONS = ["What is 3 plus 3?", "Hello there", "Tell me a long story about a dragon", "你好", "Colors?"]


@pytest.fixture(scope="module")
def engine(tiny_llama):
    from lmforge.infer.engines import load_engine

    return load_engine(tiny_llama, dtype="float32", max_batch_size=8)


@pytest.fixture(scope="module")
def lively(tiny_llama):
    """tiny_llama with its weights scaled up: a random model at init answers greedily with newlines only."""
    from lmforge.infer.engines import load_engine

    return liven(load_engine(tiny_llama, dtype="float32", max_batch_size=8))


def _prompts(engine) -> list[list[int]]:
    return [engine.frontend.prompt_ids([{"role": "user", "content": q}]) for q in QUESTIONS]


def test_score_equals_a_direct_forward(engine):
    prompts = _prompts(engine)[:3]
    conts = [[28, 1506, 314], [3502], [253, 3502, 42, 1116, 7, 9]]
    scores = engine.score(prompts, conts)
    for p, c, s in zip(prompts, conts, scores):
        with torch.inference_mode():
            logits = engine.model(input_ids=torch.tensor([p + c])).logits[0].float()
        want = logits.log_softmax(-1)[len(p) - 1 : len(p) - 1 + len(c)].gather(-1, torch.tensor(c)[:, None])[:, 0]
        assert len(s.token_logprobs) == len(c)
        assert torch.allclose(torch.tensor(s.token_logprobs), want, atol=1e-4)
        greedy = bool((logits[len(p) - 1 : len(p) - 1 + len(c)].argmax(-1) == torch.tensor(c)).all())
        assert s.greedy == greedy and s.total == pytest.approx(float(want.sum()), abs=1e-3)
    with pytest.raises(ValueError):
        engine.score([[]], [[1]])


def test_single_token_choices_share_one_forward_per_prompt(engine):
    """Multiple choice by letter: the rows of a prompt whose continuation is one token are read from one forward over
    the prompt; their numbers equal the per-choice path's (prompt + letter + one more token, read at the letter)."""
    from lmforge.infer.scoring import score_units

    prompts, letters = _prompts(engine)[:2], [[330], [333], [345]]
    rows = [(p, c) for p in prompts for c in letters] + [(prompts[0], [253, 3502]), (prompts[1], [])]
    ps, cs = [p for p, _ in rows], [c for _, c in rows]
    assert [len(u[2]) for u in score_units(ps, cs)] == [3, 3, 1]  # two prompt forwards, one prompt + continuation
    grouped = engine.score(ps, cs, top=2)
    per_choice = engine.score(ps[:6], [c + [42] for c in cs[:6]], top=2)
    for g, one, c in zip(grouped, per_choice, cs):
        assert g.token_logprobs == pytest.approx(one.token_logprobs[:1], abs=1e-5)
        assert [t for t, _ in g.top[0]] == [t for t, _ in one.top[0]]
        assert g.greedy == (one.top[0][0][0] == c[0])
    assert grouped[6].token_logprobs == pytest.approx(engine.score([ps[6]], [cs[6]])[0].token_logprobs, abs=1e-5)
    assert grouped[7].token_logprobs == [] and grouped[7].greedy


def test_batched_greedy_equals_one_at_a_time(lively):
    prompts = _prompts(lively)
    cfg = SamplingConfig(max_new_tokens=12)
    batched = lively.generate(prompts, cfg)
    single = [lively.generate([p], cfg)[0] for p in prompts]
    assert [c.token_ids for c in batched] == [c.token_ids for c in single]
    assert [c.text for c in batched] == [c.text for c in single]
    assert len({tuple(c.token_ids) for c in batched}) > 1  # the rows really differ
    for c, p in zip(batched, prompts):
        assert c.prompt_tokens == len(p) and c.completion_tokens == len(c.token_ids) <= 12
        assert c.finish_reason in ("stop", "length") and c.logprobs is None


def test_stream_async_and_sync_agree(lively):
    prompt = _prompts(lively)[2]
    cfg = SamplingConfig(max_new_tokens=10, logprobs=3)
    whole = lively.generate([prompt], cfg)[0]
    events = list(lively.stream(prompt, cfg))
    assert "".join(e.text for e in events) == whole.text and events[-1].finish_reason == whole.finish_reason
    assert [e.logprob.token_id for e in events if e.logprob] == whole.token_ids
    assert all(len(e.logprob.top) == 3 and e.logprob.logprob <= 0 for e in events if e.logprob)

    async def both() -> tuple[list, list]:
        done = await lively.agenerate([prompt, prompt], cfg)
        pieces = [e.text async for e in lively.astream(prompt, cfg)]
        return done, pieces

    done, pieces = asyncio.run(both())
    assert [c.token_ids for c in done] == [whole.token_ids] * 2 and "".join(pieces) == whole.text


def test_stop_strings_end_the_row_and_are_cut(lively):
    prompt = _prompts(lively)[2]
    free = lively.generate([prompt], SamplingConfig(max_new_tokens=12))[0]
    stop = free.text[len(free.text) // 3 :][:2]
    assert stop.strip(), free.text
    cut = lively.generate([prompt], SamplingConfig(max_new_tokens=12, stop=(stop,)))[0]
    assert cut.finish_reason == "stop" and cut.text == free.text[: free.text.index(stop)]
    assert cut.token_ids == free.token_ids[: len(cut.token_ids)] and len(cut.token_ids) < len(free.token_ids)
    streamed = "".join(e.text for e in lively.stream(prompt, SamplingConfig(max_new_tokens=12, stop=(stop,))))
    assert streamed == cut.text


def test_sampling_is_seeded_and_ignores_generation_config(lively):
    prompt = _prompts(lively)[0]
    cfg = SamplingConfig(max_new_tokens=8)
    before = lively.generate([prompt], cfg)[0].token_ids
    gen = lively.model.generation_config
    saved = (gen.do_sample, gen.no_repeat_ngram_size, gen.temperature)
    gen.do_sample, gen.no_repeat_ngram_size, gen.temperature = True, 1, 3.0  # a checkpoint's defaults
    try:
        assert lively.generate([prompt], cfg)[0].token_ids == before  # none of them applies
    finally:
        gen.do_sample, gen.no_repeat_ngram_size, gen.temperature = saved
    hot = SamplingConfig(max_new_tokens=8, temperature=1.5, top_p=0.9, top_k=50, seed=7)
    assert lively.generate([prompt], hot)[0].token_ids == lively.generate([prompt], hot)[0].token_ids


def test_wraps_a_peft_policy_in_train_mode(tiny_llama):
    """The PPO contract: a LoRA policy being trained, eval for the call, train mode back after, ids out."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from lmforge.args import ModelArgs, TemplateArgs
    from lmforge.infer.pt import PtEngine
    from lmforge.models.setup import setup_tokenizer

    setup = setup_tokenizer(ModelArgs(model=str(tiny_llama)), TemplateArgs())
    base = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32)
    policy = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], lora_dropout=0.5))
    policy.train()
    engine = PtEngine(policy, setup.template, max_batch_size=4)
    prompts = [setup.template.prompt_ids([{"role": "user", "content": q}]) for q in QUESTIONS[:3]]
    out = engine.generate(prompts, SamplingConfig(max_new_tokens=6, temperature=1.0, seed=0))
    assert policy.training and all(m.training for m in policy.modules())  # train mode restored everywhere
    assert all(1 <= len(c.token_ids) <= 6 and all(isinstance(t, int) for t in c.token_ids) for c in out)
    again = engine.generate(prompts, SamplingConfig(max_new_tokens=6, temperature=1.0, seed=0))
    assert [c.token_ids for c in again] == [c.token_ids for c in out]  # dropout was off: eval for the call
    assert engine.capabilities.device == "cpu" and engine.capabilities.adapters == ()


def test_named_adapters_switch_per_request(tiny_llama, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from lmforge.infer.engines import load_engine

    torch.manual_seed(0)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32),
        LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )
    model.save_pretrained(tmp_path / "a")
    engine = load_engine(tiny_llama, adapters={"a": str(tmp_path / "a")}, dtype="float32")
    assert engine.capabilities.adapters == ("a",)
    prompt = _prompts(engine)[:1]
    cont = [[28, 1506, 314, 42]]
    base, with_a = engine.score(prompt, cont)[0], engine.score(prompt, cont, adapter="a")[0]
    assert base.token_logprobs != pytest.approx(with_a.token_logprobs, abs=1e-4)
    assert engine.score(prompt, cont)[0].token_logprobs == pytest.approx(base.token_logprobs, abs=1e-6)
    with pytest.raises(ValueError, match="unknown adapter"):
        engine.generate(prompt, SamplingConfig(max_new_tokens=2), adapter="nope")


def test_sampling_from_args_is_the_one_translation():
    from lmforge.args.groups import GenerationArgs
    from lmforge.infer.engine import sampling_from_args

    assert sampling_from_args(GenerationArgs(), max_new_tokens=512) == SamplingConfig(max_new_tokens=512)
    g = GenerationArgs(max_new_tokens=9, temperature=0.7, top_p=0.0 + 0.5, top_k=-1, stop_words=["END"])
    cfg = sampling_from_args(g, max_new_tokens=512)
    assert (cfg.max_new_tokens, cfg.temperature, cfg.top_p, cfg.top_k, cfg.stop) == (9, 0.7, 0.5, 0, ("END",))
    assert sampling_from_args(GenerationArgs(), max_new_tokens=512, temperature=1.0).temperature == 1.0
    with pytest.raises(ValueError):
        SamplingConfig(max_new_tokens=0)


def test_decoder_is_incremental_and_exact(smol_tok):
    from lmforge.infer.frontend import Decoder

    text = "Hello, 世界! 🐉 dragons fly over the 山 at dawn — ok?"
    ids = smol_tok(text, add_special_tokens=False)["input_ids"]
    dec = Decoder(smol_tok)
    pieces = [dec.add(t) for t in ids] + [dec.flush()]
    assert "".join(pieces) == smol_tok.decode(ids) == text
    assert all("\ufffd" not in p for p in pieces)  # half characters wait for the rest
    dec = Decoder(smol_tok, ("over",))
    pieces = [dec.add(t) for t in ids] + [dec.flush()]
    assert "".join(pieces) == text[: text.index("over")] and dec.stopped


def test_unknown_and_missing_backends_are_one_line():
    from lmforge.errors import UserError
    from lmforge.infer.engines import ENGINES, load_engine

    assert {"pt", "transformers", "vllm", "sglang", "lmdeploy"} <= set(ENGINES)
    with pytest.raises(UserError, match="--infer_backend vllm: the vllm package is not installed in "):
        load_engine(None, backend="vllm")  # a sidecar: checked in its own Python (tests/serve/test_sidecar.py)
    with pytest.raises(UserError, match="unknown"):
        load_engine(None, backend="nope")


def test_cpu_linear_fast_paths_keep_greedy_tokens_and_scores(tiny_llama, tmp_path):
    """`--cpu_linear` (thirdparty.CPU_LINEARS): the loader swaps every linear; bf16_packed (oneDNN-prepacked
    weights) gives transformers' own greedy tokens on the same weights unpacked and the same scores, int8
    (weight-only, per-channel scales) close scores (a random model's logits are flat, so its greedy tokens flip
    easily under int8; the embedded model's agreement is in bench/decode_speed.py)."""
    from lmforge.args.backend_args import BackendArgs
    from lmforge.infer.engines import load_engine
    from lmforge.thirdparty import mkldnn_bf16_supported

    if not mkldnn_bf16_supported():
        pytest.skip("no oneDNN bf16 on this CPU")
    engine = liven(load_engine(tiny_llama, dtype="bfloat16", max_batch_size=4))
    prompts = [engine.frontend.prompt_ids([{"role": "user", "content": q}]) for q in ("Hello there", "Colors?")]
    # the same engine path with the linears as loaded (the continuous loop and its attention: tokens of a random
    # bf16 model can flip at near-ties between two attention kernels, which is not what this test is about)
    want = [engine.generate([p], SamplingConfig(max_new_tokens=10))[0].token_ids for p in prompts]
    assert engine.continuous is not None and all(len(w) == 10 for w in want)
    before = engine.score(prompts, want)
    shutil.copytree(tiny_llama, tmp_path / "m")
    engine.model.save_pretrained(tmp_path / "m")  # the livened weights, loaded again through the flag
    for choice, tol in (("bf16_packed", 0.05), ("int8", 0.5)):
        opts = BackendArgs(cpu_linear=choice)
        fast = load_engine(tmp_path / "m", dtype="bfloat16", max_batch_size=4, backend_args=opts)
        assert not any(type(m) is torch.nn.Linear for m in fast.model.modules())  # all 2 x 7 + lm_head swapped
        got = [fast.generate([p], SamplingConfig(max_new_tokens=10))[0].token_ids for p in prompts]
        assert got == want if choice == "bf16_packed" else list(map(len, got)) == [10, 10], choice
        pairs = zip(before, fast.score(prompts, want))
        diffs = [abs(x - y) for b, a in pairs for x, y in zip(b.token_logprobs, a.token_logprobs)]
        assert max(diffs) < tol and sum(diffs) / len(diffs) < tol / 3, (choice, diffs)
