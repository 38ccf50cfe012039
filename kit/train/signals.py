"""SIGTERM and SIGINT as a request to stop cleanly: finish the step, write a checkpoint, exit non-zero.

A cluster scheduler sends SIGTERM before it preempts or times out a job (``torchrun`` forwards it to every
rank). The handler only records the signal; the loop checks it after each step, all ranks agree on it,
rank 0 writes a checkpoint and :class:`RunInterrupted` ends the run with exit code ``128 + signal``. A
second Ctrl-C interrupts at once. DataLoader worker processes forked after :meth:`StopRequest.install`
inherit the handler, so a signal sent to the whole process group does not kill them mid-step.
"""
from __future__ import annotations

import signal
import threading

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class RunInterrupted(RuntimeError):
    """The run stopped on a signal after writing a checkpoint; ``exit_code`` is ``128 + signal``."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + int(signum)


class StopRequest:
    """Records SIGTERM / SIGINT while installed (the main thread only; elsewhere it stays inert)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.armed = False  # False until the loop runs: a signal then stops the process at once
        self._previous: dict[int, object] = {}

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""

    def install(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame) -> None:
        if not self.armed or (self.signum is not None and signum == signal.SIGINT):
            self.restore()  # before the first step, or a second Ctrl-C: stop now (nothing to save)
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            raise SystemExit(128 + signum)
        self.signum = signum

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
