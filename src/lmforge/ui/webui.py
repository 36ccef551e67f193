"""`lmforge web-ui`: train, align, run, export and deploy from the browser, as a thin layer over the CLI.

Every tab's form is generated from the command's flag table (ui/forms.py); Start runs the previewed command as a
background job of this server's job table (ui/jobs.py), so closing or reloading the page loses nothing; the Jobs
tab reattaches (ui/job_panel.py); the Chat tab answers with any checkpoint through the same engine as `lmforge app`.
Tested with Gradio 6 (the `webui` extra pins the range): `css` goes to launch(), as Gradio 6 requires.
"""

from __future__ import annotations

import hmac
import os
import threading
from typing import TYPE_CHECKING, Any

from lmforge.errors import UserError
from lmforge.net import check_port
from lmforge.ui import forms
from lmforge.ui import job_panel as P
from lmforge.ui.form_store import FormStore
from lmforge.ui.form_tab import FormTab, build_form_tab
from lmforge.ui.jobs import JobTable, checkpoints

if TYPE_CHECKING:
    from lmforge.args.parser import Args
    from lmforge.infer.engine import Engine, SamplingConfig

CSS = (
    ".field-error p, .lmforge-flag-error { color: #b91c1c !important; }"
    " .lmforge-flag-error { font-size: var(--text-sm); margin-top: 4px; }"
)
SERVER_COMMANDS = ("deploy",)  # long-running: Start stays on the tab, which shows the URL


class ChatSession:
    """The engine the Chat tab answers with: one per server, swapped when another checkpoint is loaded."""

    def __init__(self) -> None:
        self.engine: Engine | None = None
        self.cfg: SamplingConfig | None = None
        self._lock = threading.Lock()

    def get(self) -> tuple[Engine, SamplingConfig]:
        import gradio as gr

        if self.engine is None or self.cfg is None:
            raise gr.Error("Load a model or checkpoint first (the Load button above the chat).")
        return self.engine, self.cfg

    def load(self, model: str, adapters: str, temperature: str, max_new_tokens: str) -> tuple[str, Any]:
        """The `lmforge app` flags for these fields, checked by the CLI's own pre-flight, then the engine."""
        import gradio as gr

        from lmforge.cli import checked_args
        from lmforge.infer.engine import sampling_from_args
        from lmforge.infer.engines import engine_from
        from lmforge.runargs import resolve_model

        argv: list[str] = []
        for name, value in (("model", model), ("adapters", adapters), ("temperature", temperature)):
            if (value or "").strip():
                argv += [f"--{name}", value.strip()]
        if (max_new_tokens or "").strip():
            argv += ["--max_new_tokens", max_new_tokens.strip()]
        try:
            args = checked_args("app", argv)
            resolved = resolve_model(args, args.app.load_args)
            with self._lock:
                self.engine = None  # the old model is freed before the new one loads
                self.engine = engine_from(resolved, "pt", max_batch_size=1)
                self.cfg = sampling_from_args(args.generation, max_new_tokens=512)
        except UserError as e:
            return f"**Not loaded:** `lmforge app: error: {e}`", gr.update()
        what = f"`{resolved.model or 'the embedded model'}`" + (f" + `{adapters}`" if adapters else "")
        return f"Loaded {what} on {self.engine.capabilities.device}.", self.engine.frontend.system or ""


def build_chat_tab(session: ChatSession, choices: list[str]) -> dict[str, Any]:
    import gradio as gr

    from lmforge.ui.chat import chat_panel

    info = {f.name: f.info for f in forms.fields("app")}  # the help of `lmforge app`'s own flags
    with gr.Tab("Chat", id="chat"):
        with gr.Row():
            model = gr.Textbox(label="--model", info=info["model"], elem_id="chat-model")
            adapters = gr.Dropdown(
                choices=choices, value=None, label="--adapters", info=info["adapters"], allow_custom_value=True
            )
        with gr.Row():
            temperature = gr.Textbox(label="--temperature", info=info["temperature"], elem_id="chat-temperature")
            max_new = gr.Textbox(label="--max_new_tokens", info=info["max_new_tokens"], elem_id="chat-max-new")
            load = gr.Button("Load", variant="primary", elem_id="chat-load")
        loaded = gr.Markdown(elem_id="chat-loaded")
        parts = chat_panel(session.get, "")
    load.click(session.load, [model, adapters, temperature, max_new], [loaded, parts["system"]])
    return {"model": model, "adapters": adapters, **parts}


def all_checkpoints(table: JobTable) -> list[str]:
    return [str(c) for j in table.jobs() for c in reversed(checkpoints(j.dir))]


def wire_start(tab: FormTab, table: JobTable, panel: P.JobPanel, tabs: Any) -> None:
    import gradio as gr

    def start(command: str, *values: Any) -> tuple[Any, Any, Any, Any]:
        argv, args, problem = forms.check(command, tab.form, list(values))
        if problem is not None:
            return f"**Not started:** `{problem.message}`", gr.update(), gr.update(), gr.update()
        try:
            job = table.start(command, argv, forms.output_key(command, args))
        except UserError as e:
            return f"**Not started:** `lmforge web-ui: error: {e}`", gr.update(), gr.update(), gr.update()
        ids = [j.id for j in table.jobs()]
        where = gr.update() if command in SERVER_COMMANDS else gr.update(selected="jobs")
        said = f"Started job `{job.id}`: `{forms.command_line(command, argv)}`"
        return said, gr.update(choices=ids, value=job.id), where, gr.Timer(P.BUSY_TICK)

    button, inputs = tab.start
    button.click(start, inputs, [tab.status, panel.pick, tabs, panel.timer])


def wire_jobs(page: Any, table: JobTable, panel: P.JobPanel, deploy: FormTab | None) -> None:
    import gradio as gr

    shown = gr.State({})  # what this page shows already: unchanged outputs are not sent (nor redrawn) again

    def tick(pick: str | None, seen: dict) -> list[Any]:
        all_jobs = table.jobs()
        ids = [j.id for j in all_jobs]
        chosen = pick if pick in ids else P.default_pick(all_jobs)
        error, status, loss, lr, log = P.describe(table.get(chosen) if chosen else None)
        now = {
            "pick": (ids, chosen),
            "error": error,
            "status": status,
            "loss": loss,
            "lr": lr,
            "log": log,
            "runs": [P.run_row(j) for j in all_jobs],
            "timer": P.BUSY_TICK if any(j.alive() for j in all_jobs) else P.IDLE_TICK,
        }
        if deploy is not None:
            now["servers"] = servers_text([j for j in all_jobs if j.command in SERVER_COMMANDS])
        out: list[Any] = []
        for key, value in list(now.items()):  # _axis_update adds the charts' ranges
            same = key in seen and _same(seen[key], value)
            if same and key in ("loss", "lr"):
                out.append(_axis_update(key, value, seen, now))
            elif same:
                out.append(gr.update())
            elif key == "pick":
                out.append(gr.update(choices=ids, value=chosen))
            elif key == "timer":
                out.append(gr.Timer(value))
            else:
                out.append(value)
        return [out[0], now, *out[1:]]

    outputs = [panel.pick, shown, panel.error, panel.status, panel.loss, panel.lr, panel.log, panel.runs, panel.timer]
    if deploy is not None:
        outputs.append(deploy.servers)
    for trigger in (panel.timer.tick, page.load, panel.pick.input):
        trigger(tick, [panel.pick, shown], outputs, show_progress="hidden")
    panel.stop.click(lambda pick: table.stop(pick) if pick else "No job selected.", panel.pick, panel.stop_msg)
    if deploy is not None:
        deploy.stop_server.click(lambda: stop_newest_server(table), None, deploy.status)


def _axis_update(key: str, df: Any, seen: dict, now: dict) -> Any:
    """A chart whose points did not change this tick gets its y range (re-laid out, see job_panel.y_range)."""
    import gradio as gr

    lim = P.y_range(df)
    now[f"{key}_lim"] = lim
    return gr.update(y_lim=lim) if lim is not None and seen.get(f"{key}_lim") != lim else gr.update()


def _same(a: Any, b: Any) -> bool:
    if hasattr(a, "equals"):  # DataFrames
        return hasattr(b, "equals") and a.equals(b)
    return a == b


def servers_text(servers: list[Any]) -> str:
    running = [j for j in servers if j.alive()]
    if not running:
        return "No server running. Start one with the form above."
    lines = []
    for j in running:
        url = P.server_url(j)
        lines.append(f"- `{j.id}`: **{url}** ({'ready' if url and P.is_ready(url) else 'starting'})")
    return "\n".join(lines)


def stop_newest_server(table: JobTable) -> str:
    running = [j for j in table.jobs() if j.command in SERVER_COMMANDS and j.alive()]
    return table.stop(running[0].id) if running else "No server running."


def wire_prefill(table: JobTable, panel: P.JobPanel, tabs: Any, chat: dict, by_id: dict[str, FormTab]) -> None:
    """From a finished job: chat with, merge and export, evaluate or deploy its last checkpoint (fills those tabs)."""
    import gradio as gr

    def to_chat(pick: str | None) -> tuple[Any, Any, Any, Any]:
        ckpt = P.last_checkpoint(table, pick)
        if ckpt is None:
            return f"Job {pick} has no checkpoint yet.", gr.update(), gr.update(), gr.update()
        choices = all_checkpoints(table)
        return "", gr.update(choices=choices, value=ckpt), gr.update(value=""), gr.update(selected="chat")

    panel.chat_btn.click(to_chat, panel.pick, [panel.stop_msg, chat["adapters"], chat["model"], tabs])
    prefills = (
        (panel.export_btn, "export", {"merge_lora": True}),
        (panel.eval_btn, "eval", {}),
        (panel.deploy_btn, "deploy", {}),
    )
    for button, tid, extra in prefills:
        tab = by_id.get(tid)
        if tab is None:
            continue
        targets = [tab.widgets["adapters"], *(tab.widgets[k] for k in extra)]

        def fill(pick: str | None, tid: str = tid, extra: dict = extra) -> list[Any]:
            ckpt = P.last_checkpoint(table, pick)
            if ckpt is None:
                return [f"Job {pick} has no checkpoint yet.", gr.update(), *(gr.update() for _ in extra), gr.update()]
            return ["", ckpt, *extra.values(), gr.update(selected=tid)]

        button.click(fill, panel.pick, [panel.stop_msg, *targets, tabs])


def build_webui(table: JobTable, output_dir: str) -> Any:
    import gradio as gr

    store = FormStore(output_dir)
    session = ChatSession()
    with gr.Blocks(title="lmforge web UI", analytics_enabled=False) as page:
        gr.Markdown(f"## lmforge web UI · runs in `{output_dir}`")
        with gr.Tabs(overflow_behavior="wrap") as tabs:
            by_id: dict[str, FormTab] = {}
            for title, commands in forms.tabs():
                tab = build_form_tab(title, commands, store, forms.page_defaults(commands, output_dir))
                by_id[tab.tab_id] = tab
            panel = P.build_job_panel()
            chat = build_chat_tab(session, all_checkpoints(table))
        for tab in by_id.values():
            wire_start(tab, table, panel, tabs)
            put_back, targets = tab.restore  # the saved form first, then its preview (and the save) from it
            tab.refresh(page.load(put_back, None, targets, show_progress="hidden"))
        wire_jobs(page, table, panel, by_id.get("deploy"))
        wire_prefill(table, panel, tabs, chat, by_id)
    return page


def run_webui(args: Args) -> int:
    a = args.webui
    check_port(a.server_name, a.server_port, "--server_port")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    table = JobTable(a.output_dir)
    page = build_webui(table, a.output_dir)
    key = a.api_key
    auth = (lambda user, password: hmac.compare_digest(password.encode(), key.encode())) if key else None
    login = " (login: any user name, --api_key as the password)" if key else ""
    where = f"http://{a.server_name}:{a.server_port}"
    print(f"[lmforge] web UI at {where}{login}; jobs write to {a.output_dir}", flush=True)
    from lmforge.thirdparty import GRADIO_NO_SELF_CHECK

    page.queue(default_concurrency_limit=4).launch(
        server_name=a.server_name,
        server_port=a.server_port,
        auth=auth,
        show_error=True,
        css=CSS,
        quiet=True,
        **GRADIO_NO_SELF_CHECK,  # the page's config takes over its 3 s to build on a busy machine: a crash, not a page
    )
    return 0
