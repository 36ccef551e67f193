"""`lmforge export --adapters CKPT --merge_lora true`: a plain HF model directory that answers as base+adapter did."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmforge.errors import UserError, writing
from lmforge.multimodal.encode import save_media_files
from lmforge.runargs import ResolvedModel, resolve_model, write_run_args

if TYPE_CHECKING:
    from lmforge.args.parser import Args


ST_FILES = (
    "modules.json",
    "config_sentence_transformers.json",
    "sentence_bert_config.json",
    "1_Pooling",
    "2_Normalize",
)


def config_dtype(model_dir: Path) -> Any:
    import torch

    cfg = json.loads((model_dir / "config.json").read_text())
    name = cfg.get("dtype") or cfg.get("torch_dtype") or "float32"
    return getattr(torch, name, torch.float32)


def merge_adapters(resolved: ResolvedModel, out: Path, max_shard_size: str = "5GB") -> Path:
    """Merge the resolved LoRA adapters into the base model (in the base's own dtype) and write `out` completely
    (staged in `<out>.tmp`, renamed into place)."""
    from peft import PeftModel

    from lmforge.models.loader import load_model
    from lmforge.models.setup import setup_tokenizer

    adapters = resolved.adapters
    for path in adapters.plain:
        if path in adapters.hooked:
            raise UserError(
                f"{path}: adapter/reft tuners add layers, there is nothing to merge into the base weights",
                hint="use it as it is: lmforge infer/deploy --adapters CKPT",
            )
    tok_dir = Path(resolved.tokenizer_dir) if resolved.tokenizer_dir else None
    setup = setup_tokenizer(resolved.model_args, resolved.template_args, tok_dir)
    from lmforge.data.labels import saved_head

    raw = resolved.saved.raw if resolved.saved is not None else {}
    task = raw.get("task_type") or "causal_lm"  # a classifier or embedding run merges into its own head/trunk
    model = load_model(setup.model_dir, dtype=config_dtype(setup.model_dir), task=task, **saved_head(raw))
    for path in adapters.plain:
        model = PeftModel.from_pretrained(model, path)
        model = model.merge_and_unload()  # LoRA folded into the weights: a plain transformers model again
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with writing("the merged model", out):
            _write(model, setup, resolved, adapters, tmp, max_shard_size)
            shutil.rmtree(out, ignore_errors=True)
            tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # a failed write leaves no half model behind
    return out


def _write(model: Any, setup: Any, resolved: Any, adapters: Any, tmp: Path, max_shard_size: str) -> None:
    """Weights, tokenizer with the training template, generation config and args.json into `tmp`."""
    tok = setup.tokenizer
    task_head = not hasattr(model, "generation_config") or "ForSequenceClassification" in type(model).__name__
    if task_head and getattr(model.config, "pad_token_id", None) is None:  # a classifier finds rows' last tokens
        model.config.pad_token_id = tok.pad_token_id
    model.save_pretrained(tmp, max_shard_size=max_shard_size)
    for path in adapters.plain[:1]:  # an embedding run: sentence-transformers' module files (pooling, normalize)
        for name in ST_FILES:
            src = Path(path) / name
            if src.is_dir():
                shutil.copytree(src, tmp / name)
            elif src.is_file():
                shutil.copy2(src, tmp / name)
    gen = getattr(model, "generation_config", None)  # a classifier or embedding trunk generates nothing
    saved = {"merged_from": list(adapters.plain), "base_model_dir": str(setup.model_dir)}
    write_companions(tmp, setup, resolved, gen, saved)


def write_companions(tmp: Path, setup: Any, resolved: Any, gen: Any, extra: dict[str, Any]) -> None:
    """What makes a folder of weights an lmforge model: the tokenizer with the run's template, the image processor
    of a vision-language model, a generation config that stops where the template does (none for a task head), and
    args.json (template, system prompt, where it came from)."""
    tok = setup.tokenizer
    tok.chat_template = setup.template.exported_jinja()  # the training template (and its thinking default)
    tok.save_pretrained(tmp)
    save_media_files(setup.template, tmp)  # a vision-language model: its image processor, resizing as trained
    if gen is not None:
        gen.eos_token_id = setup.template.stop_ids()
        gen.pad_token_id = tok.pad_token_id
        gen.save_pretrained(tmp)
    saved = dict(resolved.saved.raw) if resolved.saved is not None else {}
    saved.update({**extra, "template": setup.template_name, "system": setup.template.system})
    saved.pop("model_dir", None)  # the exported folder is the model now
    write_run_args(tmp / "args.json", saved)


def run_export(args: Args) -> int:
    e = args.export
    if not args.tuner.adapters:
        raise UserError(
            "export needs --adapters CKPT", hint="lmforge export --adapters output/vx/checkpoint-N --merge_lora true"
        )
    if not e.merge_lora:
        raise UserError("nothing to export: pass --merge_lora true")
    resolved = resolve_model(args, e.load_args)
    out = Path(e.output_dir) if e.output_dir else Path(resolved.adapters.plain[0].rstrip("/") + "-merged")
    if out.exists() and not e.exist_ok:
        raise UserError(f"{out} already exists", hint="pass --exist_ok true to overwrite, or another --output_dir")
    merge_adapters(resolved, out, e.max_shard_size)
    print(f"[lmforge] merged model written to {out}")
    if e.push_to_hub:
        push(out, e.hub_model_id, e.hub_private_repo, e.commit_message, args.model.hub_token)
    return 0


def push(folder: Path, repo_id: str | None, private: bool, message: str, token: str | None) -> None:
    if not repo_id:
        raise UserError("--push_to_hub needs --hub_model_id")
    try:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
        api.create_repo(repo_id, private=private, exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=repo_id, commit_message=message)
    except Exception as e:
        reason = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise UserError(f"push to '{repo_id}' failed ({reason})", hint="offline? copy the folder by hand")
    print(f"[lmforge] pushed {folder} to {repo_id}")
