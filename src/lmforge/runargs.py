"""args.json: read and written in one place (placeholder until the engine branch lands)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_run_args(path: Path, data: dict[str, Any]) -> None:
    """Write args.json completely or not at all (temp file + rename); a hub token is never written."""
    data = {**data, **({"hub_token": "***"} if data.get("hub_token") else {})}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, path)


def read_run_args(path: Path) -> dict[str, Any] | None:
    for candidate in (path / "args.json", path.parent / "args.json"):
        if candidate.is_file():
            return json.loads(candidate.read_text(encoding="utf-8"))
    return None
