"""Runs a backend's server as its child, and ends the server's whole process group when lmforge goes away.

lmforge starts this file as a script (`python sidecar_guard.py ARGV...`, no lmforge import: any Python runs it)
in a new session, so the guard leads a process group that the server and every worker it spawns join. lmforge
holds the only write end of the guard's stdin. When that pipe closes (lmforge closed the engine, exited, or was
killed, even with SIGKILL), the guard sends SIGTERM to the group, waits, then SIGKILL: no orphaned server or worker
keeps a port or GPU memory. When the server exits by itself, the guard reports its exit code in the log and
clears the group too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

GRACE_S = 10.0  # how long the server may take to exit after SIGTERM


def _end_group(child: subprocess.Popen) -> None:
    """SIGTERM to the group (the guard ignores it), a grace period, then SIGKILL to whatever is left."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        os.killpg(0, signal.SIGTERM)
        child.wait(timeout=GRACE_S)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        pass
    sys.stderr.flush()
    os.killpg(0, signal.SIGKILL)  # the guard goes too: it is the last thing to do


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: sidecar_guard.py COMMAND [ARG...]", file=sys.stderr)
        return 2
    child = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    gone = threading.Event()

    def watch_parent() -> None:
        sys.stdin.buffer.read()  # returns at EOF: lmforge closed the pipe or died
        gone.set()

    threading.Thread(target=watch_parent, daemon=True).start()
    while not gone.wait(0.5):
        rc = child.poll()
        if rc is not None:
            print(f"[lmforge sidecar] the server exited with code {rc}", file=sys.stderr, flush=True)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            os.killpg(0, signal.SIGTERM)  # its workers, if any outlived it
            return rc
    _end_group(child)
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stderr.flush()
    os._exit(code)  # not sys.exit: the stdin watcher thread still blocks in read()
