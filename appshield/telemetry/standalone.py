"""The private OpenTelemetry pipeline, for apps that did not configure OpenTelemetry.

Imported only when a violation needs it (the SDK costs ~150-200 ms to import), on a
background thread. The providers are never made global: the SDK accepts one
`set_tracer_provider` per process and that one belongs to the app.

Every exporter is fenced: `export()` runs with appshield's busy flag set, so the
exporter's own connections and file writes are not checked against the policy (a policy
that denies the network must not block its own telemetry), and whatever it raises or
returns as a failure is counted as dropped instead of reaching anyone.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

from appshield._threadstate import appshield_io
from appshield.telemetry.settings import TelemetrySettings
from appshield.telemetry.stats import TelemetryStats

try:  # the name changed across SDK versions
    from opentelemetry.sdk._logs.export import LogRecordExporter as _LogExporterBase
    from opentelemetry.sdk._logs.export import LogRecordExportResult as _LogResult
except ImportError:  # pragma: no cover - older SDKs
    from opentelemetry.sdk._logs.export import LogExporter as _LogExporterBase  # type: ignore
    from opentelemetry.sdk._logs.export import LogExportResult as _LogResult  # type: ignore

__all__ = ["PrivatePipeline", "build_pipeline", "silence_exporter_logs"]


def _fenced_call(stats: TelemetryStats, signal: str, count: int, call: Callable[[], Any]) -> bool:
    stats.taken(signal, count)
    deadline = stats.export_deadline
    if deadline is not None and time.monotonic() > deadline:
        stats.drop(signal, count)
        return False
    with appshield_io():
        try:
            result = call()
        except Exception:
            result = None
    ok = result is not None and getattr(result, "name", "") == "SUCCESS"
    if not ok:
        stats.drop(signal, count)
    return ok


class FencedSpanExporter(SpanExporter):
    def __init__(self, inner: SpanExporter, stats: TelemetryStats) -> None:
        self.inner, self.stats = inner, stats

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        ok = _fenced_call(self.stats, "traces", len(spans), lambda: self.inner.export(spans))
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def shutdown(self) -> None:
        with appshield_io():
            self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class FencedLogExporter(_LogExporterBase):  # type: ignore[misc,valid-type]
    def __init__(self, inner: Any, stats: TelemetryStats) -> None:
        self.inner, self.stats = inner, stats

    def export(self, batch: Sequence[Any]) -> Any:
        ok = _fenced_call(self.stats, "logs", len(batch), lambda: self.inner.export(batch))
        return _LogResult.SUCCESS if ok else _LogResult.FAILURE

    def shutdown(self) -> None:
        with appshield_io():
            self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class FencedMetricExporter(MetricExporter):
    def __init__(self, inner: MetricExporter, stats: TelemetryStats) -> None:
        super().__init__(
            preferred_temporality=inner._preferred_temporality,
            preferred_aggregation=inner._preferred_aggregation,
        )
        self.inner, self.stats = inner, stats

    def export(self, metrics_data: Any, timeout_millis: float = 10_000, **kwargs: Any) -> Any:
        def call() -> Any:
            return self.inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)

        ok = _fenced_call(self.stats, "metrics", 1, call)
        return MetricExportResult.SUCCESS if ok else MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        with appshield_io():
            self.inner.shutdown()


@dataclass
class PrivatePipeline:
    tracer_provider: TracerProvider | None
    logger_provider: LoggerProvider | None
    meter_provider: MeterProvider | None
    # exporters standing in for a batch processor's thread (see HeldExporter)
    held: list[HeldExporter] = field(default_factory=list)

    def providers(self) -> Iterable[Any]:
        return [p for p in (self.tracer_provider, self.logger_provider, self.meter_provider) if p]

    def flush_held(self, deadline: float) -> None:
        for exporter in self.held:
            exporter.send(deadline)


class HeldExporter:
    """Keeps what a synchronous processor hands it, and sends it only when flushed.

    For when the batch processors cannot start their export thread: Python 3.12.0-3.12.2
    refuse new threads as soon as the main thread has returned, and a process that exits
    right after its first violation is still loading the pipeline then. A synchronous
    processor over this exporter needs no thread, and `export()` here does no I/O, so
    whichever thread emits (the loader; or the app's, should threads run out while it
    runs) never waits for the network. The exit flush sends the records, on appshield's
    flush thread, batch by batch until its deadline."""

    def __init__(self, inner: Any, limit: int, stats: TelemetryStats, signal: str) -> None:
        self.inner, self.limit, self.stats, self.signal = inner, limit, stats, signal
        self._records: deque[Any] = deque()
        self._lock = threading.Lock()

    def export(self, batch: Sequence[Any]) -> Any:
        with self._lock:
            room = max(0, self.limit - len(self._records))
            self._records.extend(batch[:room])
        if len(batch) > room:
            self.stats.drop(self.signal, len(batch) - room)
        return _SUCCESS[self.signal]

    def send(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            with self._lock:
                count = min(_BATCH, len(self._records))
                batch = [self._records.popleft() for _ in range(count)]
            if not batch:
                return
            self.inner.export(batch)  # fenced: counts its own failures, never raises

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

    def shutdown(self) -> None:
        self.inner.shutdown()


_BATCH = 512  # the batch processors' default batch size
_SUCCESS = {"traces": SpanExportResult.SUCCESS, "logs": _LogResult.SUCCESS}


def _pairs(raw: str) -> dict[str, str]:
    """`k=v,k2=v2` with percent-encoding, as OTEL_RESOURCE_ATTRIBUTES and headers use."""
    out: dict[str, str] = {}
    for item in raw.split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            out[unquote(key.strip())] = unquote(value.strip())
    return out


def _resource(environ: Mapping[str, str]) -> Resource:
    # Built by hand rather than with Resource.create(): that runs the resource detectors
    # on a thread pool, which is refused once the interpreter has begun to exit, and it
    # reads os.environ rather than the start-up snapshot.
    attrs: dict[str, Any] = {
        "telemetry.sdk.language": "python",
        "telemetry.sdk.name": "opentelemetry",
        "telemetry.sdk.version": _sdk_version(),
        "service.name": "unknown_service:python",
    }
    attrs.update(_pairs(environ.get("OTEL_RESOURCE_ATTRIBUTES", "")))
    if environ.get("OTEL_SERVICE_NAME"):
        attrs["service.name"] = environ["OTEL_SERVICE_NAME"]
    return Resource(attrs)


def _sdk_version() -> str:
    try:
        from opentelemetry.sdk.version import __version__

        return str(__version__)
    except ImportError:  # pragma: no cover
        return "unknown"


def _otlp_kwargs(
    environ: Mapping[str, str], signal: str, timeout_s: float | None = None
) -> dict[str, Any]:
    upper = signal.upper()
    endpoint = environ.get(f"OTEL_EXPORTER_OTLP_{upper}_ENDPOINT")
    if not endpoint:
        base = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4318")
        endpoint = base.rstrip("/") + f"/v1/{signal}"
    kwargs: dict[str, Any] = {"endpoint": endpoint}
    headers = environ.get(f"OTEL_EXPORTER_OTLP_{upper}_HEADERS") or environ.get(
        "OTEL_EXPORTER_OTLP_HEADERS"
    )
    if headers:
        kwargs["headers"] = _pairs(headers)
    timeout = environ.get(f"OTEL_EXPORTER_OTLP_{upper}_TIMEOUT") or environ.get(
        "OTEL_EXPORTER_OTLP_TIMEOUT"
    )
    if timeout:
        try:
            kwargs["timeout"] = float(timeout) / 1000.0  # the variable is in milliseconds
        except ValueError:
            pass
    if timeout_s is not None:  # each export (retries included) ends by then
        kwargs["timeout"] = min(kwargs.get("timeout", timeout_s), timeout_s)
    return kwargs


def _exporter(
    signal: str, name: str, environ: Mapping[str, str], timeout_s: float | None = None
) -> Any:
    if name == "console":
        if signal == "traces":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            return ConsoleSpanExporter()
        if signal == "logs":
            from opentelemetry.sdk._logs.export import ConsoleLogRecordExporter

            return ConsoleLogRecordExporter()
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

        return ConsoleMetricExporter()
    kwargs = _otlp_kwargs(environ, signal, timeout_s)
    if signal == "traces":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(**kwargs)
    if signal == "logs":
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

        return OTLPLogExporter(**kwargs)
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    return OTLPMetricExporter(**kwargs)


def _interval_ms(environ: Mapping[str, str], name: str, default: float) -> float:
    try:
        return float(environ.get(name) or default)
    except ValueError:
        return default


def build_pipeline(
    settings: TelemetrySettings,
    stats: TelemetryStats,
    register_instruments: Callable[[Any], None],
    export_timeout_s: float | None = None,
) -> PrivatePipeline:
    """The providers for the signals the settings turn on. `export_timeout_s` caps each
    OTLP export (its retries included): set when the pipeline is built during the exit, where
    the exports run on the exiting thread itself."""
    environ = settings.environ
    resource = _resource(environ)
    pipeline = PrivatePipeline(None, None, None)
    if settings.exporters.get("traces"):
        tracer_provider = TracerProvider(resource=resource, shutdown_on_exit=False)
        for name in settings.exporters["traces"]:
            spans = FencedSpanExporter(_exporter("traces", name, environ, export_timeout_s), stats)
            tracer_provider.add_span_processor(_processor(pipeline, "traces", spans, stats))
        pipeline.tracer_provider = tracer_provider
    if settings.exporters.get("logs"):
        logger_provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
        for name in settings.exporters["logs"]:
            logs = FencedLogExporter(_exporter("logs", name, environ, export_timeout_s), stats)
            logger_provider.add_log_record_processor(_processor(pipeline, "logs", logs, stats))
        pipeline.logger_provider = logger_provider
    if settings.exporters.get("metrics"):
        interval = _interval_ms(environ, "OTEL_METRIC_EXPORT_INTERVAL", 60_000)
        readers = [
            _metric_reader(
                FencedMetricExporter(_exporter("metrics", name, environ, export_timeout_s), stats),
                interval,
            )
            for name in settings.exporters["metrics"]
        ]
        pipeline.meter_provider = MeterProvider(
            metric_readers=readers, resource=resource, shutdown_on_exit=False
        )
        register_instruments(pipeline.meter_provider)
    silence_exporter_logs()
    return pipeline


def _processor(pipeline: PrivatePipeline, signal: str, fenced: Any, stats: TelemetryStats) -> Any:
    """A batch processor; or, when its export thread cannot be started, a synchronous one
    over a HeldExporter that the exit flush sends."""
    limit = stats.queue_limit
    try:
        if signal == "traces":
            return BatchSpanProcessor(fenced, max_queue_size=limit)
        return BatchLogRecordProcessor(fenced, max_queue_size=limit)
    except RuntimeError:  # no new thread: Python is exiting (3.12), or out of threads
        held = HeldExporter(fenced, limit, stats, signal)
        pipeline.held.append(held)
        if signal == "traces":
            return SimpleSpanProcessor(held)
        return SimpleLogRecordProcessor(held)


def _metric_reader(exporter: MetricExporter, interval_ms: float) -> PeriodicExportingMetricReader:
    try:
        return PeriodicExportingMetricReader(exporter, export_interval_millis=interval_ms)
    except RuntimeError:
        # No thread for periodic exports (see HeldExporter): an infinite interval starts
        # none, and the exit flush collects and exports on the flushing thread.
        return PeriodicExportingMetricReader(exporter, export_interval_millis=math.inf)


class _DropOwnExportLogs(logging.Filter):
    """Exporter failures on appshield's own export threads are counted as dropped; the SDK
    also logs them, and with no handler configured Python's last-resort handler would print
    them to the app's stderr. The app's own OpenTelemetry logging is left alone."""

    def filter(self, record: logging.LogRecord) -> bool:
        from appshield._threadstate import thread_state

        return not thread_state.busy


_FILTER = _DropOwnExportLogs()


def silence_exporter_logs() -> None:
    names = [
        n
        for n in list(logging.root.manager.loggerDict)
        if n.startswith(("opentelemetry", "urllib3", "requests"))
    ]
    for name in names:
        log = logging.getLogger(name)
        if _FILTER not in log.filters:
            log.addFilter(_FILTER)
