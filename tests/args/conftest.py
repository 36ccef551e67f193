"""Fixtures for the flag tests: the CLI may validate but never run a command."""

from __future__ import annotations

import types
from pathlib import Path

import pytest

from lmforge import cli


@pytest.fixture
def no_command_runs(monkeypatch, tmp_path) -> Path:
    """main() may not get past validation: importing the command's module fails the test. Runs in tmp_path,
    which holds a regular file `a_file` (a path under it cannot be created)."""

    def refuse(name: str):
        raise AssertionError(f"validation let the command through to {name}")

    monkeypatch.setattr(cli, "importlib", types.SimpleNamespace(import_module=refuse))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a_file").write_text("x")
    return tmp_path
