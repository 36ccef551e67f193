"""The web UI's job table: every job is `lmforge <cmd> ...` run as a background process in its own session (process
group), owned by the web-ui server, never by a page. Its state lives in its run dir, so a reloaded page, a second
browser or a restarted server finds it again:

- `run.log`: the process's stdout and stderr;
- `webui_job.json`: command, argv, pid, start time, and the exit code once the server saw it end;
- `logging.jsonl`, `args.json`, `checkpoint-N/`: what the command itself writes (training runs).

Training jobs get their `vN-YYYYmmdd-HHMMSS` folder chosen here and passed as LMFORGE_RUN_DIR (the torchrun
launcher's mechanism), so the command is exactly the previewed one. Other jobs write under
`<output_dir>/webui-jobs/<cmd>-<time>/`. Torch- and gradio-free.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from lmforge.errors import UserError, writing
from lmforge.train.output import make_run_dir, read_jsonl

TRAINING = ("sft", "pt", "rlhf")
JOB_FILE = "webui_job.json"
LOG_FILE = "run.log"
# the lines a command ends with when it fails or is stopped (cli.main, train/job.py)
_LAST_WORDS = re.compile(r"^lmforge( [\w-]+)?: (error: |interrupted|stopped by )")


@dataclass
class Job:
    """One job; everything but `proc` is persisted in its run dir."""

    run_dir: str
    command: str
    argv: list[str]
    pid: int
    started: float
    output_key: str | None = None
    start_ticks: int | None = None
    returncode: int | None = None
    ended: float | None = None
    stop_signal: str | None = None
    proc: Any = field(default=None, repr=False, compare=False)

    @property
    def id(self) -> str:
        return Path(self.run_dir).name

    @property
    def dir(self) -> Path:
        return Path(self.run_dir)

    def save(self) -> None:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "proc"}
        tmp = self.dir / f".{JOB_FILE}.tmp"
        with writing("the job file", tmp):
            tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
            os.replace(tmp, self.dir / JOB_FILE)

    @classmethod
    def load(cls, run_dir: Path) -> Job | None:
        try:
            data = json.loads((run_dir / JOB_FILE).read_text(encoding="utf-8"))
            return cls(**{**data, "run_dir": str(run_dir)})
        except (OSError, ValueError, TypeError):
            return None

    def alive(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        if self.returncode is not None or self.pid <= 0:  # pid 0: a CLI run, not ours to signal
            return False
        return _pid_alive(self.pid, self.start_ticks)

    @property
    def status(self) -> str:
        """running, finished, failed, stopped, or ended (a job whose end this server did not see)."""
        if self.alive():
            return "stopping" if self.stop_signal else "running"
        rc = self.returncode
        if rc == 0:
            return "finished"
        if self.stop_signal or (rc is not None and rc in (128 + signal.SIGTERM, 130)):
            return "stopped"
        if rc is None:
            return "failed" if error_line(self.dir, None) else "ended"
        return "failed"


def _pid_alive(pid: int, start_ticks: int | None) -> bool:
    """Whether pid is still our job, not a recycled pid: alive, with the start time recorded when it began."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):  # gone, or someone else's process holds that pid now
        return False
    return start_ticks is None or start_ticks_of(pid) in (None, start_ticks)


def start_ticks_of(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux /proc/PID/stat field 22); None elsewhere."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def log_lines(run_dir: Path, limit: int = 200) -> list[str]:
    """The last lines of run.log, progress bars' carriage returns resolved to the last state of each line."""
    path = run_dir / LOG_FILE
    if not path.is_file():
        return []
    with path.open("rb") as f:
        f.seek(max(0, path.stat().st_size - 256 * 1024))
        text = f.read().decode("utf-8", errors="replace")
    lines = [ln.rsplit("\r", 1)[-1] for ln in text.replace("\r\n", "\n").split("\n")]
    return [ln for ln in lines if ln.strip()][-limit:]


def error_line(run_dir: Path, returncode: int | None) -> str | None:
    """The one line that says why a job ended badly: the CLI's own last words, else a traceback's last line."""
    lines = log_lines(run_dir, 400)
    for ln in reversed(lines):
        if _LAST_WORDS.match(ln):
            return ln
    if returncode not in (None, 0) and lines:
        tail = [ln for ln in lines if ln and not ln[0].isspace() and not ln.startswith("Traceback")]
        return tail[-1] if tail else lines[-1]
    return None


class JobTable:
    """Jobs started by this server, plus every run found under `output_dir` (reattached when still running)."""

    def __init__(self, output_dir: str | Path, launcher: list[str] | None = None):
        self.output_dir = Path(output_dir)
        self.launcher = launcher or [sys.executable, "-m", "lmforge"]
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def start(self, command: str, argv: list[str], output_key: str | None = None) -> Job:
        """Start `lmforge <command> <argv>`; refuses a second live job on the same output folder."""
        with self._lock:
            if output_key:
                for j in self.jobs():
                    if j.output_key == output_key and j.alive():
                        raise UserError(
                            f"job {j.id} is still writing into {output_key}",
                            hint="stop it first, or pick another --output_dir",
                        )
            run_dir = self._new_dir(command, argv)
            env = {**os.environ, "PYTHONUNBUFFERED": "1"}
            if command in TRAINING:
                env["LMFORGE_RUN_DIR"] = str(run_dir)
            log = (run_dir / LOG_FILE).open("ab")
            try:
                proc = subprocess.Popen(
                    [*self.launcher, command, *argv],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=env,
                    start_new_session=True,  # its own process group: Stop signals all of it, and it outlives us
                )
            finally:
                log.close()
            job = Job(str(run_dir), command, list(argv), proc.pid, time.time(), output_key, start_ticks_of(proc.pid))
            job.proc = proc
            job.save()
            self._jobs[str(run_dir)] = job
        threading.Thread(target=self._watch, args=(job,), daemon=True).start()
        return job

    def _new_dir(self, command: str, argv: list[str]) -> Path:
        if command in TRAINING:
            flags = _flag_values(argv)
            out = flags.get("output_dir", str(self.output_dir))
            add_version = flags.get("add_version", "true").lower() not in ("false", "0", "no", "n", "off")
            with writing("the run folder", out):
                return make_run_dir(out, add_version)
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        base = self.output_dir / "webui-jobs"
        run_dir, n = base / f"{command}-{stamp}", 1
        while run_dir.exists():
            n += 1
            run_dir = base / f"{command}-{stamp}-{n}"
        with writing("the job folder", base):
            run_dir.mkdir(parents=True)
        return run_dir

    def _watch(self, job: Job) -> None:
        code = job.proc.wait()
        with self._lock:
            job.returncode, job.ended = code, time.time()
            job.save()

    def stop(self, job_id: str) -> str:
        """SIGTERM to the job's process group (a training run saves a checkpoint and exits); a second Stop kills."""
        job = self.get(job_id)
        if job is None:
            raise UserError(f"no job {job_id}")
        if not job.alive():
            return f"job {job.id} is not running ({job.status})"
        sig = signal.SIGKILL if job.stop_signal else signal.SIGTERM
        try:
            os.killpg(job.pid, sig)
        except ProcessLookupError:
            return f"job {job.id} had already ended"
        job.stop_signal = signal.Signals(sig).name
        job.save()
        if sig == signal.SIGKILL:
            return f"sent SIGKILL to job {job.id} (process group {job.pid})"
        then = "it saves a checkpoint at the end of this step and exits" if job.command in TRAINING else "it exits"
        return f"sent SIGTERM to job {job.id} (process group {job.pid}): {then}; Stop again kills it"

    def get(self, job_id: str) -> Job | None:
        return next((j for j in self.jobs() if j.id == job_id or j.run_dir == job_id), None)

    def jobs(self) -> list[Job]:
        """Every job, newest first: this server's, and the runs under output_dir (started here before, or by the
        CLI: those have no webui_job.json and are listed as finished runs)."""
        found = dict(self._jobs)
        roots = [self.output_dir, self.output_dir / "webui-jobs"]
        for root in roots:
            if not root.is_dir():
                continue
            for d in root.iterdir():
                key = str(d)
                if key in found or not d.is_dir():
                    continue
                job = Job.load(d)
                if job is None and (d / "args.json").is_file():
                    job = _cli_run(d)
                if job is not None:
                    found[key] = job
        return sorted(found.values(), key=lambda j: j.started, reverse=True)


def _cli_run(run_dir: Path) -> Job:
    """A run the CLI made (no job file): listed with what its args.json says."""
    try:
        data = json.loads((run_dir / "args.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = {}
    stage = data.get("stage") or "sft"
    rc = 0 if any(run_dir.glob("checkpoint-*")) else None
    return Job(str(run_dir), stage, [], 0, (run_dir / "args.json").stat().st_mtime, None, returncode=rc)


def _flag_values(argv: list[str]) -> dict[str, str]:
    """The first value of each flag in an argv (enough for --output_dir and --add_version)."""
    out: dict[str, str] = {}
    for i, tok in enumerate(argv):
        if tok.startswith("--"):
            name, _, inline = tok[2:].partition("=")
            nxt = argv[i + 1] if i + 1 < len(argv) and not argv[i + 1].startswith("--") else "true"
            out[name.replace("-", "_")] = inline or nxt
    return out


# -- what a job shows ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    step: int
    total: int
    tokens_per_second: float | None
    eta_seconds: float | None
    final_loss: float | None

    def text(self) -> str:
        parts = [f"step {self.step}/{self.total}" if self.total else f"step {self.step}"]
        if self.tokens_per_second is not None:
            parts.append(f"{self.tokens_per_second:,.0f} tokens/s")
        if self.eta_seconds is not None:
            parts.append(f"ETA {int(self.eta_seconds) // 60}:{int(self.eta_seconds) % 60:02d}")
        if self.final_loss is not None:
            parts.append(f"loss {self.final_loss:.4f}")
        return ", ".join(parts)


def progress(run_dir: Path) -> Progress | None:
    """From logging.jsonl: the last step, throughput, and the time left at the pace so far."""
    rows = read_jsonl_tolerant(run_dir / "logging.jsonl")
    if not rows:
        return None
    last = rows[-1]
    step, total = int(last.get("global_step", 0)), int(last.get("max_steps", 0))
    speeds = [r["tokens_per_second"] for r in rows if isinstance(r.get("tokens_per_second"), (int, float))]
    elapsed = last.get("elapsed_seconds")
    eta = elapsed / step * (total - step) if elapsed and step and total >= step else None
    losses = [r["loss"] for r in rows if isinstance(r.get("loss"), (int, float))]
    final = losses[-1] if losses else last.get("train_loss")
    return Progress(step, total, speeds[-1] if speeds else None, eta, final)


def curves(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """(step, value) points of the training loss and the learning rate (eval loss too, when logged)."""
    out: dict[str, list[tuple[int, float]]] = {"loss": [], "learning_rate": [], "eval_loss": []}
    for r in read_jsonl_tolerant(run_dir / "logging.jsonl"):
        for key, points in out.items():
            if isinstance(r.get(key), (int, float)):
                points.append((int(r["global_step"]), float(r[key])))
    return out


def read_jsonl_tolerant(path: Path) -> list[dict]:
    """logging.jsonl while it is being written: a half-written last line is skipped, not an error."""
    try:
        return read_jsonl(path)
    except ValueError:
        rows = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue
        return rows


def checkpoints(run_dir: Path) -> list[Path]:
    """checkpoint-N folders, in step order (not checkpoint-N-merged, which export writes beside them)."""
    found = [p for p in run_dir.glob("checkpoint-*") if p.is_dir() and re.fullmatch(r"checkpoint-\d+", p.name)]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))
