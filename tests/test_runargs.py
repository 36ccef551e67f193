"""Run args: the args.json schema, its atomic writer, the one `--adapters` check and restoring without writing
into the parsed flags. Torch-free, no model loaded."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lmforge.args import ModelArgs, TemplateArgs, TunerArgs
from lmforge.args.parser import Args
from lmforge.errors import UserError
from lmforge.runargs import RunArgs, check_adapters, read_run_args, resolve_model, write_run_args


def _lora(path: Path, args_json: dict | None = None, tuner: str | None = None) -> Path:
    path.mkdir(parents=True)
    cfg = {"peft_type": "LORA"} if tuner is None else {"lmforge_tuner": tuner}
    (path / "adapter_config.json").write_text(json.dumps(cfg))
    if args_json is not None:
        (path / "args.json").write_text(json.dumps(args_json))
    return path


def _args(adapters: list[str], explicit: set[str] = frozenset(), **template: object) -> Args:
    return Args(
        {"model": ModelArgs(), "template": TemplateArgs(**template), "tuner": TunerArgs(adapters=adapters)},
        set(explicit),
    )


def test_write_is_atomic_masks_the_token_and_reads_back(tmp_path):
    path = tmp_path / "args.json"
    write_run_args(path, {"stage": "sft", "model_dir": "/m", "hub_token": "hf_secret", "learning_rate": 1e-4})
    assert "hf_secret" not in path.read_text() and not list(tmp_path.glob(".args.*"))  # no temp file left
    saved = read_run_args(tmp_path)
    assert isinstance(saved, RunArgs) and saved.stage == "sft" and saved.model_dir == "/m"
    assert saved.raw["learning_rate"] == 1e-4 and saved.raw["hub_token"] == "***"
    ckpt = tmp_path / "checkpoint-5"
    ckpt.mkdir()
    assert read_run_args(ckpt).stage == "sft"  # a checkpoint without its own args.json: the run dir's
    assert read_run_args(tmp_path / "x" / "elsewhere") is None
    path.write_text("{broken")
    with pytest.raises(UserError, match="not readable JSON"):
        read_run_args(tmp_path)


def test_check_adapters_says_what_is_wrong_in_one_line(tmp_path):
    full = tmp_path / "full"
    full.mkdir()
    (full / "config.json").write_text("{}")
    with pytest.raises(UserError, match="is a full-weight checkpoint") as e:
        check_adapters([str(full)])
    assert f"--model {full}" in str(e.value)
    with pytest.raises(UserError, match="no such directory"):
        check_adapters([str(tmp_path / "missing")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no adapter_config.json"):
        check_adapters([str(tmp_path / "empty")])
    a, b, hooked = _lora(tmp_path / "a"), _lora(tmp_path / "b"), _lora(tmp_path / "h", tuner="adapter")
    got = check_adapters([f"x={a}", f"y={b}"], allow_named=True)
    assert got.named == {"x": str(a), "y": str(b)} and got.plain == ()
    assert check_adapters([str(hooked), str(a)]).hooked == {str(hooked)}
    for values, needle in (
        ([f"x={a}", str(b)], "mix of named and unnamed"),
        ([str(a), str(b)], "several unnamed"),
        ([f"h={hooked}"], "cannot be switched per request"),
        (["=x"], "expected name=PATH"),
        ([f"x={a}", f"x={b}"], "given twice"),
    ):
        with pytest.raises(UserError, match=needle):
            check_adapters(values, allow_named=True)


def test_resolve_flags_beat_args_json_beat_defaults_and_nothing_is_written(tmp_path):
    saved = {"model_dir": "/base", "template": "chatml", "system": "Be brief.", "max_length": 99, "stage": "sft"}
    ckpt = _lora(tmp_path / "ckpt", saved)
    (ckpt / "tokenizer_config.json").write_text("{}")
    args = _args([str(ckpt)])
    r = resolve_model(args, True)
    assert (r.model, r.template_args.template, r.template_args.system, r.template_args.max_length) == (
        "/base",
        "chatml",
        "Be brief.",
        99,
    )
    assert r.tokenizer_dir == str(ckpt) and r.adapters.plain == (str(ckpt),) and r.saved.stage == "sft"
    assert args.model.model is None and args.template.system is None  # the parsed flags are untouched
    explicit = _args([str(ckpt)], {"system"}, system="Mine.")
    assert resolve_model(explicit, True).template_args.system == "Mine."
    off = resolve_model(_args([str(ckpt)]), False)
    assert off.model is None and off.template_args.template is None and off.saved is not None
    merged = r.merged(tmp_path / "m")
    assert merged.model == str(tmp_path / "m") and merged.adapters.paths == [] and merged.tokenizer_dir is None


def test_runargs_is_torch_free():
    code = "import sys, lmforge.runargs, lmforge.infer.engine, lmforge.net; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
