"""`lmforge export`: merge LoRA (merge.py), quantize (`--quant_method`, the EXPORTERS table in methods.py) or write
a GGUF (`--to_gguf`, gguf.py), then measure the result against the unquantized model (report.py).

Every check that can fail (method, bits, GPU, packages, group size, GGUF family, calibration rows) runs before a
model loads; LoRA is merged first, into a work folder next to the output, and the output is written completely
(staged in `<out>.tmp`, renamed into place)."""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmforge.errors import DataError, UserError, writing
from lmforge.export import merge
from lmforge.export.methods import check_group_size, check_method, check_packages, default_output_dir
from lmforge.runargs import ResolvedModel, resolve_model

if TYPE_CHECKING:
    from lmforge.args.parser import Args
    from lmforge.export.report import CheckRows

DEFAULT_DATASET = "lmforge-instruct-mini"  # when neither --dataset nor the run's args.json names one
CHECK_ROWS, CHECK_PROMPTS = 16, 3


def run_export(args: Args) -> int:
    e = args.export
    if not (e.quant_method or e.to_gguf):
        return merge.run_export(args)
    resolved = resolve_model(args, e.load_args)
    out = (
        Path(e.output_dir)
        if e.output_dir
        else default_output_dir(resolved.adapters.plain, resolved.model, e.quant_method, e.quant_bits, e.to_gguf)
    )
    ex = check_method(e.quant_method, e.quant_bits, e.group_size) if e.quant_method else None
    conv = None
    if e.to_gguf:
        from lmforge.export import gguf

        gguf.check_quantizer(e.gguf_type)
        conv = gguf.converter_dir()
    from lmforge.models.setup import setup_tokenizer

    tok_dir = Path(resolved.tokenizer_dir) if resolved.tokenizer_dir else None
    setup = setup_tokenizer(resolved.model_args, resolved.template_args, tok_dir)
    if ex is not None and ex.grouped:
        check_group_size(e.group_size, setup.config, e.quant_method)
    if conv is not None:
        gguf.check_family(setup.config, conv)
    calib, rows = _rows(args, resolved, setup, e.quant_n_samples if ex is not None and ex.calibrated else 0)
    if ex is not None:
        check_packages(e.quant_method, ex)
    work = out.with_name(out.name + ".work")
    shutil.rmtree(work, ignore_errors=True)
    try:
        src = setup.model_dir
        if resolved.adapters.plain:
            src = merge.merge_adapters(resolved, work / "merged")
        label = f"gguf-{e.gguf_type}" if e.to_gguf else f"{e.quant_method}-int{e.quant_bits}"
        start = time.perf_counter()
        with writing("the exported model", out):
            if conv is not None:
                target = _write_gguf(src, out, setup, e.gguf_type, conv, work, resolved.model)
            else:
                target = _write_quantized(src, out, setup, resolved, ex, e, calib)
        seconds = time.perf_counter() - start
        print(f"[lmforge] {label} export written to {target} ({seconds:.1f} s)")
        if e.quant_check:
            _report(src, target, setup, rows, label, seconds)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if e.push_to_hub:
        merge.push(out, e.hub_model_id, e.hub_private_repo, e.commit_message, args.model.hub_token)
    return 0


def _staged(out: Path) -> Path:
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    return tmp


def _publish(tmp: Path, out: Path) -> None:
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)


def _write_quantized(src: Path, out: Path, setup: Any, resolved: ResolvedModel, ex: Any, e: Any, calib: list) -> Path:
    from transformers import GenerationConfig

    from lmforge.export.quant import QuantJob

    tmp = _staged(out)
    try:
        module, func = ex.target.split(":")
        job = QuantJob(src, tmp, e.quant_bits, e.group_size, merge.config_dtype(src), setup.tokenizer, calib)
        getattr(importlib.import_module(module), func)(job)
        try:
            gen = GenerationConfig.from_pretrained(src)
        except OSError:
            gen = GenerationConfig()
        extra = {
            "quant_method": e.quant_method,
            "quant_bits": e.quant_bits,
            "base_model_dir": str(Path(setup.model_dir).resolve()),
            "merged_from": list(resolved.adapters.plain),
        }
        if ex.grouped:
            extra["group_size"] = e.group_size
        merge.write_companions(tmp, setup, resolved, gen, extra)
        _publish(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _write_gguf(src: Path, out: Path, setup: Any, gguf_type: str, conv: Path, work: Path, model: str | None) -> Path:
    from lmforge.export import gguf

    staged = gguf.stage_source(src, setup.tokenizer, setup.template.jinja, work / "gguf-src")
    tmp = _staged(out)
    try:
        tmp.mkdir(parents=True)
        title = gguf.model_name(model)
        name = f"{title}-{gguf_type}.gguf"
        gguf.convert(staged, tmp / name, gguf_type, conv, title)
        stops = [setup.tokenizer.decode([i]) for i in setup.template.stop_ids()]
        (tmp / "Modelfile").write_text(gguf.modelfile(name, stops, setup.template.system))
        _publish(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out / name


def _rows(args: Args, resolved: ResolvedModel, setup: Any, n_calib: int) -> tuple[list[str], CheckRows]:
    """Calibration texts (the first --quant_n_samples rows) and the report's held-out rows (--val_dataset, else
    the rows after the calibration ones), all encoded with the run's template. The rows default to the run's own
    training set (args.json), as ms-swift does."""
    from lmforge.data import builtin  # noqa: F401  (registers the built-in datasets)
    from lmforge.data.loader import load_specs
    from lmforge.export.report import CheckRows

    saved = resolved.saved.raw if resolved.saved is not None else {}
    specs = list(args.data.dataset) or list(saved.get("dataset") or []) or [DEFAULT_DATASET]
    data = dataclasses.replace(args.data, dataset=specs, streaming=False)
    encoded = _encode(load_specs(specs, data), setup)
    if n_calib and len(encoded) < n_calib:
        raise DataError(
            f"--dataset {' '.join(specs)}: {len(encoded)} usable rows, --quant_n_samples asks for {n_calib} "
            "calibration rows",
            hint=f"lower --quant_n_samples (e.g. {max(len(encoded), 1)}) or give more rows",
        )
    calib = [setup.tokenizer.decode(ids) for _, ids, _ in encoded[:n_calib]]
    source = "--val_dataset"
    if args.data.val_dataset:
        held = _encode(load_specs(list(args.data.val_dataset), data), setup)
    elif not n_calib:
        held, source = encoded, " ".join(specs)
    elif len(encoded) > n_calib:
        held, source = encoded[n_calib:], f"{' '.join(specs)}, rows not used for calibration"
    else:
        held, source = encoded, f"{' '.join(specs)} (the calibration rows: no others left)"
    held = held[:CHECK_ROWS]
    prompts = [(setup.template.prompt_ids(m[:-1]), m[-2]["content"]) for m, _, _ in held[:CHECK_PROMPTS]]
    return calib, CheckRows([(ids, lab) for _, ids, lab in held], prompts, source, setup.template.stop_ids())


def _encode(parts: list, setup: Any) -> list[tuple[list[dict], list[int], list[int]]]:
    """(messages, input_ids, labels) of every row that ends with an answer; others are skipped."""
    out = []
    for part in parts:
        for row_json in part.rows["row"]:
            msgs = json.loads(row_json)["messages"]
            if len(msgs) < 2 or msgs[-1]["role"] != "assistant":
                continue
            try:
                enc = setup.template.encode(msgs)
            except UserError:
                continue
            out.append((msgs, enc.input_ids, enc.labels))
    return out


def _report(src: Path, target: Path, setup: Any, rows: CheckRows, label: str, seconds: float) -> None:
    """Load the unquantized source and the export back as a user would run it (a quantized folder through
    transformers with its own quantization config; a GGUF through llama.cpp where llama-cpp-python is installed,
    else through transformers' GGUF loader) and compare them."""
    import torch
    from transformers import AutoModelForCausalLM

    from lmforge.export import report

    start = time.perf_counter()
    before = report.run_side(AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32), setup.tokenizer, rows)
    reader = "transformers"
    if target.suffix == ".gguf" and importlib.util.find_spec("llama_cpp") is not None:
        reader = "llama.cpp"
        after = report.run_side_llamacpp(target, setup.tokenizer, rows)
    else:
        if target.suffix == ".gguf":
            model = AutoModelForCausalLM.from_pretrained(target.parent, gguf_file=target.name, dtype=torch.float32)
        else:
            model = AutoModelForCausalLM.from_pretrained(target)
        after = report.run_side(model, setup.tokenizer, rows)
    result = {"export": label, "source": str(setup.model_dir), "reader": reader}
    result.update(report.compare(before, after, rows))
    result["size_bytes"] = {"before": report.weights_size(src), "after": report.weights_size(target)}
    result["seconds"] = {"export": seconds, "check": time.perf_counter() - start}
    out = target.parent if target.suffix == ".gguf" else target
    report.save_report(result, out)
