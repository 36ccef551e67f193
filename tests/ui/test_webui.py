"""`lmforge web-ui` as a person uses it, in one real headless Chromium session: log in, fill the Train form and watch
the command and the dataset preview follow, start a 4-step LoRA run, see its chart gain points, reload and find the
job and the form as they were, let it finish; from it merge and export, evaluate, run a dataset batch, chat on its
checkpoint, deploy it and stop the server; start a second run and stop it. Screenshots of every tab land in the
test's temp dir."""

from __future__ import annotations

import json
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
# every label and title of both charts lies inside its SVG (Gradio 6 clipped them: "10.80" showed as ".80")
LABELS_INSIDE = """() => ['#loss-plot', '#lr-plot'].every(id => {
    const svg = document.querySelector(id + ' svg');
    if (!svg) return false;
    const box = svg.getBoundingClientRect(), texts = [...svg.querySelectorAll('text')];
    return texts.length > 2 && texts.every(t => t.getBoundingClientRect().left >= box.left - 0.5);
})"""
TABS = ["Train", "RLHF", "Infer", "Export", "Deploy", "Eval", "Jobs", "Chat"]


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


def wait_js(page, script: str, arg=None, timeout: float | None = None) -> None:
    """Poll a condition 4 times a second (Playwright's default polls every frame, and reading innerText that
    often kept the busy page's renderer the machine's top process)."""
    page.wait_for_function(script, arg=arg, timeout=timeout, polling=250)


def has(page, selector: str, text: str, timeout: float = 120_000) -> None:
    wait_js(
        page,
        "([s, t]) => { const e = document.querySelector(s); return e && e.innerText.includes(t); }",
        arg=[selector, text],
        timeout=timeout,
    )


def fill(page, field: str, value: str) -> None:
    page.locator(f"#{field} textarea").fill(value)


@pytest.mark.slow
def test_web_ui_trains_reattaches_exports_evaluates_chats_deploys_and_stops(tmp_path, tiny_llama):
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
            page.set_default_timeout(90_000)  # a click or a screenshot waits on a busy 2-core machine
            page.goto(f"http://127.0.0.1:{port}", wait_until="load")
            login(page)
            assert page.locator("[role=tab]").all_inner_texts() == TABS  # each tab once, Eval among them
            run_one = train_four_steps(page, str(tiny_llama), data, shots)
            ckpt = out / run_one / "checkpoint-4"
            started = [merge_and_export(page, ckpt, shots), evaluate(page, run_one, ckpt, out, shots)]
            started.append(infer_batch(page, ckpt, data, shots))
            chat_on_checkpoint(page, run_one, shots)  # the chat model loads while those three jobs run
            for job in started:  # each shows "finished" when picked on the Jobs tab
                pick(page, job)
                has(page, "#job-status", "finished", timeout=300_000)
            deploy_port = start_deploy(page, run_one)
            second_run_stopped(page, out, str(tiny_llama), data, deploy_port, shots)
            page.get_by_role("tab", name="RLHF").first.click()
            page.wait_for_selector("#rlhf-cmd")
            page.screenshot(path=str(shots / "rlhf.png"))
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert sorted(p.stem for p in shots.glob("*.png")) == sorted(t.lower() for t in TABS)
    merged = ckpt.parent / "checkpoint-4-merged"  # what the three jobs wrote, where the CLI writes them
    assert (merged / "config.json").is_file() and list(merged.glob("*.safetensors"))
    rows = [json.loads(x) for f in (ckpt / "infer_result").glob("*.jsonl") for x in f.read_text().splitlines()]
    assert len(rows) == 24 and all("response" in r for r in rows)
    result = [json.loads(x) for x in (ckpt / "eval_result.jsonl").read_text().splitlines()]
    assert result and "lmforge_mcq" in json.dumps(result[-1])
    assert list((out / "eval_output" / "native").iterdir())  # EvalScope's layout under the web UI's output dir


def login(page) -> None:
    page.wait_for_selector("input[type=password]")
    page.locator("input[type=password]").fill("wrong")
    page.locator("textarea, input[type=text]").first.fill("me")
    page.get_by_role("button", name="Login").click()
    wait_js(page, "() => /incorrect|fail/i.test(document.body.innerText)", timeout=30_000)
    page.locator("textarea, input[type=text]").first.fill("me")
    page.locator("input[type=password]").fill(KEY)
    page.get_by_role("button", name="Login").click()
    has(page, "#train-cmd", "lmforge sft")  # the page has loaded its forms and their previews


def tab(page, name: str) -> None:
    page.get_by_role("tab", name=name, exact=True).first.click()


def pick(page, job_id: str) -> None:
    tab(page, "Jobs")
    page.locator("#job-pick input").click()
    page.get_by_role("option", name=job_id, exact=True).click()
    has(page, "#job-status", job_id)


def started_job(page, tid: str) -> str:
    """Start the tab's job; the page moves to Jobs. Returns the job's id."""
    page.locator(f"#{tid}-start").click()
    has(page, f"#{tid}-status", "Started job")
    return page.locator(f"#{tid}-status").inner_text().split("Started job")[1].split(":")[0].strip()


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
    wait_js(
        page,  # and no second preview pending (leaving --dataset ran one too): no "2.9s" timer
        "() => !/^\\s*\\d+(\\.\\d+)?s\\s*$/m.test(document.querySelector('#train-preview').innerText)",
    )
    assert "format query-response" in page.locator("#train-preview").inner_text()
    page.screenshot(path=str(shots / "train.png"), full_page=True)
    job_id = started_job(page, "train")
    has(page, "#job-status", "lmforge sft --model")
    early = page.evaluate(POINTS)
    page.reload(wait_until="load")  # the job belongs to the server, the form to the output dir: both come back
    wait_js(
        page, "(m) => (document.querySelector('#train-model textarea') || {}).value === m", arg=model, timeout=120_000
    )
    assert page.locator("#train-max_steps textarea").input_value() == "4"
    has(page, "#train-cmd", f"lmforge sft --model {model} --dataset {data}")
    tab(page, "Jobs")
    has(page, "#job-status", "lmforge sft --model")
    assert page.locator("#job-pick input").input_value() == job_id
    has(page, "#job-status", "finished", timeout=300_000)
    wait_js(page, POINTS + " === 4", timeout=30_000)
    assert early < 4  # the chart gained its points while we watched
    wait_js(page, LABELS_INSIDE, timeout=30_000)
    assert "progress: step 4/4" in page.locator("#job-status").inner_text()
    has(page, "#runs", "checkpoint-4")
    page.screenshot(path=str(shots / "jobs.png"), full_page=True)
    return job_id


def merge_and_export(page, ckpt, shots) -> str:
    page.locator("#job-export").click()  # the finished run is the selected job
    has(page, "#export-cmd", f"lmforge export --adapters {ckpt} --merge_lora true")
    page.screenshot(path=str(shots / "export.png"), full_page=True)
    return started_job(page, "export")


def evaluate(page, run_one: str, ckpt, out, shots) -> str:
    pick(page, run_one)
    page.locator("#job-eval").click()
    has(page, "#eval-cmd", f"--adapters {ckpt}")
    fill(page, "eval-eval_dataset", "lmforge_mcq")
    fill(page, "eval-eval_limit", "2")
    flags = f"--adapters {ckpt} --eval_dataset lmforge_mcq --eval_limit 2 --eval_output_dir {out}/eval_output"
    has(page, "#eval-cmd", f"lmforge eval {flags}")
    page.screenshot(path=str(shots / "eval.png"), full_page=True)
    return started_job(page, "eval")


def infer_batch(page, ckpt, data, shots) -> str:
    tab(page, "Infer")
    fill(page, "infer-adapters", str(ckpt))
    fill(page, "infer-val_dataset", str(data))
    fill(page, "infer-max_new_tokens", "4")
    has(page, "#infer-cmd", f"lmforge infer --val_dataset {data} --adapters {ckpt} --max_new_tokens 4")
    page.screenshot(path=str(shots / "infer.png"), full_page=True)
    return started_job(page, "infer")


def chat_on_checkpoint(page, job_id: str, shots) -> None:
    pick(page, job_id)  # back to the finished 4-step run
    has(page, "#job-status", "finished")
    page.locator("#job-chat").click()
    # the chat tab renders while export, eval and infer jobs share the 2 cores with the suite: 90 s ran out once
    page.wait_for_selector("#chat-load", timeout=240_000)
    fill(page, "chat-temperature", "1.0")  # a random tiny model answers greedily with newlines only
    fill(page, "chat-max-new", "16")
    page.locator("#chat-load").click()
    has(page, "#chat-loaded", f"{job_id}/checkpoint-4")
    page.locator("#message textarea").fill("What is 2 plus 2?")
    page.locator("#message textarea").press("Enter")
    wait_js(
        page,
        "() => { const b = document.querySelectorAll('#chatbot .bot-row');"
        " return b.length > 0 && b[b.length - 1].innerText.trim().length > 0; }",
        timeout=120_000,
    )
    page.screenshot(path=str(shots / "chat.png"), full_page=True)


def start_deploy(page, run_one: str) -> int:
    """Deploy the finished run from the Jobs tab; the server boots while the second run starts."""
    pick(page, run_one)
    page.locator("#job-deploy").click()  # prefills the Deploy tab with the checkpoint
    page.wait_for_selector("#deploy-cmd")
    port = free_port()
    fill(page, "deploy-port", str(port))
    has(page, "#deploy-cmd", "--adapters")
    page.locator("#deploy-start").click()
    has(page, "#deploy-status", "Started job")
    return port


def second_run_stopped(page, out, model: str, data, deploy_port: int, shots) -> None:
    tab(page, "Train")
    assert page.locator("#train-model textarea").input_value() == model  # the form as it was left
    fill(page, "train-max_steps", "100000")
    has(page, "#train-cmd", "--max_steps 100000")
    new = started_job(page, "train")
    tab(page, "Deploy")  # meanwhile the server came up
    has(page, "#deploy-servers", "(ready)", timeout=240_000)
    assert f"http://127.0.0.1:{deploy_port}/v1" in page.locator("#deploy-servers").inner_text()
    page.screenshot(path=str(shots / "deploy.png"), full_page=True)
    page.locator("#deploy-stop").click()
    has(page, "#deploy-status", "sent SIGTERM")
    has(page, "#deploy-servers", "No server running", timeout=60_000)
    pick(page, new)
    has(page, "#job-status", "--max_steps 100000", timeout=60_000)
    wait_js(
        page,
        "() => /progress: step [1-9]/.test((document.querySelector('#job-status') || {}).innerText || '')",
        timeout=240_000,
    )
    tab(page, "Train")
    page.locator("#train-start").click()  # a second job on the same output dir
    has(page, "#train-status", "is still writing into")
    tab(page, "Jobs")
    page.locator("#job-stop").click()
    has(page, "#job-stop-msg", f"sent SIGTERM to job {new}")
    has(page, "#job-error", "stopped by SIGTERM after step", timeout=120_000)
    pid = json.loads((out / new / "webui_job.json").read_text())["pid"]
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # the whole process group is gone
