"""`lmforge app` in a real headless Chromium: type a question, see the streamed answer appear, clear it; then the same
server answers two turns through Gradio's own client (one app process for both: it is the slow part)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.serve.conftest import free_port, wait_ready

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-sync",
    "--disable-background-networking",
    "--disable-component-update",
]


def chromium() -> str:
    """Debian's Chromium: found, or installed with apt (CI runs as root on a Debian machine)."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path:
        return path
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True, env=env, capture_output=True)
    path = shutil.which("chromium")
    assert path, "apt-get installed chromium but it is not on PATH"
    return path


@pytest.mark.slow
def test_chat_page_streams_an_answer(tiny_llama):
    from playwright.sync_api import sync_playwright

    browser_path = chromium()
    # sampled (temperature 1): a random tiny model answers greedily with newlines only, which render as nothing
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lmforge",
            "app",
            "--model",
            str(tiny_llama),
            "--server_port",
            str(port),
            "--max_new_tokens",
            "24",
            "--temperature",
            "1.0",
            "--system",
            "You are terse.",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_ready_page(proc, port)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=browser_path, args=CHROMIUM_FLAGS)
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}", wait_until="networkidle")
            assert page.locator("#system textarea").input_value() == "You are terse."
            page.locator("#message textarea").fill("Hello, who are you?")
            page.locator("#message textarea").press("Enter")
            # the question, then an answer bubble with text in it
            page.wait_for_function(
                "() => { const b = document.querySelectorAll('#chatbot .bot-row');"
                " return b.length > 0 && b[b.length - 1].innerText.trim().length > 0; }",
                timeout=120_000,
            )
            assert "Hello, who are you?" in page.locator("#chatbot .user-row").first.inner_text()
            assert page.locator("#chatbot .bot-row").last.inner_text().strip()
            # let the stream finish (the answer stops changing), then Clear empties the chat
            last = None
            for _ in range(60):
                now = page.locator("#chatbot .bot-row").last.inner_text()
                if now == last:
                    break
                last = now
                page.wait_for_timeout(1000)
            page.locator("#clear").click()
            page.wait_for_function(
                "() => document.querySelectorAll('#chatbot .message-row').length === 0", timeout=30_000
            )
            browser.close()
        answers_through_the_client(f"http://127.0.0.1:{port}/")
    finally:
        proc.terminate()
        try:
            out = proc.communicate(timeout=30)[0]
        except subprocess.TimeoutExpired:
            proc.kill()
            out = ""
    assert "model on cpu" in out or "model on cuda" in out


def answers_through_the_client(url: str) -> None:
    """The page's /send endpoint, as a script would call it: the box is emptied, the history grows by two turns."""
    import gradio_client

    from lmforge.ui.chat import message_text

    client = gradio_client.Client(url, verbose=False)
    # inputs: message, history, system, image (None: a text-only turn); outputs: box, history, image
    box, history, _ = client.predict("Hello there", [], "You are terse.", None, api_name="/send")
    assert box == "" and [m["role"] for m in history] == ["user", "assistant"]
    assert message_text(history[0]["content"]) == "Hello there"
    _, history, _ = client.predict("And again?", history, "You are terse.", None, api_name="/send")  # 2nd turn
    assert [m["role"] for m in history] == ["user", "assistant"] * 2
    assert message_text(history[2]["content"]) == "And again?"


def wait_ready_page(proc: subprocess.Popen, port: int) -> None:
    import time
    import urllib.request

    deadline = time.time() + 240
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(proc.stdout.read())
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError("app did not start")


del wait_ready  # the API server's readiness probe (/health) does not apply to the page
