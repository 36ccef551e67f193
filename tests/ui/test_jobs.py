"""The web UI's job table on real processes: a stand-in trainer (writes logging.jsonl as lmforge does, saves on
SIGTERM) so the table's own behaviour is checked in seconds; the browser test runs real `lmforge sft` jobs."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from lmforge.errors import UserError
from lmforge.ui import jobs as J

TRAINER = """
import json, os, pathlib, signal, sys, time
run = pathlib.Path(os.environ.get("LMFORGE_RUN_DIR", "."))
if "--fail" in sys.argv:
    print("lmforge sft: error: --dataset x.jsonl: no such file", file=sys.stderr)
    sys.exit(2)
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
for step in range(1, 1000):
    with open(run / "logging.jsonl", "a") as f:
        f.write(json.dumps({"global_step": step, "max_steps": 999, "loss": 2.0 / step, "learning_rate": 1e-4,
                            "tokens_per_second": 50.0, "elapsed_seconds": step * 0.05}) + "\\n")
    if stop:
        (run / f"checkpoint-{step}").mkdir()
        print(f"lmforge: stopped by SIGTERM after step {step}: saved {run}/checkpoint-{step}", file=sys.stderr)
        sys.exit(143)
    time.sleep(0.05)
"""


def wait(cond, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while not cond():
        assert time.time() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture
def table(tmp_path) -> J.JobTable:
    script = tmp_path / "trainer.py"
    script.write_text(TRAINER)
    return J.JobTable(tmp_path / "out", launcher=[sys.executable, str(script)])


def test_job_runs_in_its_run_dir_refuses_a_twin_stops_and_is_found_again(table, tmp_path):
    out = str(tmp_path / "out")
    job = table.start("sft", ["--output_dir", out], output_key=out)
    assert Path(job.run_dir).parent == tmp_path / "out" and Path(job.run_dir).name.startswith("v0-")
    wait(lambda: (J.progress(job.dir) or J.Progress(0, 0, None, None, None)).step >= 3)
    p = J.progress(job.dir)
    assert p.total == 999 and p.tokens_per_second == 50.0 and p.eta_seconds > 0
    assert "step" in p.text() and "tokens/s" in p.text() and "ETA" in p.text()
    assert len(J.curves(job.dir)["loss"]) >= 3 and J.curves(job.dir)["learning_rate"]
    with pytest.raises(UserError, match="still writing into"):
        table.start("sft", ["--output_dir", out], output_key=out)
    # another server (a restart) finds the running job from its run dir alone
    other = J.JobTable(tmp_path / "out")
    found = other.get(job.id)
    assert found is not None and found.status == "running" and found.proc is None
    said = other.stop(job.id)
    assert said.startswith(f"sent SIGTERM to job {job.id} (process group {job.pid})")
    wait(lambda: not job.alive())
    wait(lambda: job.returncode is not None)
    assert job.status == "stopped" and job.returncode == 143
    assert J.error_line(job.dir, job.returncode).startswith("lmforge: stopped by SIGTERM after step")
    saved = [c.name for c in J.checkpoints(job.dir)]
    (job.dir / f"{saved[-1]}-merged").mkdir()  # what "Merge and export" writes beside it is no checkpoint
    assert saved and [c.name for c in J.checkpoints(job.dir)] == saved
    assert J.JobTable(tmp_path / "out").get(job.id).status == "stopped"  # the exit code was saved
    assert (job.dir / J.LOG_FILE).is_file()


def test_failed_job_shows_its_one_line_error(table, tmp_path):
    job = table.start("export", ["--fail"])
    assert "webui-jobs" in job.run_dir
    wait(lambda: job.returncode is not None)
    assert job.status == "failed"
    assert J.error_line(job.dir, job.returncode) == "lmforge sft: error: --dataset x.jsonl: no such file"
    assert [j.id for j in table.jobs()] == [job.id]
