"""lmforge against an earlier lmforge, in one run: the bench-peers LoRA SFT and batched-inference jobs
(bench/peers/run.py, same data, model and flags), alternating the two revisions round by round so machine drift
hits both. The peers' code does not change between revisions, so a ratio here carries over to the peer table.

Run: .venv/bin/python bench/ab_revisions.py --base f82adfc [--rounds 2]
Each revision runs from its own git worktree under bench/.peers/ab/ with this venv's Python (PYTHONPATH=its src).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "peers"))

import run as peers  # noqa: E402


def checkout(rev: str) -> Path:
    """A detached worktree of `rev` (the working tree itself for 'WORKTREE') and a bin/ that runs it."""
    src = peers.ROOT if rev == "WORKTREE" else peers.PEERS / "ab" / rev
    if rev != "WORKTREE" and not src.exists():
        subprocess.run(["git", "-C", str(peers.ROOT), "worktree", "add", "--detach", str(src), rev], check=True)
    bin_dir = peers.PEERS / "ab" / f"bin-{rev}"
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name, module in (("lmforge", "-m lmforge"), ("python", "")):
        script = bin_dir / name
        script.write_text(f'#!/bin/sh\nPYTHONPATH="{src / "src"}" exec "{sys.executable}" {module} "$@"\n')
        script.chmod(0o755)
    return bin_dir


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--base", required=True, help="the earlier revision (a commit, tag or branch)")
    p.add_argument("--new", default="WORKTREE", help="default: this working tree")
    p.add_argument("--rounds", type=int, default=2)
    a = p.parse_args()
    bins = {a.base: checkout(a.base), a.new: checkout(a.new)}
    peers.TTFT.clear()  # the TTFT probe imports the current tree's engine API, which an old revision lacks
    model, data = peers.prepare()
    row_tokens = peers.mean_row_tokens(model, data)
    results: dict[tuple[str, str], list[float]] = {}
    for n in range(a.rounds):
        order = [a.base, a.new] if n % 2 == 0 else [a.new, a.base]
        for rev in order:
            peers.BIN["lmforge"] = bins[rev]
            sft = peers.run_sft("lmforge", "sft-lora-default", model, data, row_tokens, n)
            inf = peers.run_infer("lmforge", model, data, n)
            for key, value in (("sft tokens/s", sft["tokens_per_s"]), ("sft wall s", sft["wall_s"])):
                results.setdefault((key, rev), []).append(value)
            results.setdefault(("infer tokens/s", rev), []).append(inf["tokens_per_s"] if inf else None)
            print(
                f"round {n + 1} {rev}: sft {sft['tokens_per_s']} tok/s, {sft['wall_s']} s; "
                f"infer {inf and inf['tokens_per_s']} tok/s",
                flush=True,
            )
    print(f"\n| figure | {a.base} | {a.new} | ratio |\n|---|---|---|---|")
    for key in ("sft tokens/s", "sft wall s", "infer tokens/s"):
        base = statistics.median([v for v in results[(key, a.base)] if v is not None] or [float("nan")])
        new = statistics.median([v for v in results[(key, a.new)] if v is not None] or [float("nan")])
        print(f"| {key} | {base:.1f} | {new:.1f} | {new / base:.2f}x |")


if __name__ == "__main__":
    main()
