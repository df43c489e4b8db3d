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

Bounded even where no thread can be started: Python 3.12 refuses new threads in atexit
handlers (and 3.12.0-3.12.2 as soon as the main thread has returned), and an exporter's
`force_flush` exports on the calling thread, retrying a dead collector for its whole timeout
(~7 s of backoff for OTLP). So once there is OpenTelemetry output, the flush thread is
started ahead of time, at the first report, and waits idle; at exit the exiting thread hands
it the flush and waits no longer than the deadline. Every wait on the way out (the loader's,
then the flush) shares one deadline, set by the first exit hook that runs, so the whole exit
costs at most `timeout_s`.
"""

from __future__ import annotations

import atexit
import threading
import time
from collections.abc import Callable
from typing import Any

from appshield._threadstate import thread_state

__all__ = ["ExitHooks"]

Flush = Callable[[float], None]  # takes a deadline on the time.monotonic() clock


class _FlushThread:
    """A daemon thread that runs `flush` on request and otherwise sleeps on an event."""

    def __init__(self, flush: Flush) -> None:
        self._flush = flush
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._done = threading.Event()
        self._done.set()
        self._deadline = 0.0
        self._stopped = False
        self._thread = threading.Thread(
            target=self._serve, name="appshield-telemetry-flush", daemon=True
        )
        self._thread.start()  # RuntimeError when the interpreter refuses new threads

    def alive(self) -> bool:
        return self._thread.is_alive()

    def request(self, deadline: float) -> threading.Event:
        """Start a flush (unless one is running: then that one is awaited); the event is set
        when it is over."""
        with self._lock:
            if self._done.is_set():
                self._done = threading.Event()
                self._deadline = deadline
                self._wake.set()
            return self._done

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()

    def _serve(self) -> None:
        # appshield's own thread doing appshield's own work: the export it runs (and the
        # connection that makes) is not the app's to judge, as on the build thread.
        thread_state.busy = True
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._stopped:
                return
            try:
                self._flush(self._deadline)
            except BaseException:  # nothing may end this thread but the exit
                pass
            finally:
                with self._lock:
                    self._done.set()


class ExitHooks:
    def __init__(self, flush: Flush, timeout_s: float) -> None:
        self.flush = flush
        self.timeout_s = timeout_s
        self._atexit = False
        self._sigterm: str | None = None  # None: not tried yet; "installed"; "refused"
        self._previous: Any = None
        self._exit_deadline: float | None = None
        self._flusher: _FlushThread | None = None
        self._flusher_refused = False

    def arm(self, with_signal: bool) -> None:
        """Cheap once settled. `with_signal`: there is OpenTelemetry output to flush, which
        also starts the flush thread now, while threads can still be started."""
        if not self._atexit:
            self._atexit = True
            atexit.register(self.at_exit)
        if with_signal:
            if self._sigterm is None:
                self._install_sigterm()
            if self._flusher is None and not self._flusher_refused:
                self._start_flusher()

    def _start_flusher(self) -> None:
        try:
            self._flusher = _FlushThread(self.flush)
        except RuntimeError:  # already exiting (3.12+): the flush runs on the exiting thread
            self._flusher_refused = True

    def exit_deadline(self) -> float:
        """The deadline of the way out, on the time.monotonic() clock: set by the first exit
        hook that asks, so that the hooks that run after it share the same bound."""
        if self._exit_deadline is None:
            self._exit_deadline = time.monotonic() + self.timeout_s
        return self._exit_deadline

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
        flusher, self._flusher = self._flusher, None
        if flusher is not None:
            flusher.stop()
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
        self.run(wait=True, deadline=self.exit_deadline())

    def run(self, wait: bool, deadline: float | None = None) -> None:
        """Flush on a helper thread and wait for it until `deadline` (default: `timeout_s`
        from now): a slow exporter, or a lock held by the code the signal interrupted, cannot
        hold the exit hostage."""
        if deadline is None:
            deadline = time.monotonic() + self.timeout_s
        flusher = self._flusher
        if flusher is not None and flusher.alive():
            done = flusher.request(deadline)
            if wait:
                done.wait(max(0.0, deadline - time.monotonic()))
            return
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
            worker.join(max(0.0, deadline - time.monotonic()))

    def reset_after_fork(self) -> None:
        # The flush thread did not survive the fork; the child starts its own when it needs one.
        self._flusher = None
        self._flusher_refused = False
        self._exit_deadline = None
