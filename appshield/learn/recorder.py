"""The recording side of `appshield learn`, inside every shielded process.

`appshield learn` starts the command with `APPSHIELD_LEARN=<folder>` and `APPSHIELD_POLICY`
naming the *learning policy* (`LEARNING_POLICY`: every default is `alert`, monitor mode, no
rules). When `APPSHIELD_LEARN` is set (and the mode is monitor), activation installs the
shield with a `Recorder` for both its ports (appshield.ports): the recorder is the reporter
instead of the telemetry sinks, and its `decider_for` makes the decider: every operation is
recorded and allowed, so nothing is blocked, nothing is reported (telemetry would fold
repeats away and flood the exporters), and no hook stops deciding early. The recorder:
- writes each distinct operation to `<folder>/ops-<pid>.jsonl` the first time it is seen, so
  a process that ends in `os._exit` or `exec` loses only its repeat counts, never an operation;
- counts repeats in memory and appends them at exit, and at most once a second while the
  process records (`FLUSH_INTERVAL`), so a process killed by a signal (SIGTERM's default
  action runs no `atexit`) loses at most the last second's counts; the recorder installs no
  signal handler, so the app's own SIGTERM behaviour is unchanged;
- starts a fresh file after `fork` (the child's pid), without the parent's pending counts;
- notes, for a file that `tempfile` names, the random part of its name (`volatile`): read off
  tempfile's own frame, so the generaliser knows `wgunicorn-d7lf25wp` is a prefix and a random
  part, whatever the prefix and suffix (the header gives the pid and parent pid, the other
  run-specific names it knows).
"""

from __future__ import annotations

import atexit
import os
import posixpath
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from appshield._threadstate import appshield_io
from appshield.decision import Decision
from appshield.engine.compiled import StackInput
from appshield.learn.records import Observation, Roots, header_json, observation_to_json
from appshield.operations import FileOp, ImportOp, Operation
from appshield.ports import WatchingDecider
from appshield.record.writer import blame_module
from appshield.record.writer import with_resolved as _with_resolved
from appshield.report import Violation

if TYPE_CHECKING:
    from appshield.patching import HookFamily
    from appshield.ports import Decider

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

FLUSH_INTERVAL = 1.0  # seconds between appends of the repeat counts while recording

# What the learning shield answers for every operation: allowed, so that nothing is blocked
# and no hook stops early. (A hook that turns one call into several operations, such as
# `open(..., "w+")` that reads and writes, stops deciding at the first violation; every
# operation being allowed, each one is decided, and so recorded.)
_RECORDED = Decision("allow", "learn:recorded", False, "monitor")


class _RecordingDecisions(WatchingDecider):
    """The learning shield's decider (appshield.ports.Decider): records every operation it is
    asked about and allows it. Decisions, not reports, are where every operation is seen."""

    # The caller is described by the names its frames claim (`blame_module`), as a report is.
    describes_callers = True

    def __init__(self, inner: Decider, recorder: Recorder) -> None:
        super().__init__(inner)
        self._recorder = recorder
        self._attribution: Any = None
        # Asked by the runtime: with `appshield learn --packages`, learning also records
        # which installed distributions were answerable for each operation (for the grants,
        # docs/packages.md), through an attributor the runtime attaches (the walk needs the
        # import hooks' record of code objects).
        self.wants_attribution = recorder.packages

    @property
    def attributes_packages(self) -> bool:
        return self._attribution is not None

    def attach_attribution(self, attribution: Any) -> None:
        """`attribution.answerable(frame)` -> the answerable distributions;
        `attribution.governs(op)` -> whether grants could govern `op` at all."""
        self._attribution = attribution

    def answerable(self, frame: Any) -> tuple[Any, ...]:
        attribution = self._attribution
        return attribution.answerable(frame) if attribution is not None else ()

    def decide(self, operation: Operation, stack: StackInput = None, api: str = "") -> Decision:
        recorder = self._recorder
        if type(operation) is ImportOp and operation.module in recorder.own_loaded:
            return _RECORDED  # loaded by appshield's own work while learning (see `own_loaded`)
        packages: tuple[tuple[str, str], ...] = ()
        attribution = self._attribution
        if attribution is not None and attribution.governs(operation):
            try:
                packages = tuple(
                    (getattr(d, "name", "?"), getattr(d, "version", ""))
                    for d in attribution.answerable(sys._getframe(1))
                )
            except Exception:  # recording must never break the program being learned
                packages = ()
        recorder.saw(operation, stack, api, packages)
        return _RECORDED

    def needs_stack(self, category: str) -> bool:
        # Every decision depends on the caller here (it is recorded): this also keeps the
        # hooks from remembering allowed operations, so every repeat is counted.
        return True

    def scope_matcher(self) -> Callable[[str], bool] | None:
        return None  # the learning policy has no scopes

    def scope_tops(self) -> frozenset[str] | None:
        return None


def _modules(stack: Any) -> tuple[str, ...]:
    if callable(stack):
        stack = stack()
    return tuple(stack) if stack else ()


# The tempfile functions that draw a random name into their local `name` and then create
# (or, for the temp folder probe, write) `dir/prefix + name + suffix`.
_TEMPFILE_MAKERS = frozenset({"_mkstemp_inner", "mkdtemp", "_get_default_tempdir"})


def tempfile_random_part(operation: Operation) -> tuple[str, ...]:
    """The random part of the name of the file `tempfile` is creating, when it is the one
    performing `operation` (found on the call stack); else ()."""
    if not isinstance(operation, FileOp):
        return ()
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name in _TEMPFILE_MAKERS and frame.f_globals.get("__name__") == (
            "tempfile"
        ):
            random = frame.f_locals.get("name")
            if isinstance(random, str) and random in posixpath.basename(operation.path):
                return (random,) if random else ()
            return ()
        frame = frame.f_back  # type: ignore[assignment]
    return ()


class Recorder:
    """A reporter that records every operation the shield decides (see the module docstring).
    `watch(shield)` must be called once the shield exists; `report` then has nothing to do."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        # Modules that appshield's own work loaded while learning (the recorder's `{tmp}`
        # loads tempfile and random): the app's later import of one is a `sys.modules` hit
        # that the import observer records; its load by appshield is never the app's.
        self.own_loaded: set[str] = set()
        # `appshield learn --packages` (cli/learn.py sets it for every learning process)
        self.packages = os.environ.get("APPSHIELD_LEARN_PACKAGES") == "1"
        self._lock = threading.RLock()
        self._reset()
        atexit.register(self.flush)
        os.register_at_fork(after_in_child=self._after_fork)

    def decider_for(self, compiled: Decider) -> Decider:
        """The shield's decider while learning (see `_RecordingDecisions`)."""
        return _RecordingDecisions(compiled, self)

    def fold(self, *args: Any) -> bool:
        return False  # nothing is reported, so nothing is a repeat of a report

    def flush_now(self) -> None:
        self.flush()

    def observers(self) -> tuple[HookFamily, ...]:
        """The rows learning adds to the hook table (`appshield.patching.HookFamily`): the
        observer of imports of modules appshield had already loaded (see
        `appshield.learn.observer`). The runtime applies them before it imports the hook
        modules, and walks them with the hook families to install and uninstall."""
        from appshield.learn.observer import preloaded_import_family

        return (preloaded_import_family(self),)

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._fd: int | None = None
        self._seen: set[tuple[Any, ...]] = set()
        self._pending: dict[tuple[Any, ...], Observation] = {}
        self._flushed_at = time.monotonic()

    def _after_fork(self) -> None:
        self._lock = threading.RLock()
        self._reset()

    def _write(self, line: str) -> None:
        if self._fd is None:
            path = os.path.join(self.folder, f"ops-{self._pid}.jsonl")
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            os.write(self._fd, (header_json(Roots.current(), sys.argv) + "\n").encode())
        os.write(self._fd, (line + "\n").encode())

    def saw(
        self,
        operation: Operation,
        stack: Any,
        api: str,
        packages: tuple[tuple[str, str], ...] = (),
    ) -> None:
        try:
            with appshield_io():
                modules = _modules(stack)
                volatile = tempfile_random_part(operation) if "tempfile" in modules else ()
                obs = Observation(
                    _with_resolved(operation),
                    api,
                    blame_module(modules),
                    modules,
                    volatile=volatile,
                    packages=packages,
                )
                self._record(obs)
        except Exception:  # recording must never break the program being learned
            pass

    def _record(self, obs: Observation) -> None:
        key = obs.key
        with self._lock:
            if os.getpid() != self._pid:  # forked without the at-fork hook (os.fork in C)
                self._reset()
            if key not in self._seen:
                self._seen.add(key)
                self._write(observation_to_json(obs))
                return
            held = self._pending.get(key)
            self._pending[key] = obs if held is None else replace(held, count=held.count + 1)
            now = time.monotonic()
            if now - self._flushed_at >= FLUSH_INTERVAL:
                self._flushed_at = now
                self._write_pending()

    def report(self, violation: Violation) -> None:
        pass  # every operation was already recorded when it was decided

    def flush(self) -> None:
        with appshield_io(), self._lock:
            if os.getpid() != self._pid:
                return
            self._write_pending()

    def _write_pending(self) -> None:
        pending, self._pending = self._pending, {}
        for obs in pending.values():
            self._write(observation_to_json(obs))

    def shutdown(self) -> None:
        self.flush()
