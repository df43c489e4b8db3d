"""Recording every decision of a shielded process (`APPSHIELD_RECORD=FILE`,
`appshield run --record FILE`).

    install(...) -> Recording(FILE) -> decider_for(compiled) -> RecordingDecider
    hook -> gate -> RecordingDecider.decide -> the policy's decision, noted -> Shield.act

The shield's decider (appshield.ports) is the compiled policy wrapped: it decides exactly as
the policy does (scopes from the code on the stack, as always) and notes each decision with
the call site. Nothing else changes for the app; the hooks only stop remembering allowed
operations (`stack_matters` is always true and there is no import screen), so that every
repeat reaches the decider and is counted.

What is written (see `appshield.record.format` for the lines):
- a distinct decision (operation, API, stack, call site, verdict) is appended the first time
  it is seen, so a process that ends in `os._exit` or `exec` loses only repeat counts;
- repeats are counted in memory and appended as count lines at exit, at `uninstall`, and
  while the process runs after 1, 2, 4, 8, ... seconds (at most `PERIODIC_FLUSHES` times;
  after that only at exit), so a process killed by a signal loses only the counts since the
  last flush;
- after `limit` distinct entries (`APPSHIELD_RECORD_LIMIT`, default `DEFAULT_LIMIT`) a new
  distinct decision is only counted, per category and action, on an overflow line.

So each process writes at most 1 header, `limit` first sightings, `limit` count lines per
flush (`PERIODIC_FLUSHES` + 1 of them: the periodic ones and the last) and one overflow line
per flush, whatever the number of operations: the bound is in docs/lifecycle.md ("Record and
replay").

Several processes share the file: it is opened with O_APPEND and every batch of whole lines
goes out in one `write` (at most `CHUNK` bytes, cut at line ends), which Linux applies to a
local file at its end as a whole, never interleaved with another process's write. Each line
carries its process id, so readers put the lines of interleaved processes back together. A
forked child starts afresh (its own header, its own entries) without the parent's counts.

A failure to record (a full disk, an unwritable path) never reaches the app: the recording
stops, one line on stderr says so, and the decisions go on as before.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from appshield._threadstate import open_own
from appshield.decision import Decision
from appshield.engine.compiled import StackInput
from appshield.operations import FileOp, Operation
from appshield.ports import Decider, WatchingDecider
from appshield.record.format import Entry, Site, current_roots, entry_json, header_json

__all__ = [
    "CHUNK",
    "DEFAULT_LIMIT",
    "PERIODIC_FLUSHES",
    "Recording",
    "RecordingDecider",
    "blame_module",
    "with_resolved",
]

DEFAULT_LIMIT = 10_000  # distinct entries per process
PERIODIC_FLUSHES = 16  # count flushes while running: after 1, 2, 4, ... 32768 s
CHUNK = 64 * 1024  # bytes per write: whole lines, one append each

# The call site, as the runtime captures it: (modules on the stack, function, file, line).
CallSiteFn = Callable[[Any], Any]

_STDLIB = frozenset(getattr(sys, "stdlib_module_names", ()))


def blame_module(stack: tuple[str, ...]) -> str | None:
    """The innermost module on the stack that is neither the standard library nor appshield:
    the code that asked for the operation."""
    for name in stack:
        top = name.split(".")[0]
        if top not in _STDLIB and top != "appshield" and not top.startswith("_frozen"):
            return name
    return stack[-1] if stack else None


def with_resolved(operation: Operation) -> Operation:
    """`operation` with a file's resolved path filled in. A policy under replay (or a learned
    allow, which must match the resolved path) may need what the hook had no need of; done
    once per distinct entry, not for its repeats."""
    if isinstance(operation, FileOp) and operation.resolved is None:
        return FileOp(operation.path, operation.access, os.path.realpath(operation.path))
    return operation


class Recording:
    """The recording of one process (and, after a fork, of the child: see `_after_fork`).
    `note` is called with every decision; `flush` at exit and uninstall."""

    def __init__(
        self,
        path: str,
        callsite: CallSiteFn,
        *,
        limit: int = DEFAULT_LIMIT,
        policy: Any = None,
    ) -> None:
        self.path = os.path.abspath(path)
        self.limit = max(0, limit)
        self._callsite = callsite
        self._about = _policy_facts(policy)
        # Taken now, at install, before any hook is on: nothing in recording a decision may
        # run code the hooks would judge (it runs inside a decision, on the app's thread).
        self._roots: dict[str, Any] = {}
        try:
            self._roots = current_roots()
        except Exception:  # a recording never stops the shield: the header goes without
            pass
        self._lock = threading.RLock()
        self.failed: str | None = None
        # The violation this thread noted last: an audit handler that screened its
        # operations hands the violating one to the gate, which decides that very object
        # again. One operation, counted once.
        self._last = threading.local()
        self._reset()
        atexit.register(self.flush)
        os.register_at_fork(after_in_child=self._after_fork)

    def decider_for(self, compiled: Decider) -> Decider:
        """The shield's decider: `compiled`, with every decision noted here."""
        return RecordingDecider(compiled, self)

    # -- state ---------------------------------------------------------------------------

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._fd: int | None = None
        self._header_written = False
        self._known: dict[tuple[Any, ...], Entry] = {}
        self._pending: dict[tuple[Any, ...], int] = {}
        self._overflow: dict[str, int] = {}
        self._overflow_changed = False
        self._started = time.monotonic()
        self._next_flush = 1.0
        self._flushes = 0

    def _after_fork(self) -> None:
        self._lock = threading.RLock()
        fd = self._fd
        self._reset()
        if fd is not None:
            try:
                os.close(fd)  # the child's copy; it opens its own
            except OSError:
                pass

    # -- noting --------------------------------------------------------------------------

    def note(self, operation: Operation, api: str, decision: Decision, frame: Any) -> None:
        """One decision, made for code whose innermost frame is `frame`."""
        if self.failed is not None:
            return
        # No `appshield_io` here: this runs inside a decision on the app's thread, where a
        # signal handler could run meanwhile and must still be judged. Nothing below makes an
        # operation the hooks judge, but the recording's own `open` (`open_own`).
        try:
            last = self._last
            if decision.action != "allow":
                if getattr(last, "op", None) is operation:
                    last.op = None
                    return
                last.op = operation
            else:
                last.op = None
            site = self._callsite(frame)
            key = (operation, api, site, decision)
            with self._lock:
                if os.getpid() != self._pid:  # forked without the at-fork hook
                    self._reset()
                known = self._known
                if key in known:
                    self._pending[key] = self._pending.get(key, 0) + 1
                elif len(known) < self.limit:
                    modules = tuple(site.modules)
                    entry = Entry(
                        with_resolved(operation),
                        api,
                        blame_module(modules),
                        modules,
                        Site(site.function, site.file, site.line),
                        decision,
                        (),
                        1,
                        self._pid,
                    )
                    known[key] = entry
                    self._write([entry_json(entry)])
                else:
                    self._count_unrecorded(operation, decision)
                if time.monotonic() - self._started >= self._next_flush:
                    self._periodic_flush()
        except RecursionError:
            # Deep in the app's own recursion (or nested signal handlers): this decision is
            # only counted; the recording goes on.
            self._count_unrecorded(operation, decision)
        except Exception as exc:  # recording must never break the program recorded
            self._give_up(exc)

    def _count_unrecorded(self, operation: Operation, decision: Decision) -> None:
        name = f"{operation.category} {decision.action}"
        self._overflow[name] = self._overflow.get(name, 0) + 1
        self._overflow_changed = True

    def _periodic_flush(self) -> None:
        if self._flushes >= PERIODIC_FLUSHES:
            self._next_flush = float("inf")
            return
        self._flushes += 1
        self._next_flush *= 2
        self._write_pending()

    # -- writing -------------------------------------------------------------------------

    def flush(self) -> None:
        """Append the counts held (at exit, at uninstall)."""
        if self.failed is not None:
            return
        try:
            with self._lock:
                if os.getpid() != self._pid:
                    return
                self._write_pending()
        except Exception as exc:
            self._give_up(exc)

    def _write_pending(self) -> None:
        pending, self._pending = self._pending, {}
        lines = [
            entry_json(self._known[key]._replace(times=count)) for key, count in pending.items()
        ]
        if self._overflow_changed:
            self._overflow_changed = False
            lines.append(
                json.dumps({"overflow": self._overflow, "pid": self._pid}, separators=(",", ":"))
            )
        self._write(lines)

    def _write(self, lines: list[str]) -> None:
        if not lines:
            return
        if self._fd is None:
            self._fd = open_own(
                self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600
            )
        if not self._header_written:
            self._header_written = True
            header = header_json(
                self._roots, sys.argv, cwd=os.getcwd(), limit=self.limit, **self._about
            )
            lines = [header, *lines]
        chunk: list[bytes] = []
        size = 0
        for line in lines:
            data = (line + "\n").encode("utf-8", "surrogateescape")
            if chunk and size + len(data) > CHUNK:
                self._append(b"".join(chunk))
                chunk, size = [], 0
            chunk.append(data)
            size += len(data)
        self._append(b"".join(chunk))

    def _append(self, data: bytes) -> None:
        assert self._fd is not None
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]

    def _give_up(self, exc: BaseException) -> None:
        if self.failed is not None:
            return
        self.failed = f"{type(exc).__name__}: {exc}"
        try:
            sys.stderr.write(
                f"appshield: recording to {self.path} stopped ({self.failed});"
                " enforcement goes on\n"
            )
        except Exception:
            pass


def _policy_facts(policy: Any) -> dict[str, Any]:
    if policy is None:
        return {}
    files = getattr(policy, "files", ())
    return {
        "policy": files[0] if files else None,
        "policy_name": getattr(policy, "name", None),
        "mode": getattr(policy, "mode", None),
    }


class RecordingDecider(WatchingDecider):
    """A `Decider` (appshield.ports) that decides as `inner` does and notes every decision.

    Scopes are decided from the code the import system compiled, as the engine alone does
    (`describes_callers` is false); the call site noted is captured separately."""

    describes_callers = False

    def __init__(self, inner: Decider, recording: Recording) -> None:
        super().__init__(inner)
        self._recording = recording

    def decide(self, op: Operation, stack: StackInput = None, api: str = "") -> Decision:
        decision = self._inner.decide(op, stack, api)
        self._recording.note(op, api, decision, sys._getframe(1))
        return decision

    def __getattr__(self, name: str) -> Any:
        # The rest of the policy's interface (`no_library_stricter`, `mode`...) as it is.
        return getattr(self._inner, name)
