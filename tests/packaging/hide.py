"""A test-only import blocker: makes packages look uninstalled inside this process."""

from __future__ import annotations

import sys
from collections.abc import Iterable

import pytest


class _Blocker:
    """A sys.meta_path finder that refuses `names` and their submodules, as a missing package would."""

    def __init__(self, names: Iterable[str]):
        self.names = tuple(names)

    def _hidden(self, fullname: str) -> bool:
        return any(fullname == n or fullname.startswith(n + ".") for n in self.names)

    def find_spec(self, fullname, path=None, target=None):  # noqa: ANN001, ANN201
        if self._hidden(fullname):
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None


def hide_packages(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    """Hide `names` until the test ends: imported copies leave sys.modules, new finds fail."""
    blocker = _Blocker(names)
    for mod in [m for m in sys.modules if blocker._hidden(m)]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setattr(sys, "meta_path", [blocker, *sys.meta_path])
