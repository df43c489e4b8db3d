"""The OpenTelemetry sink: a span, an event, a log record and the counters.

Which providers, per signal, looked up again for every emitted violation (so an app that
configures OpenTelemetry after appshield started is picked up from then on):
1. providers passed in explicitly (tests, embedding);
2. the app's global providers, when they are real ones (not the API's proxy or no-op
   defaults) -- never set by appshield;
3. the private pipeline built from `OTEL_*` (see `standalone.py`), for the signals that
   the environment turns on.

Nothing from `opentelemetry` is imported until a violation needs it. If the app has not
imported `opentelemetry.context`, no span can be active, so the first violation loses
nothing by not importing it: the private pipeline is then built on a background thread and
the violations that arrive meanwhile wait in a bounded queue, each with the context that was
active when it happened and its own timestamps, so their spans keep their parent.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from appshield._modules import loaded
from appshield._threadstate import appshield_io
from appshield.report import Violation
from appshield.telemetry.record import EVENT_NAME, AttributeValue
from appshield.telemetry.settings import SIGNALS, TelemetrySettings
from appshield.telemetry.stats import TelemetryStats

if TYPE_CHECKING:
    from typing import NamedTuple
else:  # typing's own costs ~0.7 M instructions per class at start-up (appshield/_records.py)
    from appshield._records import NamedTuple

__all__ = ["OTelSink", "Providers", "app_providers"]

_SCOPE = "appshield"
_DEFAULTS = frozenset(
    {
        "ProxyTracerProvider",
        "NoOpTracerProvider",
        "ProxyLoggerProvider",
        "NoOpLoggerProvider",
        "_ProxyMeterProvider",
        "NoOpMeterProvider",
    }
)


class Providers(NamedTuple):
    tracer_provider: Any = None
    logger_provider: Any = None
    meter_provider: Any = None


def _configured(provider: Any) -> Any:
    return None if type(provider).__name__ in _DEFAULTS else provider


def app_providers() -> Providers:
    """The app's global providers, where it set real ones. Only looks at modules that were
    already imported: no import happens here. The module globals are read directly where
    they exist, because the public getters may load and *set* a provider named by
    `OTEL_PYTHON_*_PROVIDER`, which is the app's call to make, not appshield's."""
    return Providers(
        _global(loaded("opentelemetry.trace"), "_TRACER_PROVIDER", "get_tracer_provider"),
        _global(loaded("opentelemetry._logs._internal"), "_LOGGER_PROVIDER", "get_logger_provider"),
        _global(loaded("opentelemetry.metrics._internal"), "_METER_PROVIDER", "get_meter_provider"),
    )


def _global(module: Any, attribute: str, getter: str) -> Any:
    if module is None:
        return None
    provider = getattr(module, attribute, _MISSING)
    if provider is _MISSING:
        provider = getattr(module, getter)()
    return None if provider is None else _configured(provider)


_MISSING = object()


def _context(in_context: bool) -> Any:
    # A module still being imported (the private pipeline's loader imports the SDK) counts
    # as absent: no span of the app's can be active through it yet.
    module = loaded("opentelemetry.context")
    if module is None:
        return None
    return module.get_current() if in_context else module.Context()


def _event_on_active_span(ctx: Any, violation: Violation, attrs: dict[str, AttributeValue]) -> None:
    trace = loaded("opentelemetry.trace")
    if trace is None:
        return
    span = trace.get_current_span(ctx)
    if span.is_recording():
        span.add_event(EVENT_NAME, attrs, timestamp=violation.time_ns)


def message(violation: Violation, attrs: dict[str, AttributeValue]) -> str:
    verb = "blocked" if violation.blocked else violation.decision.action
    if violation.shadow:
        verb = f"shadow {verb}"  # what the candidate would do; nothing was blocked
    package = attrs.get("appshield.package.name")
    by = f", distribution {package} {attrs.get('appshield.package.version', '')}" if package else ""
    return (
        f"appshield: {verb} {violation.category} {violation.api} {attrs['appshield.target']}"
        f" (rule {violation.decision.rule_id}, policy {violation.policy_name}{by})"
    )


_Pending = tuple[Violation, dict[str, AttributeValue], Any, Providers, int]


class OTelSink:
    def __init__(
        self,
        settings: TelemetrySettings,
        stats: TelemetryStats,
        explicit: Providers | None = None,
        exit_deadline: Callable[[], float] | None = None,
    ) -> None:
        self.settings = settings
        self.stats = stats
        self.explicit = explicit
        # The deadline of the way out, shared with the exit flush (ExitHooks.exit_deadline).
        self._exit_deadline = exit_deadline or (lambda: time.monotonic() + settings.flush_timeout_s)
        self._private_signals = settings.private_signals
        self._lock = threading.Lock()
        self._pending: deque[_Pending] = deque()
        self._private: Any = None  # PrivatePipeline once built
        self._ready = not self._private_signals
        self._loader: threading.Thread | None = None
        self._threads_refused = False  # the loader could not start: we are exiting (3.12+)
        self._exit_lock = threading.Lock()
        self._tracers: dict[int, tuple[Any, Any]] = {}
        self._loggers: dict[int, tuple[Any, Any]] = {}
        self._instrumented: dict[int, Any] = {}
        self._metric_target: Any = None
        self.has_targets = bool(self._private_signals) or explicit is not None

    # -- the report path (app thread, busy flag set) ------------------------------------

    def emit(
        self, violation: Violation, attrs: dict[str, AttributeValue], in_context: bool = True
    ) -> None:
        try:
            self._emit(violation, attrs, in_context)
        except Exception:
            # Whatever went wrong, the loss is counted (and warned about once), never silent:
            # `appshield.telemetry.dropped` with signal "report".
            self.stats.drop("report", 1)

    def _emit(
        self, violation: Violation, attrs: dict[str, AttributeValue], in_context: bool
    ) -> None:
        ctx = _context(in_context)
        if in_context:
            _event_on_active_span(ctx, violation, attrs)
        app = self.explicit or app_providers()
        if app != (None, None, None):
            self.has_targets = True
        queued, dropped = False, 0
        if not self._ready and self._needs_private(app):
            with self._lock:
                if not self._ready:
                    dropped = self._enqueue((violation, attrs, ctx, app, time.time_ns()))
                    queued = True
            if queued and dropped:
                # Counted (and warned about, once) outside the lock: the warning reaches the
                # app's handlers, whose emit may be reporting on another thread.
                self.stats.drop("pending", dropped)
        if not queued:
            self._emit_now(violation, attrs, ctx, app, time.time_ns())
        if self._threads_refused:
            self._send_at_exit()

    def _needs_private(self, app: Providers) -> bool:
        return any(app[SIGNALS.index(s)] is None for s in self._private_signals)

    def _enqueue(self, item: _Pending) -> int:
        """Queue `item` for the private pipeline (under `_lock`); returns how many records
        were dropped instead, for the caller to count once the lock is released."""
        if len(self._pending) >= self.stats.queue_limit:
            return 1
        self._pending.append(item)
        if self._loader is None:
            return self._start_loader()
        return 0

    def _start_loader(self) -> int:
        # The SDK cannot be imported once the interpreter has begun to exit (its import
        # registers threading-atexit callbacks and runs a thread pool). So the loader must
        # finish before that: a threading-atexit callback waits for it (bounded). Those
        # callbacks run last-registered first, so ours is registered after importing
        # concurrent.futures.thread (~5 ms, once), and runs before that module shuts its
        # pools down.
        try:
            import concurrent.futures.thread  # noqa: F401

            loader = threading.Thread(
                target=self._load, name="appshield-telemetry-init", daemon=True
            )
            loader.start()
            self._loader = loader
        except RuntimeError:  # no new thread (nor, after threading's shutdown, that import)
            if not threading.main_thread().is_alive():
                # No new threads this late in the exit (3.12+): the first violation came
                # from an atexit handler (or the SDK's own exit flush). See _send_at_exit.
                self._threads_refused = True
                return 0
            # Out of threads while the app runs: give up on the private pipeline rather
            # than queueing forever, or loading it on the app's thread; the logger and
            # APPSHIELD_LOG still report.
            dropped = len(self._pending)
            self._pending.clear()
            self._ready = True
            return dropped
        register = getattr(threading, "_register_atexit", None)
        if register is not None:
            try:
                register(self._await_loader)
            except RuntimeError:  # already exiting: flush() still waits for it
                pass
        return 0

    def _send_at_exit(self) -> None:
        """The exit of 3.12+, where no thread can be started: build the pipeline on this
        thread (once), with each export bounded by the flush timeout, and send at once: an
        atexit hook registered now would never run. The exit deadline is taken after the
        build, so that a slow import (a loaded machine) does not leave no time to send."""
        with self._exit_lock:  # two threads reporting during the exit build it once
            if not self._ready:
                # the signals are sent one after the other: each export gets an equal share
                share = self.settings.flush_timeout_s / max(1, len(self._private_signals))
                self._load(export_timeout_s=share)
            private = self._private
            if private is None:
                return
            deadline = self._exit_deadline()
            self.stats.export_deadline = deadline  # no export starts after it
            try:
                # Only appshield's own providers: the app's flush on its own way out, and
                # this thread must not wait out their exporters' retries.
                _force_flush(private.providers(), deadline)
                private.flush_held(deadline)
            finally:
                self.stats.export_deadline = None

    def _await_loader(self) -> None:
        loader = self._loader
        if loader is not None and loader.is_alive():
            loader.join(max(0.0, self._exit_deadline() - time.monotonic()))

    def _emit_now(
        self,
        violation: Violation,
        attrs: dict[str, AttributeValue],
        ctx: Any,
        app: Providers,
        end_ns: int,
    ) -> None:
        private = self._private
        span = None
        tp = app.tracer_provider or (private.tracer_provider if private else None)
        if tp is not None and (app.tracer_provider is not None or self.stats.admit("traces")):
            span = _fenced(self._span, tp, violation, attrs, ctx, end_ns)
        lp = app.logger_provider or (private.logger_provider if private else None)
        if lp is not None and (app.logger_provider is not None or self.stats.admit("logs")):
            _fenced(self._log, lp, violation, attrs, ctx, span)
        mp = app.meter_provider or (private.meter_provider if private else None)
        if mp is not None:
            _fenced(self.instrument, mp)
            self._metric_target = mp

    def _span(
        self, tp: Any, violation: Violation, attrs: dict[str, AttributeValue], ctx: Any, end_ns: int
    ) -> Any:
        from opentelemetry.trace import Status, StatusCode

        tracer = self._cached(self._tracers, tp, lambda: tp.get_tracer(_SCOPE, _version()))
        span = tracer.start_span(
            EVENT_NAME, context=ctx, attributes=attrs, start_time=violation.time_ns
        )
        if violation.blocked:
            span.set_status(Status(StatusCode.ERROR, f"blocked by {violation.decision.rule_id}"))
        span.end(end_time=max(end_ns, violation.time_ns))
        return span

    def _log(
        self, lp: Any, violation: Violation, attrs: dict[str, AttributeValue], ctx: Any, span: Any
    ) -> None:
        from opentelemetry._logs import SeverityNumber
        from opentelemetry.trace import set_span_in_context

        otel_logger = self._cached(self._loggers, lp, lambda: lp.get_logger(_SCOPE, _version()))
        log_ctx = set_span_in_context(span, ctx) if span is not None else ctx
        fields: dict[str, Any] = {
            "timestamp": violation.time_ns,
            "observed_timestamp": time.time_ns(),
            "context": log_ctx,
            "severity_number": SeverityNumber.WARN,
            "severity_text": "WARN",
            "body": message(violation, attrs),
        }
        try:
            otel_logger.emit(**fields, attributes=attrs, event_name=EVENT_NAME)
        except TypeError:  # an API from before keyword emit and event_name
            from opentelemetry._logs import LogRecord

            otel_logger.emit(LogRecord(**fields, attributes={**attrs, "event.name": EVENT_NAME}))

    @staticmethod
    def _cached(cache: dict[int, tuple[Any, Any]], provider: Any, make: Any) -> Any:
        hit = cache.get(id(provider))
        if hit is None or hit[0] is not provider:
            hit = (provider, make())
            cache[id(provider)] = hit
        return hit[1]

    # -- metrics ------------------------------------------------------------------------

    def instrument(self, meter_provider: Any) -> None:
        """Register the observable counters on a meter provider, once. They read the
        reporter's own tallies, so the hot path never calls into the SDK, and they report
        only while that provider is the current one (no double counting after a switch)."""
        if self._instrumented.get(id(meter_provider)) is meter_provider:
            return
        self._instrumented[id(meter_provider)] = meter_provider
        from opentelemetry.metrics import Observation

        def violations(options: Any) -> list[Any]:
            if self._metric_target is not meter_provider:
                return []
            counts, _ = self.stats.snapshot()
            found = [Observation(n, _counter_attributes(key)) for key, n in counts.items()]
            found.extend(
                Observation(n, {**_counter_attributes(key), "appshield.shadow": True})
                for key, n in self.stats.shadow_snapshot().items()
            )
            return found

        def dropped(options: Any) -> list[Any]:
            if self._metric_target is not meter_provider:
                return []
            _, drops = self.stats.snapshot()
            return [Observation(n, {"appshield.signal": s}) for s, n in drops.items()]

        meter = meter_provider.get_meter(_SCOPE, _version())
        meter.create_observable_counter(
            "appshield.violations",
            callbacks=[violations],
            unit="{violation}",
            description="Operations that matched a deny or alert rule, repeats included",
        )
        meter.create_observable_counter(
            "appshield.telemetry.dropped",
            callbacks=[dropped],
            unit="{record}",
            description="Violation telemetry records that could not be exported",
        )

    # -- the private pipeline -----------------------------------------------------------

    def _load(self, export_timeout_s: float | None = None) -> None:
        with appshield_io():
            try:
                build_pipeline = _pipeline_builder()
                pipeline = build_pipeline(
                    self.settings, self.stats, self.instrument, export_timeout_s
                )
            except Exception as exc:  # a broken exporter setup must not break the app
                from appshield.telemetry.logsink import warn

                warn("appshield: private OpenTelemetry pipeline unavailable: %r", exc)
                pipeline = None
            if pipeline is not None and pipeline.meter_provider is not None:
                if self._metric_target is None:
                    self._metric_target = pipeline.meter_provider
            self._private = pipeline
            self._drain_pending()

    def _drain_pending(self) -> None:
        while True:
            with self._lock:
                batch = list(self._pending)
                self._pending.clear()
                if not batch:
                    self._ready = True
                    return
            for item in batch:
                try:
                    self._emit_now(*item)
                except Exception:
                    self.stats.drop("pending", 1)

    # -- the way out --------------------------------------------------------------------

    def flush(self, deadline: float) -> None:
        loader = self._loader
        if loader is not None and loader.is_alive():
            loader.join(max(0.0, deadline - time.monotonic()))
        _force_flush(self._flushable(), deadline)
        private = self._private
        if private is not None:
            _fenced(private.flush_held, deadline)

    def _flushable(self) -> list[Any]:
        seen: dict[int, Any] = {}
        for cache in (self._tracers, self._loggers):
            for provider, _ in cache.values():
                seen[id(provider)] = provider
        for provider in self._instrumented.values():
            seen[id(provider)] = provider
        if self._private is not None:
            for provider in self._private.providers():
                seen[id(provider)] = provider
        return list(seen.values())

    def shutdown_private(self) -> None:
        private, self._private = self._private, None
        if private is None:
            return
        for provider in private.providers():
            try:
                provider.shutdown()
            except Exception:
                pass

    def reset_after_fork(self) -> None:
        self._lock = threading.Lock()
        self._exit_lock = threading.Lock()
        if not self._ready:
            # The loader thread did not survive the fork; the parent's queued records are
            # the parent's to send.
            self._pending.clear()
            self._loader = None


def _force_flush(providers: Any, deadline: float) -> None:
    for provider in providers:
        remaining_ms = int(max(0.0, deadline - time.monotonic()) * 1000)
        if remaining_ms <= 0:
            return
        try:
            provider.force_flush(remaining_ms)
        except Exception:
            pass


def _pipeline_builder() -> Any:
    try:
        from appshield.telemetry.standalone import build_pipeline
    except RuntimeError as exc:
        from appshield.telemetry import threadless

        if not threadless.refused_at_exit(exc):
            raise
        with threadless.detectors_inline():  # see threadless.py: 3.12.0-3.12.2 at exit
            from appshield.telemetry.standalone import build_pipeline
    return build_pipeline


def _fenced(call: Any, *args: Any) -> Any:
    """One signal failing (a broken provider, an exporter raising from a synchronous
    processor) must not cost the others."""
    try:
        return call(*args)
    except Exception:
        return None


def _version() -> str:
    from appshield import __version__

    return __version__


def _counter_attributes(key: tuple[str, ...]) -> dict[str, str | bool]:
    """The counter's attributes for a `TelemetryStats` key; a denial the `packages` grants
    decided also names the distribution (docs/packages.md)."""
    attrs: dict[str, str | bool] = {"security_rule.category": key[0], "appshield.action": key[1]}
    attrs["security_rule.name"] = key[2]
    if len(key) == 5:
        attrs["appshield.package.name"] = key[3]
        attrs["appshield.package.version"] = key[4]
    return attrs
