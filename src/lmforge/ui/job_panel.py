"""The web UI's Jobs tab: every job of the server's table (running ones reattach on page load), the selected job's
one-line error at the top, progress (step/total, tokens/s, ETA), live loss and learning-rate curves from
logging.jsonl, the log tail, Stop, and the runs under --output_dir with their args, final loss and checkpoints."""

from __future__ import annotations

import json
import shlex
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmforge.ui import jobs as J

LOG_TAIL = 12  # what the log box shows without scrolling
# seconds between refreshes while a job runs, and while none does (each refresh costs the page's browser tab CPU;
# an idle page at 1 s kept a quarter of a core busy)
BUSY_TICK, IDLE_TICK = 1.0, 5.0
RUN_COLUMNS = ["job", "command", "status", "step", "final loss", "checkpoints", "model", "dataset"]


@dataclass
class JobPanel:
    pick: Any
    error: Any
    status: Any
    loss: Any
    lr: Any
    log: Any
    runs: Any
    stop: Any
    stop_msg: Any
    chat_btn: Any
    export_btn: Any
    eval_btn: Any
    deploy_btn: Any
    timer: Any


def frame(points: list[tuple[int, float]], y: str) -> Any:
    """A numeric DataFrame for gr.LinePlot (an empty object-typed one makes the y axis nominal)."""
    import pandas as pd

    return pd.DataFrame(points, columns=["step", y]).astype(float)


def y_range(df: Any) -> list[float] | None:
    """The y axis for a chart's points, a little wider than they span. Sent one tick after the points: Gradio 6
    lays a chart out (the room for the tick labels) only when a setting such as y_lim changes, not on new data,
    so a chart first drawn empty clipped its labels ("10.80" showed as ".80")."""
    if df is None or df.empty:
        return None
    lo, hi = float(df.iloc[:, 1].min()), float(df.iloc[:, 1].max())
    pad = (hi - lo) * 0.05 or abs(hi) * 0.05 or 1e-3
    return [lo - pad, hi + pad]


def build_job_panel() -> JobPanel:
    import gradio as gr

    with gr.Tab("Jobs", id="jobs"):
        timer = gr.Timer(BUSY_TICK)  # inside the Tab: a direct child of gr.Tabs doubles a tab title (Gradio 6)
        error = gr.Markdown(elem_id="job-error")
        with gr.Row():
            pick = gr.Dropdown(label="job", choices=[], elem_id="job-pick", scale=3)
            stop = gr.Button("Stop", variant="stop", elem_id="job-stop", scale=1)
        stop_msg = gr.Markdown(elem_id="job-stop-msg")
        status = gr.Markdown(elem_id="job-status")
        with gr.Row():
            loss = gr.LinePlot(frame([], "loss"), x="step", y="loss", title="loss", elem_id="loss-plot", height=260)
            lr = gr.LinePlot(
                frame([], "learning_rate"),
                x="step",
                y="learning_rate",
                title="learning rate",
                y_axis_format=".2~e",  # 1e-4, not 0.00010
                elem_id="lr-plot",
                height=260,
            )
        log = gr.Textbox(label="log (last lines)", lines=12, max_lines=12, elem_id="job-log", autoscroll=True)
        with gr.Row():
            chat_btn = gr.Button("Chat with this checkpoint", elem_id="job-chat")
            export_btn = gr.Button("Merge and export", elem_id="job-export")
            eval_btn = gr.Button("Evaluate", elem_id="job-eval")
            deploy_btn = gr.Button("Deploy", elem_id="job-deploy")
        runs = gr.Dataframe(headers=RUN_COLUMNS, label="jobs and runs", interactive=False, elem_id="runs")
    buttons = (chat_btn, export_btn, eval_btn, deploy_btn)
    return JobPanel(pick, error, status, loss, lr, log, runs, stop, stop_msg, *buttons, timer)


def run_row(job: J.Job) -> list[Any]:
    p = J.progress(job.dir)
    args = _args_json(job.dir)
    model = args.get("model") or args.get("model_dir") or _flag(job.argv, "model") or ""
    dataset = " ".join(args.get("dataset") or []) or _flag(job.argv, "dataset") or ""
    final = f"{p.final_loss:.4f}" if p and p.final_loss is not None else ""
    step = f"{p.step}/{p.total}" if p else ""
    ckpts = " ".join(c.name for c in J.checkpoints(job.dir))
    return [job.id, job.command, job.status, step, final, ckpts, model, dataset]


def _args_json(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "args.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _flag(argv: list[str], name: str) -> str | None:
    if f"--{name}" in argv:
        i = argv.index(f"--{name}")
        return argv[i + 1] if i + 1 < len(argv) else None
    return None


def server_url(job: J.Job) -> str | None:
    """A deploy job's address, from its flags (the defaults of `lmforge deploy` otherwise)."""
    if job.command != "deploy":
        return None
    from lmforge.args.groups import DeployArgs

    host = _flag(job.argv, "host") or DeployArgs.host
    port = _flag(job.argv, "port") or str(DeployArgs.port)
    return f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}/v1"


def is_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url.removesuffix("/v1") + "/health", timeout=0.5):
            return True
    except OSError:
        return False


def describe(job: J.Job | None) -> tuple[str, str, Any, Any, str]:
    """(error line, status and progress, loss frame, lr frame, log tail) of one job."""
    if job is None:
        return "", "No job selected: start one from a tab.", frame([], "loss"), frame([], "learning_rate"), ""
    status = job.status
    err = J.error_line(job.dir, job.returncode) if status in ("failed", "stopped", "ended", "stopping") else None
    label = {"failed": "Failed", "stopped": "Stopped", "ended": "Ended"}.get(status, "Note")
    error = f"**{label}:** `{err}`" if err else ""
    p = J.progress(job.dir)
    lines = [f"**{status}** · `{shlex.join(['lmforge', job.command, *job.argv])}`" if job.argv else f"**{status}**"]
    if p:
        lines.append(f"progress: {p.text()}")
    url = server_url(job)
    if url and status == "running":
        lines.append(f"server: {url} ({'ready' if is_ready(url) else 'starting'})")
    ckpts = J.checkpoints(job.dir)
    if ckpts:
        lines.append(f"checkpoints: {', '.join(c.name for c in ckpts)}")
    lines.append(f"run dir: `{job.dir}` · log: `{job.dir / J.LOG_FILE}`")
    c = J.curves(job.dir)
    tail = "\n".join(J.log_lines(job.dir, LOG_TAIL))
    return error, "  \n".join(lines), frame(c["loss"], "loss"), frame(c["learning_rate"], "learning_rate"), tail


def default_pick(all_jobs: list[J.Job]) -> str | None:
    """What a freshly loaded page shows: the newest running job, else the newest job."""
    running = [j for j in all_jobs if j.alive()]
    chosen = running[0] if running else (all_jobs[0] if all_jobs else None)
    return chosen.id if chosen else None


def last_checkpoint(table: J.JobTable, job_id: str | None) -> str | None:
    job = table.get(job_id) if job_id else None
    ckpts = J.checkpoints(job.dir) if job else []
    return str(ckpts[-1]) if ckpts else None
