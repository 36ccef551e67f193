"""Plug-ins: Python files named by `--external_plugins` (ms-swift's `--custom_register_path`).

The CLI imports them right after the flags are parsed, in every command, before any model, template or dataset is
resolved, so whatever they register is seen by everything that follows. A plug-in file calls the `register_*`
functions exported here.
"""

from __future__ import annotations

import importlib.util
import sys
import traceback
from pathlib import Path

from lmforge.errors import UserError

_LOADED: dict[Path, object] = {}  # a file is imported once per process, however many commands run in it


def load_plugins(paths: list[str]) -> None:
    """Import each plug-in file once. A file that fails to import is a one-line error; its own frames of the
    traceback are printed first, because the plug-in's author needs them to find the bug."""
    for p in paths:
        path = Path(p).resolve()
        if path in _LOADED:
            continue
        if not path.is_file():
            raise UserError(f"--external_plugins {p}: file not found")
        spec = importlib.util.spec_from_file_location(f"lmforge_plugin_{path.stem}", path)
        if spec is None or spec.loader is None:
            raise UserError(f"--external_plugins {p}: not a Python file")
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except UserError:
            raise
        except Exception as e:
            frames = [f for f in traceback.extract_tb(e.__traceback__) if Path(f.filename).resolve() == path]
            if frames:
                print("".join(traceback.format_list(frames)).rstrip(), file=sys.stderr)
            raise UserError(f"--external_plugins {p}: plug-in failed to import ({type(e).__name__}: {e})")
        _LOADED[path] = module
