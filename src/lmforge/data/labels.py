"""Labels of sequence-classification rows: which problem the labels describe, the class names (id2label), and each
row's `label` turned into the training target, with one-line errors naming file:row:label.

ms-swift's forms: an int class (`"label": 1`), a list of classes for multi-label (`[0, 2]` or `[]`), a float for
regression (`0.8`) or a list of floats for several regression targets. lmforge also takes class names (`"pos"`),
mapped through `--labels pos neg` or, without it, through the sorted names found in the data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lmforge.data.loader import location
from lmforge.errors import DataError, UserError

REGRESSION, SINGLE, MULTI = "regression", "single_label_classification", "multi_label_classification"


def where(row: dict) -> str:
    """file:line of a converted row (its `_src`/`_idx`), for messages."""
    return location(row["_src"], row["_idx"]) if "_src" in row else "row"


@dataclass(frozen=True)
class LabelSpec:
    problem_type: str
    num_labels: int
    names: tuple[str, ...] = ()  # id2label in id order; empty: the classes have no names

    @property
    def id2label(self) -> dict[int, str]:
        return (
            {i: n for i, n in enumerate(self.names)}
            if self.names
            else {i: f"LABEL_{i}" for i in range(self.num_labels)}
        )

    def class_id(self, value: Any, at: str) -> int:
        """An int class or a class name -> its id, checked against the number of classes."""
        if isinstance(value, str):
            if value not in self.names:
                if not self.names:
                    raise DataError(
                        f"{at}: label: '{value}' is a string but the classes have no names",
                        hint=f"pass --labels NAME ... ({self.num_labels} names, in id order) or use integer labels",
                    )
                raise DataError(f"{at}: label: '{value}' is not one of --labels {' '.join(self.names)}")
            return self.names.index(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise DataError(f"{at}: label: {value!r} is not a class (an int or a class name)")
        if not 0 <= value < self.num_labels:
            raise DataError(
                f"{at}: label: {value} is out of range for --num_labels {self.num_labels}",
                hint=f"classes are 0..{self.num_labels - 1}",
            )
        return value

    def target(self, value: Any, at: str) -> Any:
        """The row's label as the model's `labels` entry: a class id, a multi-hot row, or float(s)."""
        if value is None:
            raise DataError(f"{at}: label: missing", hint="every seq_cls row needs a `label`")
        if self.problem_type == SINGLE:
            return self.class_id(value, at)
        if self.problem_type == MULTI:
            if not isinstance(value, list):
                value = [value]
            hot = [0.0] * self.num_labels
            for v in value:
                hot[self.class_id(v, at)] = 1.0
            return hot
        values = value if isinstance(value, list) else [value]
        if len(values) != self.num_labels or not all(_number(v) for v in values):
            raise DataError(f"{at}: label: {value!r} is not {self.num_labels} number(s) for regression")
        return [float(v) for v in values] if self.num_labels > 1 else float(values[0])

    def head_config(self) -> dict[str, Any]:
        """The classifier head's config fields (from_pretrained kwargs; config.json of a merged model)."""
        names = self.id2label
        return {
            "num_labels": self.num_labels,
            "problem_type": self.problem_type,
            "id2label": names,
            "label2id": {n: i for i, n in names.items()},
        }

    def to_dict(self) -> dict[str, Any]:
        return {"problem_type": self.problem_type, "num_labels": self.num_labels, "labels": list(self.names)}


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def label_spec(task: Any, labels: list[Any]) -> LabelSpec:
    """From --num_labels/--problem_type/--labels and the data's labels (to fill in what the flags leave open)."""
    names = tuple(task.labels)
    strings = sorted({v for v in _flat(labels) if isinstance(v, str)})
    if strings and not names:
        if task.num_labels is not None:
            raise UserError(
                f"label '{strings[0]}' is a string but --num_labels {task.num_labels} expects integer labels",
                hint=f"name the classes in id order: --labels {' '.join(strings)}",
            )
        names = tuple(strings)
    num = task.num_labels or len(names) or None
    problem = task.problem_type
    if problem is None:
        first = next((v for v in labels if v is not None), None)
        if num == 1 or (isinstance(first, float) and not names):
            problem = REGRESSION
        elif isinstance(first, list) and not (first and all(isinstance(v, float) for v in first)):
            problem = MULTI
        else:
            problem = SINGLE
    if num is None:
        ints = [v for v in _flat(labels) if isinstance(v, int) and not isinstance(v, bool)]
        if problem == REGRESSION:
            first = next((v for v in labels if v is not None), 0.0)
            num = len(first) if isinstance(first, list) else 1
        elif not ints:
            raise UserError("seq_cls needs --num_labels", hint="or label names: --labels pos neg")
        else:
            num = max(ints) + 1
    if names and len(names) != num:
        raise UserError(f"--labels names {len(names)} classes but --num_labels is {num}")
    if problem != REGRESSION and num < 2:
        raise UserError(f"--num_labels {num} with {problem}", hint="one output is --problem_type regression")
    return LabelSpec(problem, num, names)


def _flat(labels: list[Any]) -> list[Any]:
    out: list[Any] = []
    for v in labels:
        out.extend(v if isinstance(v, list) else [v])
    return out


def spec_from_saved(raw: dict[str, Any]) -> LabelSpec:
    """The LabelSpec a seq_cls run recorded in args.json."""
    saved = raw.get("label_spec") or {}
    return LabelSpec(saved.get("problem_type", SINGLE), int(saved.get("num_labels", 2)), tuple(saved.get("labels", [])))


def saved_head(raw: dict[str, Any]) -> dict[str, Any]:
    """from_pretrained kwargs for the head a run recorded (none for tasks without one)."""
    return spec_from_saved(raw).head_config() if raw.get("task_type") == "seq_cls" else {}
