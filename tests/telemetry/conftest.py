"""Shared helpers: real SDK providers with in-memory exporters, and Violation factories."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from appshield.decision import Decision
from appshield.operations import FileOp, ImportOp, NetworkOp, Operation, ProcessOp
from appshield.report import CallSite, Violation
from appshield.telemetry import Providers, TelemetryReporter, TelemetrySettings


@dataclass
class Pipeline:
    spans: InMemorySpanExporter
    logs: InMemoryLogRecordExporter
    metrics: InMemoryMetricReader
    tracer_provider: TracerProvider
    providers: Providers

    def counter(self, name: str = "appshield.violations") -> dict[tuple[Any, ...], int]:
        out: dict[tuple[Any, ...], int] = {}
        data = self.metrics.get_metrics_data()
        if data is None:
            return out
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == name:
                        for point in metric.data.data_points:
                            out[tuple(sorted(point.attributes.items()))] = point.value
        return out


@pytest.fixture
def pipeline() -> Iterator[Pipeline]:
    spans = InMemorySpanExporter()
    logs = InMemoryLogRecordExporter()
    reader = InMemoryMetricReader()
    tp = TracerProvider(shutdown_on_exit=False)
    tp.add_span_processor(SimpleSpanProcessor(spans))
    lp = LoggerProvider(shutdown_on_exit=False)
    lp.add_log_record_processor(SimpleLogRecordProcessor(logs))
    mp = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    yield Pipeline(spans, logs, reader, tp, Providers(tp, lp, mp))
    tp.shutdown()
    lp.shutdown()
    mp.shutdown()


@pytest.fixture(autouse=True)
def _give_back_process_hooks() -> Iterator[None]:
    """Reporters made in-process arm atexit and SIGTERM; give both back after each test so
    the pytest process is left as it was."""
    before = signal.getsignal(signal.SIGTERM)
    yield
    from appshield.telemetry import reporter

    for rep in list(reporter._live):
        rep.exit_hooks.disarm()
    signal.signal(signal.SIGTERM, before)


def make_settings(**overrides: Any) -> TelemetrySettings:
    base: dict[str, Any] = {"exporters": {}, "environ": {}}
    base.update(overrides)
    return TelemetrySettings(**base)


@pytest.fixture
def reporter(pipeline: Pipeline) -> Iterator[TelemetryReporter]:
    rep = TelemetryReporter(make_settings(), providers=pipeline.providers)
    yield rep
    rep.exit_hooks.disarm()


def violation(
    operation: Operation | None = None,
    *,
    rule: str = "no-writes",
    action: str = "deny",
    blocked: bool = True,
    mode: str = "enforce",
    api: str = "open",
    line: int = 42,
    policy: str = "test-policy",
) -> Violation:
    op = operation if operation is not None else FileOp("/etc/passwd", "write")
    return Violation(
        op,
        Decision(action, rule, blocked, mode),  # type: ignore[arg-type]
        api,
        policy,
        CallSite(("app.main",), "handler", "/srv/app/main.py", line),
        time.time_ns(),
        os.getpid(),
    )


SAMPLE_OPS: dict[str, Operation] = {
    "process": ProcessOp("/usr/bin/curl", ("curl", "--token=abc123", "https://x.io")),
    "file": FileOp("/etc/shadow", "read"),
    "network": NetworkOp("connect", host="evil.example", address="203.0.113.9", port=443),
    "import": ImportOp(module="ctypes", origin="/usr/lib/python3.11/ctypes/__init__.py"),
}
