"""Flushing on the way out: at normal exit (atexit) and on SIGTERM, within a bounded time.

SIGTERM is how Kubernetes and Fargate stop a task. Python's default for it is to die at
once, without atexit, so anything still queued would be lost. The handler is installed only
when it is safe and useful:
- only from the main thread (Python allows no other), once there is telemetry to flush;
- not over `SIG_IGN` (the app chose to ignore SIGTERM) nor over a handler set from C;
- over the default: flush (bounded), then restore the default and re-raise SIGTERM, so the
  process still dies of the signal (exit status -15, or 143 in a shell);
- over an app handler: start a flush in the background and call the app's handler at once;
  if it exits through `sys.exit`, atexit finishes the flush.
An app that sets its own handler later simply replaces this one; its `sys.exit` still
reaches atexit. Limit: a Python-level handler runs only between bytecodes, so a main thread
stuck in a long C call delays SIGTERM until it returns (true of any Python handler).
"""

from __future__ import annotations

import atexit
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["ExitHooks"]

Flush = Callable[[float], None]  # takes a deadline on the time.monotonic() clock


class ExitHooks:
    def __init__(self, flush: Flush, timeout_s: float) -> None:
        self.flush = flush
        self.timeout_s = timeout_s
        self._atexit = False
        self._sigterm: str | None = None  # None: not tried yet; "installed"; "refused"
        self._previous: Any = None

    def arm(self, with_signal: bool) -> None:
        if not self._atexit:
            self._atexit = True
            atexit.register(self.at_exit)
        if with_signal and self._sigterm is None:
            self._install_sigterm()

    def _install_sigterm(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # try again on a later report from the main thread
        import signal

        try:
            previous = signal.getsignal(signal.SIGTERM)
            if previous is signal.SIG_IGN or previous is None:
                self._sigterm = "refused"
                return
            signal.signal(signal.SIGTERM, self._on_sigterm)
        except (ValueError, OSError):
            self._sigterm = "refused"
            return
        self._previous = previous
        self._sigterm = "installed"

    def disarm(self) -> None:
        if self._atexit:
            atexit.unregister(self.at_exit)
            self._atexit = False
        if self._sigterm == "installed" and threading.current_thread() is threading.main_thread():
            import signal

            if signal.getsignal(signal.SIGTERM) == self._on_sigterm:
                signal.signal(signal.SIGTERM, self._previous)
            self._sigterm = None

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        import signal

        previous = self._previous
        if callable(previous):
            self.run(wait=False)
            previous(signum, frame)
            return
        self.run(wait=True)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.raise_signal(signal.SIGTERM)

    def at_exit(self) -> None:
        self.run(wait=True)

    def run(self, wait: bool) -> None:
        """Flush on a helper thread and wait at most `timeout_s` for it: a slow exporter,
        or a lock held by the code the signal interrupted, cannot hold the exit hostage."""
        deadline = time.monotonic() + self.timeout_s
        try:
            worker = threading.Thread(
                target=self.flush, args=(deadline,), name="appshield-telemetry-flush", daemon=True
            )
            worker.start()
        except RuntimeError:
            # No new threads at interpreter shutdown (3.12+): flush inline; the exporters
            # stop at the deadline (see TelemetryReporter.flush).
            self.flush(deadline)
            return
        if wait:
            worker.join(self.timeout_s)
