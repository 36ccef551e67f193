"""`lmforge app` without a browser: the page comes up on the engine and answers through Gradio's own client."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request

import pytest

from lmforge.ui.chat import message_text
from tests.serve.conftest import free_port


def _wait(proc: subprocess.Popen, url: str, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"app exited: {proc.stdout.read() if proc.stdout else ''}")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError("app did not start")


def test_app_answers_through_the_engine(tiny_llama):
    gradio_client = pytest.importorskip("gradio_client")
    port = free_port()
    cmd = [sys.executable, "-m", "lmforge", "app", "--model", str(tiny_llama), "--server_port", str(port)]
    cmd += ["--max_new_tokens", "6", "--temperature", "1.0", "--system", "You are terse."]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        _wait(proc, url)
        client = gradio_client.Client(url, verbose=False)
        box, history = client.predict("Hello there", [], "You are terse.", api_name="/send")
        assert box == "" and [m["role"] for m in history] == ["user", "assistant"]
        assert message_text(history[0]["content"]) == "Hello there"
        _, history = client.predict("And again?", history, "You are terse.", api_name="/send")  # a second turn
        assert [m["role"] for m in history] == ["user", "assistant"] * 2
        assert message_text(history[2]["content"]) == "And again?"
    finally:
        proc.terminate()
        try:
            out = proc.communicate(timeout=20)[0]
        except subprocess.TimeoutExpired:
            proc.kill()
            out = ""
    assert "model on cpu" in out or "model on cuda" in out


def test_ui_does_not_import_serve():
    code = "import sys, lmforge.ui.chat; print(any(m.startswith('lmforge.serve') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
