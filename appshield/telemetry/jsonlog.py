"""The `APPSHIELD_LOG` sink: one JSON object per line, to a file (appended) or `-` (stderr).

The file is opened on the first line, not at install, so a process without violations never
touches it. Lines are written with one `os.write` on an `O_APPEND` descriptor, which keeps
lines whole when a forked child writes to the same file.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

from appshield._threadstate import open_own

__all__ = ["JsonLineSink"]


class JsonLineSink:
    def __init__(self, target: str) -> None:
        self.target = target
        self._fd: int | None = None
        self._lock = threading.Lock()
        self.failed = False

    def write(self, record: dict[str, Any]) -> None:
        # A signal handler that raises can interrupt a write anywhere in its Python code;
        # the line is tried again (a few times), so such an exception does not silently cost
        # the report. A line that fails for its own reasons still gives up quickly.
        for _ in range(5):
            try:
                self._write(record)
                return
            except Exception:
                continue

    def _write(self, record: dict[str, Any]) -> None:
        import json  # here, not at import: ~1-2 ms of start-up for a process without violations

        line = json.dumps(record, separators=(",", ":"), default=str) + "\n"
        if self.target == "-":
            # Not under the lock: the app's sys.stderr may be a stream that logs, and its
            # handlers may be waiting for a report on another thread that needs this lock.
            # One write of a whole line, as print() makes.
            sys.stderr.write(line)
            return
        with self._lock:
            if self.failed:
                return
            try:
                if self._fd is None:
                    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
                    # Opened as appshield's own call: reporting exempts nothing else.
                    self._fd = open_own(self.target, flags, 0o600)
                os.write(self._fd, line.encode("utf-8", "backslashreplace"))
            except OSError as exc:
                # An unwritable log must not turn every violation into an exception; the
                # Python logger and OpenTelemetry still carry the reports. Said once.
                self.failed = True
                self._close_quietly()
                failure = exc
            else:
                return
        # Outside the lock: the warning goes to the app's handlers, whose emit may be
        # committing a violation on another thread that waits for this lock.
        _warn_unwritable(self.target, failure)

    def close(self) -> None:
        with self._lock:
            self._close_quietly()

    def _close_quietly(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None

    def reset_after_fork(self) -> None:
        self._lock = threading.Lock()


def _warn_unwritable(target: str, exc: OSError) -> None:
    from appshield.telemetry.logsink import warn

    warn(
        "appshield: cannot write APPSHIELD_LOG %s (%s); no further lines will be written there,"
        " violations are still reported through this logger and OpenTelemetry",
        target,
        exc.strerror or exc,
    )
