"""Stopping a run cleanly on SIGTERM (how Kubernetes and schedulers preempt) or Ctrl-C: the current step finishes,
a checkpoint is written atomically, and the command ends with one line saying what was saved and how to resume. A
second Ctrl-C stops at once (nothing more is saved; the last complete checkpoint stays resumable)."""

from __future__ import annotations

import signal
from typing import Any

from transformers import TrainerCallback


class StopRequest:
    """Set by the first SIGTERM/SIGINT; read at step boundaries by our callback and by PPO's loop."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self.saved_step: int | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        self.signal = signum

    def agreed(self, world_size: int) -> bool:
        """Whether to stop after this step; with several ranks, all stop at the same step (any rank's signal)."""
        if world_size <= 1:
            return self.signal is not None
        import torch
        import torch.distributed as dist

        flag = torch.tensor([1 if self.signal is not None else 0])
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    @property
    def name(self) -> str:
        return signal.Signals(self.signal).name if self.signal is not None else ""


class StopOnSignal(TrainerCallback):
    """Turns a StopRequest into the Trainer's own save-and-stop at the end of the current step."""

    def __init__(self, request: StopRequest):
        self.request = request

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
        if self.request.agreed(args.world_size):
            control.should_save = True
            control.should_training_stop = True
            self.request.saved_step = state.global_step
