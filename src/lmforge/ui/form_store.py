"""The web UI's form values, kept per `--output_dir` (as LlamaBoard keeps its form per output dir): a reload, another
browser or a restarted server opens every tab as it was left. One small JSON file, `<output_dir>/webui_forms.json`,
holding per tab the command (sft or pt) and the fields that differ from what the page starts with. Gradio-free."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from lmforge.ui.forms import Field

FORM_FILE = "webui_forms.json"


class FormStore:
    """Read and write the saved forms of one output dir (every tab's refresh writes; one writer at a time)."""

    def __init__(self, output_dir: str | Path):
        self.path = Path(output_dir) / FORM_FILE
        self._lock = threading.Lock()

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):  # none yet, or hand-edited into nonsense: the page starts fresh
            return {}
        return data if isinstance(data, dict) else {}

    def save(self, tab: str, command: str, form: list[Field], start: list[Any], values: list[Any]) -> None:
        """Keep the fields whose value differs from `start` (what the page shows before anyone types)."""
        changed = {f.name: v for f, s, v in zip(form, start, values) if v != s and _storable(f, v)}
        with self._lock:
            data = self._read()
            if data.get(tab) == {"command": command, "values": changed}:
                return
            data[tab] = {"command": command, "values": changed}
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{FORM_FILE}.tmp")
            tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")
            os.replace(tmp, self.path)

    def load(self, tab: str, form: list[Field]) -> tuple[str | None, dict[str, Any]]:
        """(saved command or None, {field: value}) for the fields of `form` that were saved with a usable value."""
        entry = self._read().get(tab)
        if not isinstance(entry, dict):
            return None, {}
        values = entry.get("values") if isinstance(entry.get("values"), dict) else {}
        by_name = {f.name: f for f in form}
        kept = {k: v for k, v in values.items() if k in by_name and _storable(by_name[k], v)}
        command = entry.get("command")
        return (command if isinstance(command, str) else None), kept


def _storable(f: Field, value: Any) -> bool:
    """Whether a value has the type the field's widget holds (a stale or edited file cannot break a field)."""
    if f.widget == "checkbox":
        return isinstance(value, bool)
    if f.widget == "multiselect":
        return isinstance(value, list) and all(isinstance(v, str) for v in value) and set(value) <= set(f.choices)
    if f.widget in ("dropdown", "tristate"):
        return isinstance(value, str) and value in f.choices
    return isinstance(value, str)
