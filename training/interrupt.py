"""Stopping a run on request without losing it: the first Ctrl-C (SIGINT) or SIGTERM (a scheduler's preemption
notice) asks the trainer to stop at the end of the current step, which then saves a checkpoint and evaluates as at
the last step; a second Ctrl-C stops at once (``KeyboardInterrupt``), the checkpoints already written kept."""

from __future__ import annotations

import os
import signal
import sys
import threading
from types import FrameType


class StopRequest:
    """While entered, SIGINT and SIGTERM set ``requested`` instead of killing the process; a second signal raises
    ``KeyboardInterrupt``. Outside the main thread (where handlers cannot be installed) it does nothing."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, announce: bool = True):
        self.requested, self.announce, self._saved = False, announce, {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._saved[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)
        self._saved = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        if self.announce and os.environ.get("RANK", "0") == "0":
            print(
                f"\nselfplay train: {signal.Signals(signum).name}: stopping at the end of this step with a checkpoint "
                f"and an evaluation (Ctrl-C again stops at once, keeping the checkpoints already saved)",
                file=sys.stderr,
                flush=True,
            )
