"""The recording side of `appshield learn`, inside every shielded process.

`appshield learn` starts the command with `APPSHIELD_LEARN=<folder>` and `APPSHIELD_POLICY`
naming the *learning policy* (`LEARNING_POLICY`: every default is `alert`, monitor mode, no
rules). Under it every operation is a violation and nothing is blocked, so the shield hands
every operation to its reporter; when `APPSHIELD_LEARN` is set, `runtime.install` gives it a
`Recorder` instead of the telemetry reporter (telemetry would aggregate repeats away and
flood the exporters). The recorder:
- writes each distinct operation to `<folder>/ops-<pid>.jsonl` the first time it is seen, so
  a process that ends in `os._exit` or `exec` loses only its repeat counts, never an operation;
- counts repeats in memory and appends them at exit;
- starts a fresh file after `fork` (the child's pid), without the parent's pending counts.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import Any

from appshield.hooks._state import appshield_io
from appshield.learn.records import Observation, Roots, header_json, observation_to_json
from appshield.report import Violation

__all__ = ["LEARNING_POLICY", "Recorder", "blame_module"]

LEARNING_POLICY = """\
# The policy `appshield learn` runs commands under: every operation is reported (alert),
# nothing is blocked (monitor); APPSHIELD_LEARN makes the shield record instead of report.
version: 1
name: appshield-learn
mode: monitor
defaults:
  process: alert
  file: alert
  network: alert
  import: alert
rules: []
"""

_STDLIB = frozenset(getattr(sys, "stdlib_module_names", ()))


def blame_module(stack: tuple[str, ...]) -> str | None:
    """The innermost module on the stack that is neither the standard library nor appshield:
    the code that asked for the operation."""
    for name in stack:
        top = name.split(".")[0]
        if top not in _STDLIB and top != "appshield" and not top.startswith("_frozen"):
            return name
    return stack[-1] if stack else None


class Recorder:
    """A reporter that records every operation it is given (see the module docstring)."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self._lock = threading.Lock()
        self._reset()
        atexit.register(self.flush)
        os.register_at_fork(after_in_child=self._after_fork)

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._fd: int | None = None
        self._seen: set[tuple[Any, ...]] = set()
        self._pending: dict[tuple[Any, ...], Observation] = {}

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        self._reset()

    def _write(self, line: str) -> None:
        if self._fd is None:
            path = os.path.join(self.folder, f"ops-{self._pid}.jsonl")
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            os.write(self._fd, (header_json(Roots.current(), sys.argv) + "\n").encode())
        os.write(self._fd, (line + "\n").encode())

    def report(self, violation: Violation) -> None:
        stack = violation.callsite.modules
        obs = Observation(violation.operation, violation.api, blame_module(stack), stack)
        key = obs.key
        with self._lock:
            if os.getpid() != self._pid:  # forked without the at-fork hook (os.fork in C)
                self._reset()
            if key not in self._seen:
                self._seen.add(key)
                self._write(observation_to_json(obs))
            else:
                held = self._pending.get(key)
                self._pending[key] = obs if held is None else Observation(
                    obs.operation, obs.api, obs.module, obs.stack, held.count + 1
                )

    def flush(self) -> None:
        with appshield_io(), self._lock:
            if os.getpid() != self._pid:
                return
            pending, self._pending = self._pending, {}
            for obs in pending.values():
                self._write(observation_to_json(obs))

    def shutdown(self) -> None:
        self.flush()
