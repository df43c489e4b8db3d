"""Telemetry sinks for violations.

For every violation the runtime calls `reporter.report(violation)` (with appshield's busy
flag set, before it raises). The reporter:

- counts it on `appshield.violations` (attributes `security_rule.category`,
  `appshield.action`, `security_rule.name`), repeats included;
- folds identical repeats (same rule, api, target and code location): the first is
  reported in full, then at most one per `APPSHIELD_AGGREGATION_INTERVAL` seconds (default
  10) per key, carrying `appshield.suppressed_count`;
- for each reported one: a span `appshield.violation` (child of the active span, status
  ERROR when blocked), an event of that name on the active span when it is recording, a log
  record with `event_name` `appshield.violation` through the OpenTelemetry Logs API, a
  warning on the `appshield` logger (NullHandler only), and, with `APPSHIELD_LOG` set, one
  JSON line to that file (or stderr for `-`).

Providers: the app's own, when it configured OpenTelemetry (looked up at each report, so a
late setup is picked up); otherwise a private pipeline built from the `OTEL_*` variables of
the start-up environment. With none of them set nothing leaves the process.

Start-up: installing costs next to nothing here. `make_reporter` returns a stand-in that
imports the sinks (and `logging`, `json`) on the first violation; nothing from
`opentelemetry` is imported before a violation needs it.

Settings (environment, read at start-up): `APPSHIELD_LOG`, `APPSHIELD_REDACT` (`0`: keep
secrets in reports), `APPSHIELD_AGGREGATION_INTERVAL` (seconds), `APPSHIELD_FLUSH_TIMEOUT`
(seconds, default 2), `OTEL_TRACES_EXPORTER` / `OTEL_LOGS_EXPORTER` /
`OTEL_METRICS_EXPORTER` (`otlp`, `console`, `none`), `OTEL_EXPORTER_OTLP_ENDPOINT` (and the
per-signal variants), `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TIMEOUT`,
`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_SDK_DISABLED`. See docs/telemetry.md.
"""

from __future__ import annotations

import _thread
import sys

# Loaded at start-up although nothing here needs it yet: `threading` takes the thread that first
# imports it for the main thread, and its exit (`_shutdown`, run before the atexit handlers
# only when it is loaded) is what the exit flush of the sinks relies on (`main_thread()`
# stopped, `_register_atexit` callbacks; telemetry/otel.py and lifecycle.py). Imported later,
# on the sinks' helper thread or from an atexit handler, a report made at exit is lost.
import threading  # noqa: F401
import time

from appshield._modules import in_an_import as _in_an_import
from appshield._modules import wait_for_helper
from appshield._threadstate import appshield_io, thread_state

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, Protocol

    from appshield.report import Violation  # the sinks' modules import it on the first report
    from appshield.telemetry.otel import Providers
    from appshield.telemetry.reporter import TelemetryReporter
else:
    Protocol = object  # read only by type checkers: no `typing` at run time


__all__ = [
    "DeferredReporter",
    "Providers",
    "Reporter",
    "TelemetryReporter",
    "TelemetrySettings",
    "library_logger",
    "make_reporter",
    "violation_attributes",
    "violation_record",
]

_LAZY = {
    "Providers": "appshield.telemetry.otel",
    "TelemetryReporter": "appshield.telemetry.reporter",
    "TelemetrySettings": "appshield.telemetry.settings",
    "violation_attributes": "appshield.telemetry.record",
    "violation_record": "appshield.telemetry.record",
}


def __getattr__(name: str) -> Any:
    # The public names load their modules on first use, keeping `install()` cheap.
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


class Reporter(Protocol):
    def report(self, violation: Violation) -> None: ...

    def shutdown(self) -> None: ...


def library_logger() -> Any:
    """The `appshield` logger with its NullHandler (a library's logger: without it, Python's
    last-resort handler would print appshield's warnings on the app's stderr)."""
    import logging

    logger = logging.getLogger("appshield")
    if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
        logger.addHandler(logging.NullHandler())
    return logger


class DeferredReporter:
    """What `make_reporter` returns: builds the real reporter on the first violation."""

    def __init__(
        self, log_path: str | None, environ: Mapping[str, str], providers: Providers | None
    ) -> None:
        self._args = (log_path, dict(environ), providers)
        self._real: TelemetryReporter | None = None
        self._lock = _thread.allocate_lock()
        self._builder: Any = None  # the lock held while the build runs
        self._builder_ident = 0  # the building thread's
        self._built: TelemetryReporter | None = None
        self._failure: BaseException | None = None

    @property
    def real(self) -> TelemetryReporter:
        real = self._real
        if real is None:
            with self._lock:
                real = self._real
                if real is None:
                    real = self._built_on_a_helper_thread()
                    # From now on the runtime calls the real reporter's `fold` directly
                    # (an instance attribute shadows the method below).
                    self.fold = real.fold  # type: ignore[method-assign]
                    self._real = real
        return real

    def _built_on_a_helper_thread(self) -> TelemetryReporter:
        """Build the real reporter on a thread of appshield's own, and wait for it.

        The build loads appshield's telemetry modules (tens of milliseconds). On the app's
        thread a signal handler that raises could interrupt it every time (a fast interval
        timer does), and no report would ever be made. On its own thread no Python signal
        handler runs; if the wait is interrupted, the build still finishes, and the
        violations that arrived meanwhile wait in `_pending` for the next report (or the
        exit)."""
        if self._builder is None and (_in_an_import() or sys.is_finalizing()):
            # A helper thread could wait for a module lock this thread holds (the app's
            # `import appshield.auto` reports the modules imported before it): build here.
            # appshield's own imports (docs/limits.md: this one window).
            # At interpreter shutdown (a `__del__` run while modules are cleared), 3.10 and
            # 3.11 still start a thread but never let it take the GIL: waiting for it would
            # hang the exit for ever. Building here may fail (modules are going away); the
            # runtime then keeps the violation queued, and the operation stays denied.
            with appshield_io():
                return self._build()
        if self._builder is None:
            # A bare `_thread` thread: `threading.settrace`/`setprofile` functions, which
            # threading.Thread installs in every new thread, never run in it.
            # Published only once the thread that will release it runs: an exception landing
            # in between leaves no held lock behind that nobody would ever release.
            done = _thread.allocate_lock()
            done.acquire()
            try:
                self._builder_ident = _thread.start_new_thread(self._build_here, (done,))
            except RuntimeError:
                # No new threads at interpreter shutdown (3.12+): the first violation came
                # during the exit (an atexit handler's, the SDK's own exit flush). No signal
                # handler runs there for long; build here rather than lose the report.
                with appshield_io():
                    return self._build()
            self._builder = done
        if not wait_for_helper(self._builder, lambda: self._builder_ident):
            raise RuntimeError(
                "appshield: telemetry could not be set up: the import system's lock is held "
                "for ever by an interrupted import"
            )
        if self._built is None:
            raise RuntimeError("appshield: telemetry could not be set up") from self._failure
        return self._built

    def _build_here(self, done: Any) -> None:
        # appshield's own thread doing appshield's own work (imports, their bytecode
        # writes): nothing here is the app's to judge or to report.
        thread_state.busy = True
        try:
            self._built = self._build()
        except BaseException as exc:  # handed to the waiting thread
            self._failure = exc
        finally:
            done.release()

    def _build(self) -> TelemetryReporter:
        from appshield.telemetry.reporter import TelemetryReporter
        from appshield.telemetry.settings import TelemetrySettings

        log_path, environ, providers = self._args
        settings = TelemetrySettings.from_environ(environ, log_path=log_path)
        return TelemetryReporter(settings, providers=providers)

    def report(self, violation: Violation) -> None:
        self.real.report(violation)

    def flush_now(self) -> None:
        """Push out what the sinks hold (the runtime's drain at exit)."""
        real = self._real
        if real is not None:
            real.flush(time.monotonic() + real.settings.flush_timeout_s)

    def fold(
        self,
        operation: Any,
        decision: Any,
        api: str,
        function: str | None,
        file: str | None,
        line: int | None,
        shadow: bool = False,
    ) -> bool:
        """`TelemetryReporter.fold`; before the first violation nothing can be a repeat."""
        real = self._real
        return real is not None and real.fold(
            operation, decision, api, function, file, line, shadow
        )

    def shutdown(self) -> None:
        if self._real is not None:
            self._real.shutdown()


def make_reporter(
    config: Any, environ: Mapping[str, str], *, providers: Providers | None = None
) -> DeferredReporter:
    """The reporter for one installed shield. `config.log_path` (if any) overrides
    `APPSHIELD_LOG`; `providers` overrides the provider lookup (tests, embedding)."""
    return DeferredReporter(getattr(config, "log_path", None), environ, providers)
