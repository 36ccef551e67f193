"""The evaluation sets `--eval_dataset` names: a table filled by `register_eval_dataset`, and their row readers.

ms-swift's custom layouts are read here: `general_mcq` (`<subset>_val.csv` with id,question,A..J,answer, plus
`<subset>_dev.csv` for few-shot) and `general_qa` (`<subset>.jsonl` rows of query/response, question/answer or
messages). lmforge ships two small sets in those layouts (eval/data/) so a demo has numbers offline.

Torch-free: the names are checked at parse time (lmforge/names.py) without EvalScope or a model.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from lmforge.errors import DataError, UserError
from lmforge.eval import code, delegate  # noqa: F401  (code registers humaneval)
from lmforge.eval.table import EVAL_DATASETS, LETTERS, EvalTask, Sample, register_eval_dataset

DATA_DIR = Path(__file__).parent / "data"


def lookup_eval_dataset(name: str) -> EvalTask:
    """Case-insensitive, as ms-swift; an unknown name gets the close matches."""
    import difflib

    by_lower = {k.lower(): k for k in EVAL_DATASETS}
    if name.lower() in by_lower:
        return EVAL_DATASETS[by_lower[name.lower()]]
    theirs = delegate.benchmark_names()
    if name.lower() in theirs:
        return evalscope_task(theirs[name.lower()])
    close = difflib.get_close_matches(name.lower(), [*by_lower, *theirs], n=3, cutoff=0.5)
    names = {**theirs, **by_lower}
    if close:
        hint = f"did you mean {' or '.join(names[c] for c in close)}?"
    else:
        hint = "register one with --external_plugins"
        hint += "" if theirs else f"; EvalScope's benchmarks: {delegate.INSTALL}"
    raise UserError(f"--eval_dataset {name}: unknown; known: {', '.join(sorted(EVAL_DATASETS))}", hint=hint)


def evalscope_task(name: str) -> EvalTask:
    """An EvalScope registry benchmark as a set: EvalScope reads, prompts and grades it (eval/delegate.py)."""
    if not delegate.installed():
        raise UserError(f"--eval_dataset {name}: EvalScope runs it, and it is not installed", hint=delegate.INSTALL)
    real = delegate.benchmark_names().get(name.lower())
    if real is None:
        raise UserError(f"--eval_backend EvalScope: EvalScope has no benchmark '{name}'")
    return EvalTask(real, "evalscope", lambda opts: [], ("score",), runs=delegate.run_benchmark)


# -- general_mcq ----------------------------------------------------------------------------------------------


def _read_csv(path: Path) -> list[dict]:
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            return list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: cannot read ({e})")


def _mcq_row(path: Path, i: int, row: dict) -> tuple[str, tuple[str, ...], str]:
    """(question, choices, answer letter) of csv row i (0-based, after the header), or one line saying what is wrong."""
    if "question" not in row or "answer" not in row:
        missing = "question" if "question" not in row else "answer"
        raise DataError(f"{path}:1: no '{missing}' column", hint="general_mcq columns: id,question,A,B,...,answer")
    choices = tuple(row[c] for c in LETTERS if (row.get(c) or "").strip())
    answer = (row["answer"] or "").strip().upper()
    line = i + 2  # the header is line 1
    if not choices:
        raise DataError(f"{path}:{line}: no choices (columns A, B, ...)")
    if len(answer) != 1 or answer not in LETTERS[: len(choices)]:
        span = f"{LETTERS[0]}..{LETTERS[len(choices) - 1]}"
        raise DataError(f"{path}:{line}: answer: {row['answer']!r} names no choice (choices {span})")
    return row["question"], choices, answer


def mcq_prompt(question: str, choices: tuple[str, ...], answer: str | None = None) -> str:
    """A question and its lettered choices (Chinese wording for Chinese questions: EvalScope's default is Chinese
    for every question, which misleads English models)."""
    zh = any("\u4e00" <= ch <= "\u9fff" for ch in question)
    lines = [f"{'问题' if zh else 'Question'}: {question}", *(f"{LETTERS[i]}. {c}" for i, c in enumerate(choices))]
    lines.append(f"{'答案' if zh else 'Answer'}:" + (f" {answer}" if answer else ""))
    return "\n".join(lines)


def cloze_prompt(question: str, choices: tuple[str, ...], answer: str | None = None) -> str:
    """lm-eval's multiple-choice form (`"mode": "choice_text"`): the question alone, no lettered choices; each
    choice's text is scored as the answer, and a few-shot row shows its right choice's text."""
    zh = any("\u4e00" <= ch <= "\u9fff" for ch in question)
    text = f"{'问题' if zh else 'Question'}: {question}\n{'答案' if zh else 'Answer'}:"
    return text + (f" {choices[LETTERS.index(answer)]}" if answer else "")


def _subsets(root: Path, opts: dict, pattern: str, what: str) -> list[str]:
    if not root.is_dir():
        raise UserError(f"--eval_dataset_args local_path {root}: no such folder")
    found = sorted(p.name[: -len(pattern) + 1] for p in root.glob("*" + pattern[1:]))
    subsets = list(opts.get("subset_list") or found)
    if not subsets:
        raise UserError(f"{root}: no {what} files here", hint=f"{what}: <subset>{pattern[1:]}")
    return subsets


def load_general_mcq(opts: dict) -> list[Sample]:
    root = Path(opts["local_path"]).expanduser()
    shots = int(opts.get("few_shot_num", 0))
    form = cloze_prompt if opts.get("mode") == "choice_text" else mcq_prompt
    out: list[Sample] = []
    for subset in _subsets(root, opts, "*_val.csv", "general_mcq"):
        path = root / f"{subset}_val.csv"
        if not path.is_file():
            raise UserError(f"{path}: no such file", hint="subset_list names <subset>_val.csv files")
        dev_path = root / f"{subset}_dev.csv"
        dev = [_mcq_row(dev_path, i, r) for i, r in enumerate(_read_csv(dev_path))] if dev_path.is_file() else []
        head = "".join(form(*d) + "\n\n" for d in dev[:shots])
        for i, row in enumerate(_read_csv(path)):
            question, choices, answer = _mcq_row(path, i, row)
            msg = {"role": "user", "content": head + form(question, choices)}
            out.append(Sample(str(row.get("id") or i), subset, [msg], answer, choices))
    return out


# -- general_qa -----------------------------------------------------------------------------------------------


def _qa_messages(path: Path, i: int, row: Any) -> tuple[list[dict], str]:
    if not isinstance(row, dict):
        raise DataError(f"{path}:{i}: expected a JSON object")
    if isinstance(row.get("messages"), list) and row["messages"]:
        msgs = row["messages"]
        if msgs[-1].get("role") != "assistant":
            raise DataError(f"{path}:{i}: messages: the last turn must be the assistant's reference answer")
        return list(msgs[:-1]), str(msgs[-1].get("content", ""))
    for q, a in (("query", "response"), ("question", "answer")):
        if q in row:
            if a not in row:
                raise DataError(f"{path}:{i}: {a}: missing (the reference answer)")
            system = [{"role": "system", "content": row["system"]}] if row.get("system") else []
            return [*system, {"role": "user", "content": str(row[q])}], str(row[a])
    raise DataError(f"{path}:{i}: expected query/response, question/answer or messages")


def read_jsonl(path: Path) -> list[tuple[int, Any]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read ({e})")
    rows = []
    for i, line in enumerate(lines, 1):
        if line.strip():
            try:
                rows.append((i, json.loads(line)))
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{i}: invalid JSON ({e.msg})")
    return rows


def load_general_qa(opts: dict) -> list[Sample]:
    root = Path(opts["local_path"]).expanduser()
    out: list[Sample] = []
    for subset in _subsets(root, opts, "*.jsonl", "general_qa"):
        path = root / f"{subset}.jsonl"
        for i, row in read_jsonl(path):
            msgs, ref = _qa_messages(path, i, row)
            out.append(Sample(str(row.get("id", i)), subset, msgs, ref))
    return out


def load_identity(opts: dict) -> list[Sample]:
    """Who-are-you questions (English and Chinese, phrasings the self-cognition set does not have); right when the
    answer names one of `keywords` (by default the run's --model_name/--model_author from its args.json)."""
    keywords = "|".join(opts["keywords"])
    rows = read_jsonl(DATA_DIR / "identity.jsonl")
    return [Sample(str(r["id"]), r["lang"], [{"role": "user", "content": r["query"]}], keywords) for _, r in rows]


GEN = frozenset({"local_path", "subset_list"})
MCQ_METRICS = ("acc",)
QA_METRICS = ("Rouge-L-R", "Rouge-L-P", "Rouge-L-F", "Rouge-1-R", "Rouge-1-F", "Rouge-2-R", "Rouge-2-F")
QA_METRICS += ("bleu-1", "bleu-2", "bleu-3", "bleu-4")
MCQ_OPTIONS = GEN | {"few_shot_num", "mode"}

PATH = frozenset({"local_path"})
register_eval_dataset(EvalTask("general_mcq", "mcq", load_general_mcq, MCQ_METRICS, MCQ_OPTIONS, required=PATH))
register_eval_dataset(EvalTask("general_qa", "qa", load_general_qa, QA_METRICS, GEN, required=PATH))
register_eval_dataset(
    EvalTask(
        "lmforge_mcq",
        "mcq",
        load_general_mcq,
        MCQ_METRICS,
        MCQ_OPTIONS,
        defaults={"local_path": str(DATA_DIR / "mcq")},
    )
)
register_eval_dataset(EvalTask("lmforge_identity", "keywords", load_identity, ("acc",), frozenset({"keywords"})))
