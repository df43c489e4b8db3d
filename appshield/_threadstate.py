"""Per-thread state shared by the gate, the wrapt layer and the audit hook.

Nothing here is an exemption that other code on the same thread can fall into by timing.
A signal handler, a finalizer or a weakref callback can run between any two bytecodes of
appshield's own work, so "appshield is busy on this thread, let everything through" would
let them through too. Instead:

`own`: the one system call appshield is about to make itself while it describes an
operation (resolving a path through an `O_PATH` descriptor, listing /proc/self/fd, a name
lookup), as (audit event name, the exact argument object). The audit hook lets that event
through only when its first argument *is* that object, an object appshield made for the call
and never handed to anyone (a fresh `bytes`). Other code cannot produce it, so it cannot
borrow the exemption.

`own_imports`: module names appshield itself imports while deciding (a lazily loaded stdlib
helper). Compared by name: whoever else imports the same module meanwhile gains nothing the
import was not about to give anyway.

`busy`: a whole block of appshield's own work that is not a decision: exporting its private
telemetry, building the telemetry on the first violation, the learning recorder writing its
files, the policy reloader reading the policy. Those run on appshield's own threads
(exporters, the loader, the reloader, the telemetry builder) or at exit; a finalizer that runs
there meanwhile is a stated limit (docs/limits.md). Deciding and reporting never set it.

`expect`: the audit event that a wrapper has just decided and is about to trigger by calling
the original function, as (event name, the converted argument object it passes). The audit
hook consumes it, on identity, instead of deciding the same call twice. It is set only after
conversion, so it names the very object the C function receives.

`attempting`: the network call a wrapper let through and is running now, as (api, host,
port), so that an import its own C code makes (getaddrinfo and gethostbyname encode a str
host with the `idna` codec, whose first use imports `encodings.idna` and `stringprep`) is
reported as part of it (`Violation.during`) when the import is what gets denied.

`reporting`: the sinks are running on this thread. A violation committed meanwhile (by a
signal handler, or by an app logging handler the `appshield` logger calls) is still decided
and enforced at once; only its report waits in `deferred` until the outer report is done, so
the sinks are never re-entered and no sink lock is taken twice by one thread.

`busy` and `reporting` hold the frame that set them (or `True`, for `busy` on appshield's own
threads), and a reader asks `still_running` before believing them. A flag is cleared in a
`finally` block, and an exception a signal handler raises at the first instruction of that
block (3.10 checks for signals before most instructions) skips the clearing: a flag left on
by a frame that is gone would otherwise stay on for good, deferring every later report of
the thread (or, for `busy`, exempting everything). Only read when a flag is on, which is rare.
"""

from __future__ import annotations

import _thread
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import FrameType
    from typing import Any

__all__ = ["appshield_io", "open_own", "reporting_now", "still_running", "thread_state"]


# `_thread._local` is `threading.local`: importing `threading` (and `functools`, `collections`)
# costs start-up a few million instructions for nothing this module needs.
class _ThreadState(_thread._local):
    busy: Any = False
    expect: tuple[str, Any] | None = None
    own: tuple[str, Any] | None = None
    own_imports: tuple[str, ...] = ()
    reporting: Any = None
    attempting: tuple[str, Any, Any] | None = None
    deferred: list[Any] | None = None
    # Violations this thread made that the reporter has not taken yet (Shield._report).
    pending: Any = None
    # The import system's own file work in progress on this thread, which belongs to the
    # import category, not the file category: 0 when there is none; while a loader reads a
    # module's code (hooks/imports `_module_code_io`), the module file it judged and the
    # start of that module's bytecode cache file names (only those are that work's opens:
    # any other file opened meanwhile is checked); True while the finders list folders or
    # run the path hooks (`_import_io`). Set and put back, so nested work nests.
    importing: Any = 0


thread_state = _ThreadState()


_getframe = sys._getframe


def still_running(owner: Any) -> bool:
    """Is the frame `owner` that turned a flag on still on this thread's stack (`True`: a flag
    of one of appshield's own threads, always on)? False for a flag its frame left behind."""
    if owner is True:
        return True
    frame: FrameType | None = _getframe(1)
    while frame is not None:
        if frame is owner:
            return True
        frame = frame.f_back
    return False


def reporting_now(state: _ThreadState) -> bool:
    """Are the sinks running on this thread (a live `reporting` flag, see the module notes)?"""
    owner = state.reporting
    return bool(owner) and still_running(owner)


class _OwnWork:
    """The `with` block `appshield_io` returns (a class: `contextlib` is not loaded at
    start-up, and its generator would add two frames to every such block)."""

    __slots__ = ("previous",)

    def __enter__(self) -> None:
        state = thread_state
        self.previous = state.busy
        state.busy = _getframe(1)  # the `with` statement's frame

    def __exit__(self, *exc_info: object) -> None:
        thread_state.busy = self.previous


def appshield_io() -> _OwnWork:
    """Mark a block of appshield's own work that is not a decision (telemetry export, the
    learning recorder's files, the policy reloader): hooks let it through. Never used while
    deciding or reporting on an application thread."""
    return _OwnWork()


# posix.open as it was before any patching: appshield's own opens skip its own wrapper.
_raw_open = __import__("posix").open


def open_own(path: str, flags: int, mode: int = 0o777) -> int:
    """`os.open` as appshield's own call (an O_PATH probe while resolving a path, the
    APPSHIELD_LOG file). The `open` audit event it raises carries a bytes object made here
    and handed to nobody else: the audit hook lets exactly that event through, and nothing
    else running on this thread meanwhile (a signal handler, a finalizer) can borrow it."""
    state = thread_state
    token = os.fsencode(path)
    previous = state.own
    state.own = ("open", token)
    try:
        return _raw_open(token, flags, mode)  # type: ignore[no-any-return]
    finally:
        state.own = previous
