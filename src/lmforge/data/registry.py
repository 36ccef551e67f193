"""Dataset specs (`[hf::|ms::]<id|dir|file>[:subset1/subset2|:all][#N]`) and the dataset registry.

The registry is a dict of `DatasetMeta`, filled by `register_dataset`, by `dataset_info.json` files (ms-swift's or
LLaMA-Factory's schema) and by plug-in files.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmforge.errors import DataError, UserError

BUILTIN_DIR = Path(__file__).parent / "builtin"
Preprocess = Callable[[dict, Any], "dict | None"]  # (raw row, DataArgs) -> row, or None to drop it


@dataclass
class DatasetSpec:
    source: str  # id, path or registered name
    hub: str | None = None  # "hf", "ms" or None
    subsets: list[str] = field(default_factory=list)
    sample: int | None = None
    text: str = ""

    @classmethod
    def parse(cls, text: str) -> DatasetSpec:
        rest, hub = text, None
        if "::" in rest:
            hub, rest = rest.split("::", 1)
            if hub not in ("hf", "ms"):
                raise UserError(f"dataset {text!r}: unknown hub prefix '{hub}::'", hint="use hf:: or ms::")
        sample = None
        if "#" in rest:
            rest, n = rest.rsplit("#", 1)
            if not n.isdigit() or int(n) == 0:
                raise UserError(
                    f"dataset {text!r}: '#{n}' is not a positive number of rows", hint="e.g. data.jsonl#500"
                )
            sample = int(n)
        subsets: list[str] = []
        # a ':' separates subsets, except in a path that exists (or a Windows drive letter)
        if ":" in rest and not Path(rest).exists():
            rest, sub = rest.split(":", 1)
            subsets = [s for s in sub.split("/") if s]
        return cls(source=rest, hub=hub, subsets=subsets, sample=sample, text=text)


@dataclass
class SubsetMeta:
    name: str
    subset: str | None = None  # the hub config name
    split: list[str] = field(default_factory=lambda: ["train"])
    columns: dict[str, str] = field(default_factory=dict)
    preprocess: Preprocess | None = None
    weak: bool = False  # not included in ':all'


@dataclass
class DatasetMeta:
    name: str
    ms_dataset_id: str | None = None
    hf_dataset_id: str | None = None
    dataset_path: str | None = None
    subsets: list[SubsetMeta] = field(default_factory=lambda: [SubsetMeta("default")])
    columns: dict[str, str] = field(default_factory=dict)
    preprocess: Preprocess | None = None
    formatting: str | None = None  # LLaMA-Factory's 'alpaca' / 'sharegpt'
    messages_options: dict[str, str] = field(default_factory=dict)  # role_key, content_key, user_tag, ...

    def pick_subsets(self, wanted: list[str]) -> list[SubsetMeta]:
        by_name = {s.name: s for s in self.subsets}
        if wanted == ["all"]:
            return [s for s in self.subsets if not s.weak]
        if not wanted:
            if len(self.subsets) == 1:
                return self.subsets
            if "default" in by_name:
                return [by_name["default"]]
            raise UserError(f"dataset '{self.name}' has subsets {', '.join(by_name)}; pick one with :name or :all")
        missing = [w for w in wanted if w not in by_name]
        if missing and self.subsets != [SubsetMeta("default")]:
            raise UserError(f"dataset '{self.name}': unknown subset {missing[0]!r}; known: {', '.join(by_name)}")
        return [by_name.get(w) or SubsetMeta(w, subset=w) for w in wanted]


DATASETS: dict[str, DatasetMeta] = {}


def register_dataset(meta: DatasetMeta, *aliases: str, exist_ok: bool = False) -> DatasetMeta:
    for key in (meta.name, *aliases, meta.ms_dataset_id, meta.hf_dataset_id):
        if not key:
            continue
        if key in DATASETS and not exist_ok and DATASETS[key] is not meta:
            raise UserError(f"dataset '{key}' is registered twice")
        DATASETS[key] = meta
    return meta


def lookup(spec: DatasetSpec) -> DatasetMeta | None:
    return DATASETS.get(spec.source)


def _ms_subsets(info: dict) -> list[SubsetMeta]:
    subs = []
    for s in info.get("subsets") or []:
        if isinstance(s, str):
            subs.append(SubsetMeta(s, subset=s))
        else:
            subs.append(
                SubsetMeta(
                    s.get("name") or s["subset"],
                    subset=s.get("subset", s.get("name")),
                    split=s.get("split") or ["train"],
                    columns=s.get("columns") or {},
                )
            )
    return subs or [SubsetMeta("default")]


def load_dataset_info(source: str) -> list[DatasetMeta]:
    """Register the entries of a dataset_info.json (a path or inline JSON). Both schemas are accepted:
    ms-swift's (a list of {ms_dataset_id|hf_dataset_id|dataset_path, ...}) and LLaMA-Factory's
    ({name: {file_name|hf_hub_url|ms_hub_url, formatting, columns, tags}})."""
    path = Path(source)
    base = path.parent if path.is_file() else Path.cwd()
    try:
        data = json.loads(path.read_text(encoding="utf-8") if path.is_file() else source)
    except json.JSONDecodeError as e:
        raise DataError(f"{source}:{e.lineno}: invalid JSON ({e.msg})")
    except OSError:
        raise DataError(f"{source}: dataset_info file not found")
    metas = []
    if isinstance(data, list):  # ms-swift
        for k, info in enumerate(data):
            if not any(info.get(key) for key in ("ms_dataset_id", "hf_dataset_id", "dataset_path")):
                raise DataError(f"{source}: entry {k}: needs ms_dataset_id, hf_dataset_id or dataset_path")
            dpath = info.get("dataset_path")
            if isinstance(dpath, list):
                dpath = dpath[0]
            name = info.get("dataset_name") or info.get("ms_dataset_id") or info.get("hf_dataset_id") or dpath
            meta = DatasetMeta(
                name=name,
                ms_dataset_id=info.get("ms_dataset_id"),
                hf_dataset_id=info.get("hf_dataset_id"),
                dataset_path=str((base / dpath).resolve()) if dpath else None,
                subsets=_ms_subsets(info),
                columns=info.get("columns") or {},
                messages_options=info.get("messages") or {},
            )
            for s in meta.subsets:
                if info.get("split") and s.split == ["train"]:
                    s.split = info["split"]
            metas.append(register_dataset(meta, *([dpath] if dpath else []), exist_ok=True))
    elif isinstance(data, dict):  # LLaMA-Factory
        for name, info in data.items():
            fname = info.get("file_name")
            cols = {v: k for k, v in (info.get("columns") or {}).items()}  # LF maps ours -> theirs
            meta = DatasetMeta(
                name=name,
                hf_dataset_id=info.get("hf_hub_url"),
                ms_dataset_id=info.get("ms_hub_url"),
                dataset_path=str((base / fname).resolve()) if fname else None,
                columns=cols,
                formatting=info.get("formatting", "alpaca"),
                messages_options=info.get("tags") or {},
            )
            if info.get("subset"):
                meta.subsets = [SubsetMeta(info["subset"], subset=info["subset"], split=[info.get("split", "train")])]
            metas.append(register_dataset(meta, exist_ok=True))
    else:
        raise DataError(f"{source}: expected a list (ms-swift) or an object (LLaMA-Factory) of datasets")
    return metas
