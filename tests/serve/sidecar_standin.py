"""lmforge's own `deploy` as the backend server of a sidecar engine: a real server process that speaks the token-id
completions protocol (stop_token_ids, return_tokens_as_token_ids), started, waited for and owned by the same code
that starts vLLM (infer/sidecar.py). Only the command line differs.

`run(engine)` collects what a sidecar engine answers, for comparison with the PyTorch engine.
"""

from __future__ import annotations

from lmforge.infer.engines import register_sidecar
from lmforge.infer.sidecar import HOST, Launcher, LaunchSpec

NAME = "lmforge-standin"


def standin_argv(s: LaunchSpec) -> list[str]:
    argv = [s.python, "-m", "lmforge", "deploy", "--model", s.model_dir, "--host", HOST, "--port", str(s.port)]
    argv += ["--served_model_name", "base", "--torch_dtype", s.dtype or "float32", "--log_level", "warning"]
    if s.loras:
        argv += ["--adapters", *(f"{n}={p}" for n, p in s.loras.items())]
    return argv


def register() -> None:
    # the fields vLLM also takes; lmforge's server refuses vLLM's min_p/penalty extras it has no use for
    register_sidecar(NAME, Launcher("lmforge", standin_argv, {"ignore_eos": True}))


def run(engine) -> dict:
    """What the engine answers (sync, streamed, async, logprobs, score, stop strings, an unknown adapter)."""
    import asyncio

    from lmforge.infer.engine import SamplingConfig

    f = engine.frontend
    prompts = [f.prompt_ids([{"role": "user", "content": q}]) for q in ("What is 2+3?", "Name a colour.")]
    greedy = SamplingConfig(max_new_tokens=12, temperature=0.0)

    async def astream() -> list[int]:
        return [e.token_id async for e in engine.astream(prompts[0], greedy) if e.token_id is not None]

    out = {
        "pgid": engine.sidecar.pgid,
        "port": engine.sidecar.port,
        "prompts": prompts,
        "base": [c.token_ids for c in engine.generate(prompts, greedy)],
        "alpha": [c.token_ids for c in engine.generate(prompts, greedy, adapter="alpha")],
        "beta_text": [c.text for c in asyncio.run(engine.agenerate(prompts, greedy, adapter="beta"))],
        "stream": [e.token_id for e in engine.stream(prompts[0], greedy) if e.token_id is not None],
        "astream": asyncio.run(astream()),
        "logprobs": [lp.logprob for lp in engine.generate(prompts[:1], SamplingConfig(4, logprobs=2))[0].logprobs],
        "score": engine.score([prompts[0]], [[11, 12, 13]])[0].token_logprobs,
        "stop": engine.generate(prompts[:1], SamplingConfig(12, stop=("a",)))[0].text,
    }
    try:
        engine.generate(prompts[:1], greedy, adapter="nope")
    except ValueError as e:
        out["unknown_adapter"] = str(e)
    return out
