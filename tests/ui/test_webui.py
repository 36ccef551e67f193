"""`lmforge web-ui` as a person uses it, in a real headless Chromium: log in, fill the Train form and watch the
command and the dataset preview follow, start a 4-step LoRA run, see its chart gain points, reload and find the job,
let it finish, chat on its checkpoint, deploy it and stop the server, start a second run and stop it. Screenshots
of every tab land in the test's temp dir."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from tests.conftest import run_cli
from tests.serve.conftest import free_port
from tests.train.helpers import write_sft_data
from tests.ui.test_app import CHROMIUM_FLAGS, chromium, wait_ready_page

KEY = "s3cret"
POINTS = "() => document.querySelectorAll('#loss-plot [aria-roledescription=point]').length"


def test_busy_port_is_one_line(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        r = run_cli("web-ui", "--server_port", str(port), "--output_dir", str(tmp_path))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"lmforge web-ui: error: port {port} on 127.0.0.1 is busy (Address already in use) "
        "(hint: pick another with --server_port)"
    ]


def has(page, selector: str, text: str, timeout: float = 120_000) -> None:
    page.wait_for_function(
        "([s, t]) => { const e = document.querySelector(s); return e && e.innerText.includes(t); }",
        arg=[selector, text],
        timeout=timeout,
    )


def fill(page, field: str, value: str) -> None:
    page.locator(f"#{field} textarea").fill(value)


@pytest.mark.slow
def test_web_ui_trains_reattaches_chats_deploys_and_stops(tmp_path, tiny_llama):
    from playwright.sync_api import sync_playwright

    data = write_sft_data(tmp_path / "train.jsonl")
    out, shots = tmp_path / "output", tmp_path / "screens"
    shots.mkdir()
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "lmforge", "web-ui", "--server_port", str(port), "--output_dir", str(out)]
        + ["--api_key", KEY],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        wait_ready_page(proc, port)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium(), args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1280, "height": 1400})
            page.goto(f"http://127.0.0.1:{port}", wait_until="load")
            login(page)
            run_one = train_four_steps(page, str(tiny_llama), data, shots)
            second_run_stopped(page, out, str(tiny_llama), data)
            chat_on_checkpoint(page, run_one, shots)
            deploy_and_stop(page, shots)
            for tab in ("RLHF",):  # Train, Jobs, Chat and Deploy were taken above
                page.locator("[role=tab]", has_text=tab).first.click()
                page.wait_for_selector(f"#{tab.lower()}-cmd")
                page.screenshot(path=str(shots / f"{tab.lower()}.png"))
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert len(list(shots.glob("*.png"))) == 5


def login(page) -> None:
    page.wait_for_selector("input[type=password]")
    page.locator("input[type=password]").fill("wrong")
    page.locator("textarea, input[type=text]").first.fill("me")
    page.get_by_role("button", name="Login").click()
    page.wait_for_function("() => /incorrect|fail/i.test(document.body.innerText)", timeout=30_000)
    page.locator("textarea, input[type=text]").first.fill("me")
    page.locator("input[type=password]").fill(KEY)
    page.get_by_role("button", name="Login").click()
    page.wait_for_selector("#train-cmd", timeout=120_000)


def train_four_steps(page, model: str, data, shots) -> str:
    """The form, its preview and errors, Start, the chart, a reload: returns the finished run's job id."""
    fill(page, "train-model", model)
    fill(page, "train-dataset", str(data) + ".missing")
    has(page, "#train-dataset", "no such file, folder or registered dataset")  # flagged before any start
    fill(page, "train-dataset", str(data))
    for field, value in (("max_steps", "4"), ("logging_steps", "1"), ("per_device_train_batch_size", "2")):
        fill(page, f"train-{field}", value)
    fill(page, "train-gradient_accumulation_steps", "1")
    fill(page, "train-lora_rank", "0")
    has(page, "#train-lora_rank", "lmforge sft: error: --lora_rank 0: must be >= 1")  # the CLI's line, on the field
    fill(page, "train-lora_rank", "8")
    has(page, "#train-cmd", "--gradient_accumulation_steps 1")
    cmd = " ".join(page.locator("#train-cmd").inner_text().split())
    assert f"lmforge sft --model {model} --dataset {data} " in cmd, cmd
    assert "--max_steps 4 --per_device_train_batch_size 2 --gradient_accumulation_steps 1 --logging_steps 1" in cmd
    assert "max_steps: 4" in page.locator("#train-yaml").inner_text()
    page.locator("#train-preview-btn").click()
    has(page, "#train-preview", "[[")  # the first rows with their trained spans, as `lmforge check` prints them
    assert "format query-response" in page.locator("#train-preview").inner_text()
    page.screenshot(path=str(shots / "train.png"), full_page=True)
    page.locator("#train-start").click()
    has(page, "#job-status", "lmforge sft --model")
    job_id = page.locator("#job-pick input").input_value()
    early = page.evaluate(POINTS)
    page.reload(wait_until="load")  # the job belongs to the server: a new page finds it again
    page.wait_for_selector("#train-cmd", timeout=120_000)
    page.get_by_role("tab", name="Jobs").first.click()
    has(page, "#job-status", "lmforge sft --model")
    assert page.locator("#job-pick input").input_value() == job_id
    has(page, "#job-status", "finished", timeout=300_000)
    page.wait_for_function(POINTS + " === 4", timeout=30_000)
    assert early < 4  # the chart gained its points while we watched
    assert "progress: step 4/4" in page.locator("#job-status").inner_text()
    has(page, "#runs", "checkpoint-4")
    page.screenshot(path=str(shots / "jobs.png"), full_page=True)
    return job_id


def chat_on_checkpoint(page, job_id: str, shots) -> None:
    page.get_by_role("tab", name="Jobs").first.click()
    page.locator("#job-pick input").click()
    page.get_by_role("option", name=job_id).click()  # back to the finished 4-step run
    has(page, "#job-status", "finished")
    page.locator("#job-chat").click()
    page.wait_for_selector("#chat-load")
    fill(page, "chat-temperature", "1.0")  # a random tiny model answers greedily with newlines only
    fill(page, "chat-max-new", "16")
    page.locator("#chat-load").click()
    has(page, "#chat-loaded", f"{job_id}/checkpoint-4")
    page.locator("#message textarea").fill("What is 2 plus 2?")
    page.locator("#message textarea").press("Enter")
    page.wait_for_function(
        "() => { const b = document.querySelectorAll('#chatbot .bot-row');"
        " return b.length > 0 && b[b.length - 1].innerText.trim().length > 0; }",
        timeout=120_000,
    )
    page.screenshot(path=str(shots / "chat.png"), full_page=True)


def deploy_and_stop(page, shots) -> None:
    page.get_by_role("tab", name="Jobs").first.click()
    page.locator("#job-deploy").click()  # prefills the Deploy tab with the checkpoint
    page.wait_for_selector("#deploy-cmd")
    fill(page, "deploy-port", str(free_port()))
    has(page, "#deploy-cmd", "--adapters")
    page.locator("#deploy-start").click()
    has(page, "#deploy-servers", "(ready)", timeout=240_000)
    assert "http://127.0.0.1:" in page.locator("#deploy-servers").inner_text()
    page.screenshot(path=str(shots / "deploy-running.png"), full_page=True)
    page.locator("#deploy-stop").click()
    has(page, "#deploy-status", "sent SIGTERM")
    has(page, "#deploy-servers", "No server running", timeout=60_000)


def second_run_stopped(page, out, model: str, data) -> None:
    page.get_by_role("tab", name="Train").first.click()
    fill(page, "train-model", model)  # the reload gave a fresh form: forms are the page's, jobs the server's
    fill(page, "train-dataset", str(data))
    fill(page, "train-max_steps", "100000")
    has(page, "#train-cmd", "--max_steps 100000")
    page.locator("#train-start").click()
    has(page, "#train-status", "Started job")
    new = page.locator("#train-status").inner_text().split("Started job")[1].split(":")[0].strip()
    page.get_by_role("tab", name="Jobs").first.click()
    page.locator("#job-pick input").click()
    page.get_by_role("option", name=new).click()
    has(page, "#job-status", "--max_steps 100000", timeout=60_000)
    page.wait_for_function(
        "() => /progress: step [1-9]/.test((document.querySelector('#job-status') || {}).innerText || '')",
        timeout=240_000,
    )
    pid_text = page.locator("#job-pick input").input_value()
    page.get_by_role("tab", name="Train").first.click()
    page.locator("#train-start").click()  # a second job on the same output dir
    has(page, "#train-status", "is still writing into")
    page.get_by_role("tab", name="Jobs").first.click()
    page.locator("#job-stop").click()
    has(page, "#job-stop-msg", f"sent SIGTERM to job {pid_text}")
    has(page, "#job-error", "stopped by SIGTERM after step", timeout=120_000)
    import json

    pid = json.loads((out / pid_text / "webui_job.json").read_text())["pid"]
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # the whole process group is gone
