"""`lmforge eval --eval_deploy true` owns the server it starts: ctrl-C mid-run ends eval at once (queued rows are
not sent) and leaves no server process and no open port. The server is a stand-in (tests/eval/deploy_standin.py) that
never answers a completion; its equality with the in-process engine is in test_eval.py."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import default_sigint
from tests.serve.test_sidecar import _alive, _listening

STANDIN = Path(__file__).with_name("deploy_standin.py")


def _wait_for(path: Path, owner: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert owner.poll() is None, owner.communicate()[1][-2000:]
        assert time.time() < deadline, f"{path.name} never appeared"
        time.sleep(0.1)


def test_ctrl_c_to_an_eval_that_owns_a_deploy_leaves_no_server(tmp_path):
    info = tmp_path / "server"
    # eval as a user runs it, with the deploy's command line swapped for the stand-in's
    script = (
        "import sys; import lmforge.eval.service as s; from lmforge.cli import main; "
        f"s.deploy_argv = lambda args, port, name: [sys.executable, {str(STANDIN)!r}, str(port), {str(info)!r}]; "
        f"sys.exit(main(['eval', '--model', {str(tmp_path / 'm')!r}, '--eval_deploy', 'true', "
        f"'--eval_dataset', 'lmforge_mcq', '--eval_num_proc', '2', '--eval_output_dir', {str(tmp_path / 'o')!r}]))"
    )
    owner = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
    )
    try:
        _wait_for(info.with_suffix(".busy"), owner)  # eval is mid-run: a request is waiting on the server
        pgid, port = map(int, info.read_text().split())
        assert _alive(pgid) and _listening(port)
        owner.send_signal(signal.SIGINT)
        _, err = owner.communicate(timeout=60)
    finally:
        if owner.poll() is None:
            owner.kill()
    assert owner.returncode == 130 and err.strip().endswith("lmforge eval: interrupted"), err[-2000:]
    deadline = time.time() + 30
    while _alive(pgid) and time.time() < deadline:
        time.sleep(0.2)
    assert not _alive(pgid), "the deploy outlived the interrupted eval"
    assert not _listening(port)
