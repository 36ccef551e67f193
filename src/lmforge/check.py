"""`lmforge check`: the pre-flight no peer has. Loads the tokenizer (not the weights), encodes every row and
reports what training would see: formats, drops and why, token lengths, one row with its trained spans marked."""

from __future__ import annotations

import json
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from lmforge.data.loader import location
from lmforge.data.pipeline import encode_rows, load_data
from lmforge.errors import DataError
from lmforge.models.setup import setup_tokenizer
from lmforge.multimodal.encode import media_report
from lmforge.templates.encode import Encoded

# tuner flags checked against the model's module names (on its config) when set
TUNER_FLAGS = frozenset({"target_modules", "target_regex", "modules_to_save", "llamapro_num_new_blocks", "reft_layers"})


def _report_parts(parts: list, label: str) -> int:
    dropped = 0
    for p in parts:
        total = "?" if p.total is None else p.total
        kept = len(p.rows) if hasattr(p.rows, "__len__") else "?"
        print(f"  {label} {p.name}: format {p.format}, rows {total}, kept {kept}, dropped {p.n_dropped}")
        for reason in p.reasons:
            print(f"    dropped: {reason}")
        dropped += p.n_dropped
    return dropped


def run(args: Any) -> int:
    setup = setup_tokenizer(args.model, args.template)
    print(f"model: {setup.model_dir}  (template {setup.template_name}, ends turns with {setup.template.end_of_turn!r})")
    if args.check.estimate or TUNER_FLAGS & args.explicit:
        from lmforge.tuners.targets import check_target_modules

        check_target_modules(setup.model_dir, args.tuner, args.model.trust_remote_code)  # on the config alone
    data = load_data(args.data, use_hf=args.model.use_hf)
    if args.task.task_type != "causal_lm":  # labels and pairs, not assistant turns (task_check.py)
        from lmforge.task_check import check_task

        _report_parts(data.parts, "train")
        return check_task(args, setup, data)
    if args.data.streaming:
        import datasets

        print("--streaming: rows are read lazily; check encodes the first 1000")
        data.train = datasets.Dataset.from_list(list(data.train.take(1000)))
    print("datasets:")
    dropped = _report_parts(data.parts, "train")
    dropped += _report_parts(data.val_parts, "val")
    problems = dropped
    for label, ds in (("train", data.train), ("val", data.val)):
        if ds is None:
            continue
        enc = encode_rows(
            ds,
            setup.template,
            "sft",
            num_proc=args.data.dataset_num_proc,
            keep_errors=True,
            load_from_cache_file=args.data.load_from_cache_file,
        )
        errors = Counter(e for e in enc["error"] if e)
        if errors and args.data.strict:
            raise DataError(next(iter(errors)), hint="--strict false drops bad rows instead")
        lengths = [n for n, e in zip(enc["length"], enc["error"]) if not e]
        truncated = sum(enc["truncated"])
        print(f"{label}: {len(enc)} rows encoded, {len(lengths)} usable, {truncated} truncated")
        for reason, n in errors.most_common(5):
            print(f"  unusable ({n}): {reason}")
        report = media_report(setup.template, enc)  # a vision-language model: images and their token cost
        if report:
            print(report)
        problems += sum(errors.values())
        if lengths:
            print(
                f"  tokens per row: min {min(lengths)}, median {int(statistics.median(lengths))}, max {max(lengths)}"
                f", total {sum(lengths)}"
            )
        if label == "train":
            _reasoning_report(ds, setup.template)
        if label == "train" and args.check.estimate and lengths:
            from lmforge.estimate import print_estimate

            usable = [r for r in zip(enc["length"], enc["labels"], enc["error"]) if not r[2]]
            print_estimate(args, setup.model_dir, [n for n, _, _ in usable], [_trained(lab) for _, lab, _ in usable])
        if label == "train":
            shown = 0
            for row in enc:
                if row["error"] or shown >= args.check.show_samples:
                    continue
                shown += 1
                print("sample (trained spans in [[ ]]):")
                print(setup.template.render_marked(Encoded(row["input_ids"], row["labels"])))
        if args.check.dump_encoded and label == "train":
            dump_encoded(Path(args.check.dump_encoded), ds, enc, data.parts)
    if problems:
        print(f"check: {problems} unusable row(s)")
        return 1
    print("check: all rows usable")
    return 0


def dump_encoded(path: Path, ds: Any, enc: Any, parts: list) -> None:
    """One JSON line per usable row in the data's own order (datasets in --dataset order, rows in file order, not
    the training shuffle), each with its `source` (`train.jsonl:17`), so a row can be traced back to the data."""
    origins = []
    for row_json in ds["row"]:  # encoding keeps rows aligned (keep_errors); the converted row knows its origin
        row = json.loads(row_json)
        origins.append((row.get("_src", ""), row.get("_idx", 0)))
    rank = {p.source: i for i, p in enumerate(parts)}
    order = sorted(range(len(origins)), key=lambda i: (rank.get(origins[i][0], len(rank)), origins[i][1]))
    ids, labels, errors = enc["input_ids"], enc["labels"], enc["error"]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for i in order:
            if not errors[i]:
                src, idx = origins[i]
                source = location(src, idx) if src else ""
                f.write(json.dumps({"source": source, "input_ids": ids[i], "labels": labels[i]}) + "\n")
    print(f"wrote {path}")


def _trained(labels: list[int]) -> int:
    return sum(1 for t in labels if t != -100)


def _reasoning_report(ds: Any, template: Any) -> None:
    """How many rows carry reasoning, and what the thinking policy does with it."""
    rows = [json.loads(r) for r in ds["row"] if r]
    n = sum(
        any(
            m.get("reasoning_content") or "<think>" in str(m.get("content"))
            for m in r["messages"]
            if m["role"] == "assistant"
        )
        for r in rows
    )
    if not n and not template.spec.thinking:
        return
    empty = "untrained" if template.empty_think_untrained else "trained (--loss_scale ignore_empty_think leaves it out)"
    print(
        f"  reasoning: {n} of {len(rows)} rows carry it; trained where the template renders it (its answers after the"
        f" last user turn); an empty <think></think> block: {empty}"
    )
