"""`lmforge env`: what a bug report needs: versions, devices, bf16, and which optional features work here.

Versions come from package metadata (no imports); only torch is imported, for the devices. Under two seconds.
"""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from typing import Any

CORE = ("torch", "transformers", "peft", "trl", "datasets", "accelerate", "safetensors", "gguf", "huggingface_hub")


def version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def devices() -> list[str]:
    """One line per device with its bf16 support ("cpu: 16 cores, bf16 yes (oneDNN)")."""
    import torch

    from lmforge.thirdparty import mkldnn_bf16_supported

    cpu_bf16 = "yes (oneDNN bf16 units)" if mkldnn_bf16_supported() else "no fast bf16 units (float32 is used)"
    lines = [f"cpu: {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, bf16 {cpu_bf16}"]
    if torch.cuda.is_available():
        bf16 = "yes" if torch.cuda.is_bf16_supported() else "no"
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            lines.append(f"cuda:{i}: {p.name}, {p.total_memory / 2**30:.0f} GiB, bf16 {bf16}")
        lines.append(f"cuda runtime {torch.version.cuda}")
    else:
        lines.append("cuda: not available" + (" (torch is a CPU build)" if torch.version.cuda is None else ""))
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        lines.append("mps: available")
    return lines


def feature_lines() -> list[str]:
    """`ok` or `missing: why; install line` for each optional feature."""
    from lmforge.features import FEATURES

    width = max(len(f.label) for f in FEATURES)
    out, seen = [], set()
    for f in FEATURES:
        if f.label in seen:  # one feature guarding several commands' flags (infer, deploy, app)
            continue
        seen.add(f.label)
        why = f.missing()
        state = "ok" if why is None else f"missing: {why}; {f.install}"
        out.append(f"  {f.label.ljust(width)}  {state}")
    return out


def report() -> str:
    from lmforge import __version__

    lines = [
        f"lmforge {__version__}",
        f"python {platform.python_version()} ({sys.executable}) on {platform.platform()}",
        "packages: " + ", ".join(f"{d} {version(d)}" for d in CORE),
        "devices:",
        *(f"  {d}" for d in devices()),
        "optional features:",
        *feature_lines(),
    ]
    return "\n".join(lines)


def run_env(_args: Any) -> int:
    print(report())
    return 0
