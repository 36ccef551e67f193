"""One web-UI tab per command family: the form generated from the flag table (ui/forms.py), the live command and
YAML preview, the CLI's own error beside the field it names, the dataset preview (`lmforge check`'s report) and
Start, which hands the exact command to the server's job table."""

from __future__ import annotations

import io
import json
import threading
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from typing import Any

from lmforge.errors import UserError
from lmforge.ui import forms
from lmforge.ui.form_store import FormStore

_CHECK_LOCK = threading.Lock()  # `lmforge check` runs in-process with stdout captured: one at a time
PREVIEW_ROWS = 3
# puts the CLI's error line under the field it names (and takes the tab's old one away), in the browser: a refresh
# that updated every field's help text had ~340 outputs per keystroke, which kept a loaded machine's page busy
MARK_JS = """(payload) => {
    const d = JSON.parse(payload || "{}");
    document.querySelectorAll(`.lmforge-flag-error[data-tab="${d.tab}"]`).forEach((e) => e.remove());
    const host = d.field ? document.getElementById(d.field) : null;
    if (host) {
        const line = document.createElement("div");
        line.className = "lmforge-flag-error";
        line.dataset.tab = d.tab;
        line.textContent = "⚠ " + d.message;
        host.appendChild(line);
    }
    return [];
}"""


@dataclass
class FormTab:
    """The components of one tab, for the page to wire prefills and the job list to."""

    tab_id: str
    commands: tuple[str, ...]
    form: list[forms.Field]
    widgets: dict[str, Any] = field(default_factory=dict)
    command: Any = None  # a Radio (sft/pt) or a State holding the only command
    status: Any = None
    refresh: Any = None  # refresh(event): after that event, the preview and the field's error follow the form
    restore: tuple = ()  # (fn, outputs): the saved form of this output dir, put back on page load
    start: tuple = ()  # (Start button, inputs)
    servers: Any = None  # a server command's tab (a --port flag): the running servers and their URLs
    stop_server: Any = None


def tab_id(title: str) -> str:
    return title.lower()


def make_widget(f: forms.Field, tid: str, value: Any) -> Any:
    import gradio as gr

    kw = {"label": f.label, "info": f.info, "elem_id": f"{tid}-{f.name}"}
    if f.widget == "checkbox":
        return gr.Checkbox(value=value, **kw)
    if f.widget in ("dropdown", "tristate"):
        return gr.Dropdown(choices=f.choices, value=value, **kw)
    if f.widget == "multiselect":
        return gr.Dropdown(choices=f.choices, value=value, multiselect=True, **kw)
    return gr.Textbox(value=value, lines=1, **kw)


def build_form_tab(title: str, commands: tuple[str, ...], store: FormStore, defaults: dict[str, Any]) -> FormTab:
    """Inside an open gr.Tabs: the tab, its form, preview and Start. `defaults` overrides initial values
    (--output_dir of the web UI); every change is saved to `store`, which the page load puts back."""
    import gradio as gr

    tid = tab_id(title)
    tab = FormTab(tid, commands, forms.tab_fields(commands))
    start = [defaults.get(f.name, f.initial()) for f in tab.form]

    def add(f: forms.Field) -> None:
        tab.widgets[f.name] = make_widget(f, tid, defaults.get(f.name, f.initial()))

    with gr.Tab(title, id=tid):
        # inside the Tab: a component that is a direct child of gr.Tabs shifts the tab indices in Gradio 6's
        # front end, which then shows a tab title twice
        mark = gr.Textbox(visible="hidden", elem_id=f"{tid}-mark")  # {"field", "message"} for MARK_JS
        if len(commands) > 1:
            tab.command = gr.Radio(list(commands), value=commands[0], label="command", elem_id=f"{tid}-command")
        else:
            tab.command = gr.State(commands[0])
        basic = [f for f in tab.form if f.basic]
        for i in range(0, len(basic), 3):  # three to a row: the whole basic form fits a screen
            with gr.Row():
                for f in basic[i : i + 3]:
                    with gr.Column(min_width=240):
                        add(f)
        groups: dict[str, list[forms.Field]] = {}
        for f in tab.form:
            if not f.basic:
                groups.setdefault(f.spec.group, []).append(f)
        for group, members in groups.items():
            with gr.Accordion(f"advanced: {group} flags ({len(members)})", open=False):
                for f in members:
                    add(f)
        top_error = gr.Markdown(elem_id=f"{tid}-error", elem_classes="field-error")
        with gr.Row():
            code = {"interactive": False, "show_line_numbers": False, "wrap_lines": True}
            cmd_box = gr.Code(label="command", language="shell", lines=2, elem_id=f"{tid}-cmd", **code)
            yaml_box = gr.Code(label="config.yaml", language="yaml", lines=6, elem_id=f"{tid}-yaml", **code)
        preview = None
        if "dataset" in tab.widgets:
            preview_btn = gr.Button("Preview dataset", elem_id=f"{tid}-preview-btn")
            preview = gr.Code(label="dataset preview (lmforge check)", lines=12, elem_id=f"{tid}-preview", **code)
        start_btn = gr.Button("Start", variant="primary", elem_id=f"{tid}-start")
        tab.status = gr.Markdown(elem_id=f"{tid}-status")
        if "port" in tab.widgets:
            tab.servers = gr.Markdown(elem_id=f"{tid}-servers")
            tab.stop_server = gr.Button("Stop server", variant="stop", elem_id=f"{tid}-stop")
    values = [tab.widgets[f.name] for f in tab.form]

    def preview_and_errors(command: str, *vals: Any) -> list[Any]:
        argv, _, problem = forms.check(command, tab.form, list(vals))
        slot = problem.flag if problem else None
        note = f"**{problem.message}**" if problem and slot is None else ""
        try:
            store.save(tid, command, tab.form, start, list(vals))
        except OSError as e:  # the form still works; only a reload would lose it
            note += f"\n\nThe form is not saved in {store.path} ({e.strerror or e})."
        where = {"tab": tid, "field": f"{tid}-{slot}" if slot else None, "message": problem.message if slot else ""}
        return [forms.command_line(command, argv), forms.to_yaml(command, argv), note, json.dumps(where)]

    inputs, outputs = [tab.command, *values], [cmd_box, yaml_box, top_error, mark]
    triggers = [w.change for w in values] + ([tab.command.change] if len(commands) > 1 else [])

    def refresh(after: Any = None) -> None:
        """The preview and the field's error line: after `after` (the page load), or on every change of the form."""
        quiet = {"show_progress": "hidden"}
        if after is None:
            dep = gr.on(triggers, preview_and_errors, inputs, outputs, trigger_mode="always_last", **quiet)
        else:
            dep = after.then(preview_and_errors, inputs, outputs, **quiet)
        dep.then(None, mark, None, js=MARK_JS)

    refresh()
    tab.refresh = refresh

    def restore() -> list[Any]:
        command, saved = store.load(tid, tab.form)
        head = [command if command in commands else gr.update()] if len(commands) > 1 else []
        return head + [saved[f.name] if f.name in saved else gr.update() for f in tab.form]

    tab.restore = (restore, ([tab.command] if len(commands) > 1 else []) + values)
    if preview is not None:
        ds = tab.widgets["dataset"]
        gr.on([preview_btn.click, ds.blur, ds.submit], lambda *v: dataset_preview(tab.form, list(v)), values, preview)
    tab.start = (start_btn, [tab.command, *values])
    return tab


def dataset_preview(form: list[forms.Field], values: list[Any]) -> str:
    """`lmforge check` on the form's model, template and data flags: formats, drops, the first rows with their
    trained spans in [[ ]]; its error line first when it refuses the data."""
    from lmforge.cli import main

    try:
        argv = forms.to_argv("check", form, values)
    except UserError as e:
        return f"lmforge check: error: {e}"
    buf = io.StringIO()
    with _CHECK_LOCK, redirect_stdout(buf), redirect_stderr(buf):
        code = main(["check", *argv, "--show_samples", str(PREVIEW_ROWS)])
    lines = [ln.rsplit("\r", 1)[-1] for ln in buf.getvalue().splitlines()]
    lines = [ln for ln in lines if ln.strip() and "it/s]" not in ln and "examples/s]" not in ln]
    errors = [ln for ln in lines if ln.startswith("lmforge check: error")]
    head = f"{errors[-1]}\n\n" if errors else ("" if code == 0 else f"lmforge check: exit {code}\n\n")
    return head + "\n".join(ln for ln in lines if ln not in errors)
