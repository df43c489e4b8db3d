"""The app's OpenTelemetry exporters whose connection the policy denied: stopped at exit.

Why: the OTLP exporters retry a failed connection with exponential backoff until their own
timeout (`OTEL_EXPORTER_OTLP_TIMEOUT`, 10 s by default), because urllib3 and requests turn any
`OSError` at connect time, `PolicyViolation` included, into a `ConnectionError`, which the
SDK treats as transient. At exit the SDK's own atexit handler flushes every provider, each
signal waiting out its retries in turn: a gunicorn master whose collector port the policy
denies took 30 s to exit (the time ECS gives a task to stop). Waiting for a connection that
this process's policy refuses gains nothing.

What: when a connection is blocked, the exporter making it is found on the call stack (the
`self` of an SDK exporter's `export`: a `SpanExporter`, `MetricExporter` or
`LogRecordExporter`/`LogExporter` of opentelemetry-sdk) and remembered, weakly. At exit
(appshield's own atexit handler, registered after the SDK's and so run before it; or at once
when the denial happens while the process is already exiting) appshield calls that
exporter's public `shutdown()`, which is what the SDK itself calls at the end of its
shutdown: the retry wait in progress is cut short, and the batches still queued fail fast
instead of being retried. Nothing is changed while the app runs (a policy reload may allow
the collector again), and an exporter whose connections were never denied is never touched.
The SDK may log "already shutdown" when it shuts the exporter down again.
"""

from __future__ import annotations

import _thread
import os
import sys
from _weakrefset import WeakSet  # weakref's own, without importing weakref
from types import FrameType

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["exiting", "note_denied_connection", "stop_denied"]

# (module, class) of the SDK's exporter interfaces; looked up in sys.modules only, so a
# process that never imported the SDK pays one dict lookup per blocked connection.
_EXPORTER_BASES = (
    ("opentelemetry.sdk.trace.export", "SpanExporter"),
    ("opentelemetry.sdk.metrics._internal.export", "MetricExporter"),
    ("opentelemetry.sdk._logs._internal.export", "LogRecordExporter"),
    ("opentelemetry.sdk._logs._internal.export", "LogExporter"),
)
_DEPTH = 80  # the exporter's `export` is a few dozen frames below socket.connect

_lock = _thread.allocate_lock()
_denied: WeakSet[Any] = WeakSet()
_stopped: WeakSet[Any] = WeakSet()  # shut down once, never again


def _after_fork_in_child() -> None:
    global _lock
    _lock = _thread.allocate_lock()  # another thread of the parent may have held it at the fork


os.register_at_fork(after_in_child=_after_fork_in_child)


def _bases() -> tuple[type, ...]:
    out = []
    for module_name, class_name in _EXPORTER_BASES:
        module = sys.modules.get(module_name)
        base = getattr(module, class_name, None) if module is not None else None
        if isinstance(base, type):
            out.append(base)
    return tuple(out)


def _exporter_on_stack(frame: FrameType | None, bases: tuple[type, ...]) -> Any:
    depth = 0
    while frame is not None and depth < _DEPTH:
        if frame.f_code.co_name == "export":
            candidate = frame.f_locals.get("self")
            if isinstance(candidate, bases):
                return candidate
        frame = frame.f_back
        depth += 1
    return None


def note_denied_connection(frame: FrameType | None) -> bool:
    """A connection was blocked with `frame` on the stack: remember the SDK exporter making
    it, if any. True when that exporter is new here (the caller arranges `stop_denied`: at
    exit, or now when `exiting()`). Never raises."""
    try:
        bases = _bases()
        if not bases:
            return False
        exporter = _exporter_on_stack(frame, bases)
        if exporter is None:
            return False
        with _lock:
            if exporter in _denied or exporter in _stopped:
                return False
            _denied.add(exporter)
        return True
    except Exception:  # a fence: nothing here may reach the app
        return False


def exiting() -> bool:
    # threading._shutdown stops the main thread before the atexit handlers run. Only asked
    # about an SDK exporter, which imports threading (appshield does not, at start-up).
    threading = sys.modules.get("threading")
    return threading is not None and not threading.main_thread().is_alive()


def stop_denied() -> None:
    """Shut down every exporter whose connection was denied (each once). Never raises."""
    with _lock:
        exporters = list(_denied)
        _denied.clear()
        for exporter in exporters:
            _stopped.add(exporter)
    for exporter in exporters:
        try:
            exporter.shutdown()
        except Exception:
            pass
