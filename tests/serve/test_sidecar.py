"""The sidecar engine (`--infer_backend vllm|sglang|lmdeploy`'s client and process owner) against a real server:
lmforge's own `deploy` standing in for the backend. Greedy tokens, adapters, stream, logprobs, score and stop
strings equal the in-process PyTorch engine's; killing the lmforge process (SIGKILL) leaves no server behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from lmforge import cli
from tests.serve import sidecar_standin


def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_sidecar_client_matches_the_pt_engine(tiny_qwen3, two_adapters):
    from lmforge.infer.engine import SamplingConfig
    from lmforge.infer.engines import load_engine

    a, b = (str(p) for p in two_adapters)
    sidecar_standin.register()
    remote = load_engine(tiny_qwen3, {"alpha": a, "beta": b}, backend=sidecar_standin.NAME, dtype="float32")
    try:
        got = sidecar_standin.run(remote)
    finally:
        remote.close()
    assert not _alive(got["pgid"]) and not _listening(got["port"])  # close() ended the server

    pt = load_engine(tiny_qwen3, {"alpha": a, "beta": b}, dtype="float32")
    greedy = SamplingConfig(max_new_tokens=12, temperature=0.0)
    prompts = got["prompts"]
    assert prompts[0] == pt.frontend.prompt_ids([{"role": "user", "content": "What is 2+3?"}])
    assert got["base"] == [c.token_ids for c in pt.generate(prompts, greedy)]
    assert got["alpha"] == [c.token_ids for c in pt.generate(prompts, greedy, adapter="alpha")]
    assert got["alpha"] != got["base"]  # the adapter request reached the server's adapter
    assert got["beta_text"] == [c.text for c in pt.generate(prompts, greedy, adapter="beta")]
    assert got["stream"] == got["astream"] == got["base"][0]
    want_lp = [lp.logprob for lp in pt.generate(prompts[:1], SamplingConfig(4, logprobs=2))[0].logprobs]
    assert got["logprobs"] == pytest.approx(want_lp, abs=1e-4)
    assert got["score"] == pytest.approx(pt.score([prompts[0]], [[11, 12, 13]])[0].token_logprobs, abs=1e-4)
    assert got["stop"] == pt.generate(prompts[:1], SamplingConfig(12, stop=("a",)))[0].text
    assert "a" not in got["stop"]
    assert got["unknown_adapter"].startswith("unknown adapter 'nope'")


def test_a_killed_lmforge_leaves_no_server_behind():
    """SIGKILL runs no cleanup code in lmforge: the guard sees its pipe close and ends the server's group."""
    script = (
        "import sys; from lmforge.infer.sidecar import Sidecar, free_port; p = free_port(); "
        "s = Sidecar('http', [sys.executable, '-m', 'http.server', '--bind', '127.0.0.1', str(p)], p, ready_path='/'); "
        "s.wait_ready(60); print(s.pgid, p, flush=True); sys.stdin.read()"
    )
    owner = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        pgid, port = map(int, owner.stdout.readline().split())
        assert _alive(pgid) and _listening(port)
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=30)
    deadline = time.time() + 30
    while _alive(pgid) and time.time() < deadline:
        time.sleep(0.2)
    assert not _alive(pgid), "the backend server outlived the killed lmforge process"
    assert not _listening(port)


@pytest.mark.parametrize(
    "flags, line",
    [
        (
            ["--infer_backend_python", "/no/such/python"],
            "--infer_backend_python /no/such/python: not found (or not executable)",
        ),
        ([], f"--infer_backend vllm: the vllm package is not installed in {sys.executable}"),
    ],
)
def test_sidecar_bad_python_or_backend_is_one_line(tiny_qwen3, capsys, flags, line):
    code = cli.main(["infer", "--model", str(tiny_qwen3), "--infer_backend", "vllm", *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith(f"lmforge infer: error: {line} (hint: "), err


def test_sidecar_server_that_dies_at_start_is_one_line_with_its_last_log_line(tiny_qwen3):
    from lmforge.errors import UserError
    from lmforge.infer.engines import load_engine, register_sidecar
    from lmforge.infer.sidecar import Launcher

    # a real server that cannot start: lmforge deploy refusing a flag, as vLLM refuses a model it cannot place
    register_sidecar("dies", Launcher("lmforge", lambda s: [*sidecar_standin.standin_argv(s), "--max_batch_size", "0"]))
    with pytest.raises(UserError) as e:
        load_engine(tiny_qwen3, backend="dies")
    assert str(e.value).startswith("--infer_backend dies: the server exited at start: lmforge deploy: error: ")
    assert "--max_batch_size 0" in str(e.value) and "\n" not in str(e.value)
    assert e.value.hint.startswith("its full log: ")
