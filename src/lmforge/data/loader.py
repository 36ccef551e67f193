"""Load `--dataset` specs into converted rows with the `datasets` library (its cache and `num_proc`).

Each converted dataset has one column `row` holding the standard row as JSON text: rows of one dataset may carry
different keys (tool_calls, reasoning_content, images), which Arrow would otherwise merge into nullable structs.
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmforge.data import builtin  # noqa: F401  (registers the built-in datasets)
from lmforge.data.converters import CONVERSATION_KEYS, CONVERTERS, RowError, detect_format
from lmforge.data.registry import DatasetMeta, DatasetSpec, SubsetMeta, load_dataset_info, lookup
from lmforge.errors import DataError, UserError
from lmforge.multimodal.media import normalize_row

EXT_BUILDERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet", ".txt": "text"}
LF_KEYS = {"prompt": "instruction", "query": "input", "response": "output", "kto_tag": "label"}
MAX_REASONS = 5


@dataclass
class Loaded:
    """One dataset (or subset) after conversion."""

    name: str
    format: str
    rows: Any  # datasets.Dataset / IterableDataset with a `row` column
    total: int | None
    n_dropped: int = 0
    reasons: list[str] = field(default_factory=list)
    source: str = ""  # the file (or hub id) its rows came from, as each row's `_src` names it


def _quiet_datasets() -> None:
    import datasets

    # datasets logs (and may print tracebacks for) load failures we turn into one-line errors ourselves
    datasets.utils.logging.set_verbosity(logging.CRITICAL)
    datasets.disable_progress_bars()


def _first_bad_json_line(path: Path) -> str | None:
    with path.open(encoding="utf-8") as f:
        if path.suffix == ".json" and f.read(1) == "[":
            try:
                json.loads(path.read_text(encoding="utf-8"))
                return None
            except json.JSONDecodeError as e:
                return f"{path}:{e.lineno}: invalid JSON ({e.msg})"
        f.seek(0)
        for lineno, line in enumerate(f, 1):
            if line.strip():
                try:
                    json.loads(line)
                except json.JSONDecodeError as e:
                    return f"{path}:{lineno}: invalid JSON ({e.msg} at column {e.colno})"
    return None


def _load_json_raw(path: Path, streaming: bool) -> Any:
    """JSON lines or a JSON list. When Arrow cannot type the rows (mixed types), keep each row as JSON text."""
    import datasets

    try:
        return datasets.load_dataset("json", data_files=str(path), split="train", streaming=streaming)
    except Exception:
        bad = _first_bad_json_line(path)
        if bad:
            raise DataError(bad, hint="each line must be one JSON object")
        text = path.read_text(encoding="utf-8").strip()
        rows = json.loads(text) if text.startswith("[") else [json.loads(ln) for ln in text.splitlines() if ln.strip()]
        return datasets.Dataset.from_dict({"__json__": [json.dumps(r, ensure_ascii=False) for r in rows]})


def load_local(path: Path, streaming: bool = False) -> Any:
    import datasets

    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in EXT_BUILDERS and not p.name.startswith("."))
        files = [p for p in files if p.name != "dataset_info.json"]
        if not files:
            raise DataError(f"{path}: no .jsonl/.json/.csv/.parquet/.txt files in this folder")
        builder = EXT_BUILDERS[files[0].suffix]
        files = [str(p) for p in files if EXT_BUILDERS[p.suffix] == builder]
        return datasets.load_dataset(builder, data_files=files, split="train", streaming=streaming)
    builder = EXT_BUILDERS.get(path.suffix)
    if builder is None:
        raise DataError(
            f"{path}: unsupported file type '{path.suffix}'", hint="use .jsonl, .json, .csv, .parquet or .txt"
        )
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file")
    if builder == "json":
        return _load_json_raw(path, streaming)
    kwargs = {"keep_default_na": False} if builder == "csv" else {}
    try:
        return datasets.load_dataset(builder, data_files=str(path), split="train", streaming=streaming, **kwargs)
    except Exception as e:
        raise DataError(f"{path}: cannot read ({str(e).splitlines()[0][:160]})")


def load_hub(dataset_id: str, subset: str | None, split: str, hub: str, streaming: bool) -> Any:
    try:
        if hub == "ms":
            import importlib.util

            if importlib.util.find_spec("modelscope") is None:
                raise UserError(
                    f"dataset '{dataset_id}' is on ModelScope but the modelscope package is not installed",
                    hint="pip install modelscope, use hf::<id>, or pass a local file",
                )
            from modelscope import MsDataset

            return MsDataset.load(dataset_id, subset_name=subset, split=split).to_hf_dataset()
        import datasets

        return datasets.load_dataset(dataset_id, subset, split=split, streaming=streaming)
    except UserError:
        raise
    except Exception as e:
        reason = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        where = "ModelScope" if hub == "ms" else "Hugging Face"
        raise DataError(
            f"could not load dataset '{dataset_id}' from {where} ({reason})",
            hint="offline? download it and pass the local file or folder",
        )


def _rename_map(columns: list[str], mapping: dict[str, str]) -> dict[str, str]:
    """Case-insensitive rename; when two source columns map to one target, neither is renamed (as ms-swift)."""
    lower = {c.lower(): c for c in columns}
    out: dict[str, str] = {}
    for src, dst in mapping.items():
        if src.lower() in lower:
            out[lower[src.lower()]] = dst
    targets = [v for v in out.values()]
    return {k: v for k, v in out.items() if targets.count(v) == 1}


def _message_options(row: dict, opts: dict[str, str]) -> dict:
    """ms-swift `messages` / LLaMA-Factory `tags` options: custom role/content keys and role names."""
    role_key = opts.get("role_key") or opts.get("role_tag") or "role"
    content_key = opts.get("content_key") or opts.get("content_tag") or "content"
    names = {
        opts.get(k): v
        for k, v in (
            ("user_role", "user"),
            ("user_tag", "user"),
            ("assistant_role", "assistant"),
            ("assistant_tag", "assistant"),
            ("system_role", "system"),
            ("system_tag", "system"),
            ("observation_tag", "tool"),
            ("function_tag", "tool_call"),
        )
        if opts.get(k)
    }
    key = next((k for k in ("messages", "conversations", "conversation") if k in row), None)
    if key and isinstance(row[key], list):
        row[key] = [
            {"role": names.get(t.get(role_key), t.get(role_key)), "content": t.get(content_key)}
            if isinstance(t, dict) and role_key in t
            else t
            for t in row[key]
        ]
    return row


@dataclass
class _Convert:
    """The map function (a picklable object, so `datasets` can fingerprint it and fan it out to processes)."""

    fmt: str
    rename: dict[str, str]
    preprocess: Any
    opts: dict[str, str]
    data_args: Any
    source: str

    def __call__(self, raw: dict, idx: int) -> dict:
        try:
            row = json.loads(raw["__json__"]) if "__json__" in raw else dict(raw)
            if not isinstance(row, dict):
                raise RowError("row", f"expected a JSON object, got {type(row).__name__}")
            row = {self.rename.get(k, k): v for k, v in row.items()}
            if self.preprocess:
                row = self.preprocess(row, self.data_args)
                if row is None:
                    return {"row": "", "error": "dropped by the dataset's preprocess function", "idx": idx}
            if self.opts:
                row = _message_options(row, self.opts)
            fmt = _row_format(self.fmt, row)
            if fmt == "unknown":
                raise RowError(
                    "row",
                    f"no recognisable format (columns: {', '.join(sorted(row))})",
                    "alpaca needs instruction/output, query-response query/response, messages a list",
                )
            out = normalize_row(CONVERTERS[fmt](row), self.source)  # media checked, paths resolved
            out["_src"], out["_idx"] = self.source, idx  # where the row came from, for later error messages
            return {"row": json.dumps(out, ensure_ascii=False, default=str), "error": "", "idx": idx}
        except RowError as e:
            return {"row": "", "error": str(e), "idx": idx}


def _row_format(fmt: str, row: dict) -> str:
    """The dataset's format, unless this row lacks its key fields (Arrow gives a file's union of columns, so a row
    of another shape shows up with those keys null): then detect from the row's non-null keys."""
    anchors = {
        "messages": CONVERSATION_KEYS,
        "sharegpt": CONVERSATION_KEYS,
        "alpaca": ("instruction",),
        "preference": ("chosen",),
        "text": ("text",),
    }
    if fmt != "unknown" and any(row.get(k) is not None for k in anchors.get(fmt, ())) or fmt == "query-response":
        return fmt
    present = {k: v for k, v in row.items() if v is not None}
    return detect_format(list(present), present)


@functools.lru_cache(maxsize=16)
def _jsonl_lines(source: str) -> tuple[int, ...]:
    with open(source, encoding="utf-8") as f:
        return tuple(n for n, line in enumerate(f, 1) if line.strip())


def location(source: str, idx: int) -> str:
    """file:line for JSON lines (the line a user opens in an editor), file:row N otherwise."""
    path = Path(source)
    if path.is_file() and path.suffix == ".jsonl":
        lines = _jsonl_lines(source)
        if idx < len(lines):
            return f"{source}:{lines[idx]}"
    if path.is_file() and path.suffix == ".csv":
        return f"{source}:{idx + 2}"
    return f"{source}: row {idx + 1}"


def convert(
    raw: Any, name: str, source: str, meta: DatasetMeta | None, subset: SubsetMeta | None, args: Any, streaming: bool
) -> Loaded:
    """Rename, detect, convert; drop bad rows (or stop at the first with --strict true)."""
    columns = list(raw.column_names or [])
    mapping = {
        **(meta.columns if meta else {}),
        **(subset.columns if subset else {}),
        **(json.loads(args.columns) if args.columns else {}),
    }
    if meta and meta.formatting:  # LLaMA-Factory's column names for alpaca fields
        keys = LF_KEYS if meta.formatting == "alpaca" else {"kto_tag": "label"}  # sharegpt has kto_tag too
        mapping = {k: keys.get(v, v) for k, v in mapping.items()}
    rename = _rename_map(columns, mapping) if "__json__" not in columns else mapping
    renamed = [rename.get(c, c) for c in columns]
    first = None
    if "__json__" in columns or (meta and meta.preprocess) or (subset and subset.preprocess):
        fmt = "unknown"  # decided per row
    else:
        first = next(iter(raw.take(1) if streaming else raw.select(range(min(1, len(raw))))), None)
        first = {rename.get(k, k): v for k, v in (first or {}).items()}
        fmt = detect_format(renamed, first)
    pre = (subset.preprocess if subset and subset.preprocess else None) or (meta.preprocess if meta else None)
    fn = _Convert(fmt, rename, pre, meta.messages_options if meta else {}, args, source)
    kwargs: dict[str, Any] = {"with_indices": True, "remove_columns": columns}
    if not streaming:
        kwargs.update(
            num_proc=args.dataset_num_proc if args.dataset_num_proc > 1 else None,
            load_from_cache_file=args.load_from_cache_file,
        )
    out = raw.map(fn, **kwargs)
    if streaming:
        return Loaded(name, fmt, out.filter(lambda r: not r["error"]), None, source=source)
    errors = out.filter(lambda e: bool(e), input_columns="error")
    reasons = [
        f"{location(source, r['idx'])}: {r['error']}" for r in errors.select(range(min(MAX_REASONS, len(errors))))
    ]
    if reasons and args.strict:
        raise DataError(reasons[0], hint="--strict false drops bad rows instead")
    good = out.filter(lambda e: not e, input_columns="error") if len(errors) else out
    if fmt == "unknown" and len(good):
        fmt = _format_of_first(raw, rename)
    return Loaded(name, fmt, good.select_columns(["row"]), len(out), len(errors), reasons, source)


def _format_of_first(raw: Any, rename: dict[str, str]) -> str:
    r = raw[0]
    row = json.loads(r["__json__"]) if "__json__" in r else r
    row = {rename.get(k, k): v for k, v in row.items()} if isinstance(row, dict) else {}
    return detect_format(list(row), row)


def sample_rows(ds: Any, n: int, seed: int, shuffle: bool) -> Any:
    """ms-swift's #N: fewer rows sample without replacement; more rows tile the set and sample the rest."""
    import datasets

    total = len(ds)
    if not shuffle:
        reps = [ds] * (n // total) + [ds.select(range(n % total))]
        return datasets.concatenate_datasets([r for r in reps if len(r)]) if n > total else ds.select(range(n))
    if n <= total:
        return ds.shuffle(seed=seed).select(range(n))
    rest = ds.shuffle(seed=seed).select(range(n % total))
    return datasets.concatenate_datasets([ds] * (n // total) + ([rest] if len(rest) else []))


def _raw_for(
    spec: DatasetSpec, args: Any, use_hf: bool
) -> list[tuple[str, str, Any, DatasetMeta | None, SubsetMeta | None]]:
    """(display name, source for error locations, raw dataset, meta, subset) for one spec."""
    streaming = args.streaming
    meta = lookup(spec)
    path = Path(spec.source).expanduser()
    if meta is None and path.exists():
        return [(spec.source, str(path), load_local(path, streaming), None, None)]
    if meta is None:
        if "/" in spec.source and not spec.source.startswith((".", "/")):
            meta = DatasetMeta(name=spec.source, ms_dataset_id=spec.source, hf_dataset_id=spec.source)
        else:
            raise DataError(
                f"dataset '{spec.text}': no such file, folder or registered dataset",
                hint="check the path; registered names include self-cognition",
            )
    out = []
    for sub in meta.pick_subsets(spec.subsets):
        label = meta.name if sub.name == "default" else f"{meta.name}:{sub.name}"
        if meta.dataset_path and spec.hub is None:
            out.append((label, meta.dataset_path, load_local(Path(meta.dataset_path), streaming), meta, sub))
            continue
        hub = spec.hub or ("hf" if use_hf else "ms")
        dataset_id = meta.hf_dataset_id if hub == "hf" else meta.ms_dataset_id
        dataset_id = dataset_id or meta.ms_dataset_id or meta.hf_dataset_id
        for split in sub.split:
            out.append((label, dataset_id, load_hub(dataset_id, sub.subset, split, hub, streaming), meta, sub))
    return out


def load_specs(specs: list[str], args: Any, use_hf: bool = False) -> list[Loaded]:
    """Load and convert every spec; apply #N per spec."""
    _quiet_datasets()
    for info in args.custom_dataset_info:
        load_dataset_info(info)
    loaded: list[Loaded] = []
    for text in specs:
        spec = DatasetSpec.parse(text)
        for label, source, raw, meta, sub in _raw_for(spec, args, use_hf):
            part = convert(raw, label, source, meta, sub, args, args.streaming)
            if spec.sample:
                if args.streaming:
                    part.rows = part.rows.take(spec.sample)
                else:
                    part.rows = sample_rows(part.rows, spec.sample, args.data_seed, args.dataset_shuffle)
            loaded.append(part)
    return loaded
