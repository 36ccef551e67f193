"""Continuous batching in the PyTorch engine (infer/continuous.py) on a tiny random model: greedy tokens equal the
one-request path, sampled rows run in their own loop with their own temperature/top_k/top_p, a request that
arrives while others decode joins them (it does not wait for the batch to end), rows leave on their own stop, and
streams see tokens as they are made."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from lmforge.infer import varlen_attention
from lmforge.infer.engine import SamplingConfig
from tests.infer.helpers import liven

QUESTIONS = ["What is 3 plus 3?", "Hello there", "Tell me a long story about a dragon", "你好", "Colors?"]


@pytest.fixture(scope="module")
def engines(tiny_llama):
    """(continuous engine, the same model behind the plain scheduler). Weights scaled up: a random model at init
    answers greedily with newlines only."""
    from lmforge.infer.engines import load_engine
    from lmforge.infer.pt import PtEngine

    fast = liven(load_engine(tiny_llama, dtype="float32", max_batch_size=8))
    assert fast.continuous is not None
    return fast, PtEngine(fast.model, fast.frontend, max_batch_size=8)


def _prompts(engine) -> list[list[int]]:
    return [engine.frontend.prompt_ids([{"role": "user", "content": q}]) for q in QUESTIONS]


def test_greedy_tokens_equal_the_one_request_path(engines):
    fast, plain = engines
    prompts = _prompts(fast)
    cfg = SamplingConfig(max_new_tokens=12)
    seen = fast.continuous.rows_seen
    batched = fast.generate(prompts, cfg)
    assert fast.continuous.rows_seen == seen + len(prompts)  # they ran in the continuous loop
    assert fast.model.config._attn_implementation == varlen_attention.NAME  # on the per-row attention
    single = [plain.generate([p], cfg)[0] for p in prompts]
    assert plain.continuous is None and [c.token_ids for c in batched] == [c.token_ids for c in single]
    assert [(c.text, c.finish_reason) for c in batched] == [(c.text, c.finish_reason) for c in single]
    assert len({tuple(c.token_ids) for c in batched}) > 1  # the rows really differ
    streamed = list(fast.stream(prompts[2], cfg))
    assert "".join(e.text for e in streamed) == single[2].text and streamed[-1].finish_reason == single[2].finish_reason
    assert [e.token_id for e in streamed if e.token_id is not None] == single[2].token_ids


def test_prompts_split_over_steps_equal_the_one_request_path(engines):
    """Four ~300-token prompts overflow one step's token budget: the loop prefills one of them in two chunks, the
    second chunk attending to the first from the cache (varlen_attention's chunk mask), and all answers still
    equal the one-request path."""
    fast, plain = engines
    long = [fast.frontend.prompt_ids([{"role": "user", "content": f"{i} " + "tell me more, " * 75}]) for i in range(4)]
    assert all(250 < len(p) < 400 for p in long) and sum(map(len, long)) > fast.continuous.row_tokens
    cfg = SamplingConfig(max_new_tokens=6)
    batched = fast.generate(long, cfg)
    assert [c.token_ids for c in batched] == [plain.generate([p], cfg)[0].token_ids for p in long]


def test_sampled_rows_run_in_the_loop_with_their_own_settings(engines):
    """top_k 1 or a tiny top_p leave the argmax only: the greedy tokens, through the sampled loop; a high
    temperature over many tokens gives each row its own answer."""
    fast, plain = engines
    prompts = _prompts(fast)
    greedy = [c.token_ids for c in plain.generate(prompts, SamplingConfig(max_new_tokens=12))]
    seen = fast.continuous.rows_seen
    for cut in ({"top_k": 1}, {"top_p": 1e-6}):
        got = fast.generate(prompts, SamplingConfig(max_new_tokens=12, temperature=1.0, **cut))
        assert [c.token_ids for c in got] == greedy, cut
    hot = fast.generate([prompts[2]] * 4, SamplingConfig(max_new_tokens=24, temperature=5.0, top_k=0))
    assert len({tuple(c.token_ids) for c in hot}) == 4
    assert fast.continuous.rows_seen == seen + 2 * len(prompts) + 4  # all of them ran in the loops
    assert fast.continuous.managers[True].is_running()  # the sampled loop, on the per-row attention too
    assert fast.model.config._attn_implementation == varlen_attention.NAME


def test_both_loops_and_the_scheduler_at_once(engines):
    """Greedy rows, sampled rows (top_k 1) and seeded rows (the scheduler, which pauses both loops) at the same
    time: the loops' forward passes take turns and every row gets its greedy tokens."""
    from concurrent.futures import ThreadPoolExecutor

    fast, plain = engines
    prompts = _prompts(fast)
    greedy = [c.token_ids for c in plain.generate(prompts, SamplingConfig(max_new_tokens=16))]
    cfgs = [SamplingConfig(max_new_tokens=16, temperature=1.0, top_k=1, seed=s) for s in (None, None, 3)]
    with ThreadPoolExecutor(4) as pool:
        runs = [pool.submit(fast.generate, prompts, cfg) for cfg in [SamplingConfig(max_new_tokens=16), *cfgs]]
        got = [[c.token_ids for c in run.result(timeout=300)] for run in runs]
    assert got == [greedy] * 4


@pytest.mark.parametrize("sampling", [{}, {"temperature": 1.0, "top_k": 1}], ids=["greedy", "sampled"])
def test_a_request_arriving_mid_batch_joins_before_the_batch_ends(engines, sampling):
    """A long stream is decoding; a short request sent after its first tokens finishes while the long one still
    runs, and both equal their one-request (greedy) answers (the dynamic scheduler would make it wait for the
    batch). Sampled rows with top_k 1 give the greedy tokens."""
    fast, plain = engines
    long_p, short_p = _prompts(fast)[2], _prompts(fast)[0]
    long_cfg, short_cfg = SamplingConfig(max_new_tokens=80), SamplingConfig(max_new_tokens=4)
    fast_long, fast_short = (SamplingConfig(max_new_tokens=c.max_new_tokens, **sampling) for c in (long_cfg, short_cfg))
    events: list[tuple[str, float]] = []
    got: list = []
    started = threading.Event()

    def long_stream() -> None:
        for i, e in enumerate(fast.stream(long_p, fast_long)):
            got.append(e)
            if i == 2:
                started.set()
        events.append(("long done", time.perf_counter()))

    worker = threading.Thread(target=long_stream)
    worker.start()
    assert started.wait(120)
    short = fast.generate([short_p], fast_short)[0]
    events.append(("short done", time.perf_counter()))
    worker.join(300)
    assert [name for name, _ in events] == ["short done", "long done"]
    assert short.token_ids == plain.generate([short_p], short_cfg)[0].token_ids
    long_ids = [e.token_id for e in got if e.token_id is not None]
    want = plain.generate([long_p], long_cfg)[0]
    assert long_ids == want.token_ids and got[-1].finish_reason == want.finish_reason
    assert len(long_ids) > 20  # long enough that the short one overlapped it


def test_rows_leave_on_their_own_stop_and_async_streams_interleave(engines):
    """Stop strings end a row early inside the loop; concurrent astreams (what the server runs) each get their own
    tokens, interleaved as made; a consumer that leaves frees its row."""
    fast, plain = engines
    prompt = _prompts(fast)[2]
    free = plain.generate([prompt], SamplingConfig(max_new_tokens=12))[0]
    stop = free.text[len(free.text) // 3 :][:2]
    assert stop.strip(), free.text
    cut = fast.generate([prompt], SamplingConfig(max_new_tokens=12, stop=(stop,)))[0]
    assert cut.finish_reason == "stop" and cut.text == free.text[: free.text.index(stop)]
    prompts = _prompts(fast)
    cfg = SamplingConfig(max_new_tokens=10)
    want = [plain.generate([p], cfg)[0].text for p in prompts]
    order: list[int] = []

    async def one(i: int) -> str:
        pieces = []
        async for e in fast.astream(prompts[i], cfg):
            order.append(i)
            pieces.append(e.text)
        return "".join(pieces)

    async def leave_early() -> None:
        stream = fast.astream(prompts[1], SamplingConfig(max_new_tokens=500))
        await anext(stream)
        await stream.aclose()

    async def run() -> list[str]:
        await leave_early()
        return await asyncio.gather(*(one(i) for i in range(len(prompts))))

    assert asyncio.run(run()) == want
    assert order != sorted(order)  # tokens of different rows interleave: one running batch
    time.sleep(0.5)
    assert fast.continuous.rows == {}  # every row left the loop, the abandoned one included


@pytest.mark.parametrize("sampling", [{"temperature": 0}, {"temperature": 1.0, "extra_body": {"top_k": 1}}])
def test_the_server_streams_concurrent_requests_through_the_loop(engines, sampling):
    """The deploy app on the continuous engine, the official openai client, concurrent streaming requests (greedy,
    or sampled with top_k 1): all of them ran in the loop and each got its one-request greedy answer."""
    import httpx
    import openai

    from lmforge.serve.app import build_app
    from lmforge.serve.state import ServeState

    fast, plain = engines
    app = build_app(ServeState(fast, "tiny", {}, SamplingConfig(max_new_tokens=64)))
    msgs = [[{"role": "user", "content": q}] for q in QUESTIONS]

    async def one(client: openai.AsyncOpenAI, msg: list[dict]) -> str:
        kw = {"model": "tiny", "messages": msg, "max_tokens": 8, "stream": True, **sampling}
        return "".join([c.choices[0].delta.content or "" async for c in await client.chat.completions.create(**kw)])

    async def run() -> list[str]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://lmforge") as http:
            client = openai.AsyncOpenAI(base_url="http://lmforge/v1", api_key="x", http_client=http, max_retries=0)
            return await asyncio.gather(*(one(client, m) for m in msgs))

    seen = fast.continuous.rows_seen
    got = asyncio.run(run())
    assert fast.continuous.rows_seen == seen + len(msgs)
    assert got == [c.text for c in plain.chat(msgs, SamplingConfig(max_new_tokens=8))]
