"""`NPROC_PER_NODE=2 lmforge sft ...` relaunches itself under torchrun (torch.distributed.run), as ms-swift does,
with NNODES, NODE_RANK, MASTER_ADDR and MASTER_PORT from the environment. The launcher picks the run folder once
and hands it to every rank (LMFORGE_RUN_DIR), so all ranks agree on where rank 0 writes."""

from __future__ import annotations

import os
import subprocess
import sys

DISTRIBUTED_COMMANDS = ("sft", "pt", "rlhf")


def wants_torchrun(command: str, deepspeed: bool = False) -> bool:
    """Several processes asked for, or DeepSpeed (which wants torchrun's environment even for one process)."""
    env = os.environ
    asked = int(env.get("NPROC_PER_NODE", "1")) > 1 or int(env.get("NNODES", "1")) > 1 or deepspeed
    return command in DISTRIBUTED_COMMANDS and asked and "LOCAL_RANK" not in env


def relaunch(command: str, argv: list[str], output_dir: str, add_version: bool) -> int:
    from lmforge.train.output import make_run_dir

    env = dict(os.environ)
    nnodes = int(env.get("NNODES", "1"))
    if nnodes > 1:
        # nodes cannot agree on a timestamped folder without talking first: write into --output_dir itself
        run_dir = make_run_dir(output_dir, add_version=False)
    else:
        run_dir = make_run_dir(output_dir, add_version)
    env["LMFORGE_RUN_DIR"] = str(run_dir)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={env.get('NPROC_PER_NODE', '1')}",
        f"--nnodes={nnodes}",
        f"--node_rank={env.get('NODE_RANK', '0')}",
        f"--master_addr={env.get('MASTER_ADDR', '127.0.0.1')}",
        f"--master_port={env.get('MASTER_PORT', '29500')}",
        "-m",
        "lmforge",
        command,
        *argv,
    ]
    print(f"[lmforge] run sh: {' '.join(cmd)}", flush=True)
    return _supervise(cmd, env)


def _supervise(cmd: list[str], env: dict[str, str]) -> int:
    """Run torchrun as a child that never outlives us. SIGTERM/SIGINT go to the ranks themselves, which finish the
    step, save and exit cleanly (sent to torchrun, its agent would kill them mid-step and print a traceback); in
    its own session a terminal's Ctrl-C reaches only us; the kernel sends it SIGTERM should we die without a word."""
    import ctypes
    import signal

    def die_with_parent() -> None:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    linux = sys.platform == "linux"
    child = subprocess.Popen(cmd, env=env, preexec_fn=die_with_parent if linux else None, start_new_session=True)
    got: list[int] = []

    def forward(signum: int, frame: object) -> None:
        got.append(signum)
        ranks = _children(child.pid)
        for pid in ranks or [child.pid]:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        code = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 128 + got[0] if got and code == 0 else code


def _children(pid: int) -> list[int]:
    """torchrun's worker processes (Linux /proc); [] where that cannot be read."""
    try:
        return [int(x) for x in open(f"/proc/{pid}/task/{pid}/children").read().split()]
    except (OSError, ValueError):
        return []
