"""`lmforge export --to_gguf true`: one .gguf file for llama.cpp / Ollama, written by llama.cpp's own converter
(`convert_hf_to_gguf.py`, shipped only in the llama-cpp-python sdist, with its bundled `gguf-py`), K-quants by
llama.cpp's own quantizer (`llama_model_quantize` of the llama-cpp-python binding). Not a home-made writer."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from lmforge.errors import UserError

LLAMA_CPP_VERSION = "0.3.36"  # llama-cpp-python release whose vendored converter was checked here
_MEMBERS = ("convert_hf_to_gguf.py", "convert_lora_to_gguf.py", "conversion", "gguf-py")
# converter --outtype per --gguf_type; q4_k_m is quantized from f16 by llama.cpp's quantizer
OUTTYPES = {"f16": "f16", "bf16": "bf16", "q8_0": "q8_0", "q4_k_m": "f16"}


def converter_dir() -> Path:
    """A folder holding llama.cpp's convert_hf_to_gguf.py: $LMFORGE_LLAMA_CPP_DIR (a llama.cpp checkout), else the
    files extracted once from the llama-cpp-python sdist into $LMFORGE_HOME (pip download, about 80 MB)."""
    env = os.environ.get("LMFORGE_LLAMA_CPP_DIR")
    if env:
        if not (Path(env) / "convert_hf_to_gguf.py").is_file():
            raise UserError(f"LMFORGE_LLAMA_CPP_DIR={env}: no convert_hf_to_gguf.py there")
        return Path(env)
    from filelock import FileLock

    from lmforge.models.loader import lmforge_home

    out = lmforge_home() / f"llama.cpp-{LLAMA_CPP_VERSION}"
    if (out / "convert_hf_to_gguf.py").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out) + ".lock"):
        if not (out / "convert_hf_to_gguf.py").is_file():
            _fetch_converter(out)
    return out


def _fetch_converter(out: Path) -> None:
    print(f"[lmforge] fetching llama.cpp's converter (llama-cpp-python {LLAMA_CPP_VERSION} sdist) into {out}")
    with tempfile.TemporaryDirectory(prefix="lmforge-llamacpp-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", "llama-cpp-python", "-d", tmp]
        r = subprocess.run([*cmd, f"llama-cpp-python=={LLAMA_CPP_VERSION}"], capture_output=True, text=True)
        sdists = list(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        if r.returncode != 0 or not sdists:
            last = (r.stderr.strip().splitlines() or ["no sdist"])[-1][:160]
            raise UserError(
                f"--to_gguf: could not download llama.cpp's converter ({last})",
                hint="offline? set LMFORGE_LLAMA_CPP_DIR to a llama.cpp checkout",
            )
        prefix = f"{sdists[0].name[: -len('.tar.gz')]}/vendor/llama.cpp/"
        staged = out.with_name(out.name + ".tmp")
        shutil.rmtree(staged, ignore_errors=True)
        with tarfile.open(sdists[0]) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(prefix) and _wanted(m.name[len(prefix) :])]
            for m in members:
                m.name = m.name[len(prefix) :]
            tar.extractall(staged, members=members, filter="data")
        shutil.rmtree(out, ignore_errors=True)
        staged.rename(out)


def _wanted(rel: str) -> bool:
    return any(rel == m or rel.startswith(m + "/") for m in _MEMBERS)


def known_architectures(conv: Path) -> set[str]:
    """The HF `architectures` the converter registers (read from its source: importing it needs torch)."""
    names: set[str] = set()
    for path in [conv / "convert_hf_to_gguf.py", *sorted((conv / "conversion").glob("*.py"))]:
        for call in re.findall(r"@ModelBase\.register\(([^)]*)\)", path.read_text(errors="replace")):
            names.update(re.findall(r"[\"']([A-Za-z0-9_]+)[\"']", call))
    return names


def check_family(config: dict, conv: Path) -> None:
    archs = config.get("architectures") or []
    known = known_architectures(conv)
    if not archs or archs[0] not in known:
        name = archs[0] if archs else f"model_type {config.get('model_type')!r}"
        raise UserError(
            f"--to_gguf: llama.cpp's converter does not know the {name} family ({len(known)} architectures known)",
            hint="export a merged HF folder instead (--merge_lora true), or use a family llama.cpp supports",
        )


def check_quantizer(gguf_type: str) -> None:
    """q4_k_m needs llama.cpp's quantizer, which only the compiled llama-cpp-python binding carries."""
    import importlib.util

    if gguf_type == "q4_k_m" and importlib.util.find_spec("llama_cpp") is None:
        raise UserError(
            "--gguf_type q4_k_m needs llama.cpp's quantizer from the llama-cpp-python package",
            hint="pip install llama-cpp-python (builds llama.cpp, a few minutes), or use --gguf_type q8_0",
        )


def model_name(model: str | None) -> str:
    """What the .gguf is named after (its file name and `general.name`): the model as the user named it (the
    embedded model, a hub id's last part, a folder or .gguf file's name), not the cache folder it was converted
    into (`SmolLM2-135M-Instruct-<hash>`)."""
    from lmforge.models.loader import EMBEDDED_ALIASES, EMBEDDED_NAME

    if model is None or model.lower() in EMBEDDED_ALIASES:
        return EMBEDDED_NAME
    path = Path(model.rstrip("/"))
    return path.stem if path.suffix == ".gguf" else path.name


def convert(src: Path, outfile: Path, gguf_type: str, conv: Path, name: str) -> None:
    """Run llama.cpp's converter (and quantizer for K-quants) on the HF folder `src`."""
    target = outfile if gguf_type == OUTTYPES[gguf_type] else outfile.with_suffix(".f16.gguf")
    cmd = [sys.executable, str(conv / "convert_hf_to_gguf.py"), str(src), "--outtype", OUTTYPES[gguf_type]]
    cmd += ["--model-name", name]
    r = subprocess.run([*cmd, "--outfile", str(target)], capture_output=True, text=True)
    if r.returncode != 0 or not target.is_file():
        lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
        raise UserError(f"llama.cpp's converter failed on {src} ({(lines or ['no output'])[-1][:200]})")
    if target != outfile:
        try:
            _quantize(target, outfile, gguf_type)
        finally:
            target.unlink(missing_ok=True)


def _quantize(src: Path, dst: Path, gguf_type: str) -> None:
    import ctypes

    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{gguf_type.upper()}")
    params.nthread = max(1, os.cpu_count() or 1)
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if rc != 0 or not dst.is_file():
        raise UserError(f"llama.cpp's quantizer failed on {src} (rc {rc})")


def modelfile(gguf_name: str, stop: list[str], system: str | None) -> str:
    """An Ollama Modelfile next to the .gguf. No TEMPLATE: Ollama takes the chat template that the converter
    wrote into the file (tokenizer.chat_template)."""
    lines = [f"FROM ./{gguf_name}"]
    lines += [f"PARAMETER stop {s!r}".replace("'", '"') for s in stop]
    if system:
        lines.append(f'SYSTEM """{system}"""')
    return "\n".join(lines) + "\n"


def stage_source(model_dir: Path, tokenizer: object, jinja: str, staged: Path) -> Path:
    """`model_dir` with the run's chat template baked into its tokenizer files, as a folder of links (so the
    converter writes that template into the GGUF) without copying weights."""
    staged.mkdir(parents=True)
    for f in model_dir.iterdir():
        if f.is_file() and not f.name.startswith(("tokenizer", "special_tokens", "chat_template", "vocab", "merges")):
            (staged / f.name).symlink_to(f.resolve())
    tokenizer.chat_template = jinja  # type: ignore[attr-defined]
    tokenizer.save_pretrained(staged)  # type: ignore[attr-defined]
    return staged
