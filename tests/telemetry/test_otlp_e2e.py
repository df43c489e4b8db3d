"""End to end over OTLP/HTTP: real subprocess apps, a real receiver on 127.0.0.1."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.telemetry.apps import run_app
from tests.telemetry.otlp_receiver import attributes, running

# The receiver here is healthy, and these tests are about what arrives, not about the exit
# bound (tests/telemetry/test_outage.py): the default 2 s for the whole exit flush (loading
# the SDK and exporter included) was once too short on a loaded CI machine.
HEALTHY = {"APPSHIELD_FLUSH_TIMEOUT": "30"}


def _wait_for(predicate, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def _by_name(spans: list, name: str) -> list:  # type: ignore[type-arg]
    return [s for s in spans if s.name == name]


def test_standalone_pipeline_carries_attributes_and_remote_parent(tmp_path: Path) -> None:
    """No SDK set up by the app: the private pipeline from OTEL_* exports all three signals,
    and the violation span is a child of the context the app had attached."""
    body = """
    from opentelemetry import context, propagate
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    token = context.attach(propagate.extract({"traceparent": parent}))
    violate()
    context.detach(token)
    print("done")
    """
    with running() as receiver:
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_SERVICE_NAME": "e2e-app",
            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test",
            **HEALTHY,
        }
        result = run_app(tmp_path, body, env)
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
        spans = _by_name(receiver.spans(), "appshield.violation")
        assert len(spans) == 1
        span = spans[0]
        assert span.trace_id.hex() == "0af7651916cd43dd8448eb211c80319c"
        assert span.parent_span_id.hex() == "b7ad6b7169203331"
        attrs = attributes(span.attributes)
        assert attrs["security_rule.name"] == "no-denied-writes"
        assert attrs["security_rule.ruleset.name"] == "telemetry-e2e"
        assert attrs["security_rule.category"] == "file"
        assert attrs["appshield.blocked"] is True
        assert attrs["file.path"].endswith("/denied/x")
        assert attrs["code.file.path"] == str(tmp_path / "app.py")
        assert span.status.code == 2  # STATUS_CODE_ERROR
        resource = attributes(
            receiver.requests["/v1/traces"][0].resource_spans[0].resource.attributes
        )
        assert resource["service.name"] == "e2e-app"
        assert resource["deployment.environment"] == "test"
        logs = receiver.log_records()
        assert [r.event_name for r in logs] == ["appshield.violation"]
        assert logs[0].span_id == span.span_id
        points = receiver.metric_points("appshield.violations")
        assert points and points[-1].as_int == 1


def test_app_configured_sdk_is_used_and_span_is_child_of_app_span(tmp_path: Path) -> None:
    body = """
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    # configured *after* appshield.install(): picked up at report time
    provider = TracerProvider()
    exporter = OTLPSpanExporter(os.environ["EP"] + "/v1/traces")
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    with trace.get_tracer("app").start_as_current_span("GET /checkout") as span:
        violate()
        recording = span.is_recording()
    provider.shutdown()
    print(json.dumps({"recording": recording}))
    """
    with running() as receiver:
        result = run_app(tmp_path, body, {"EP": receiver.endpoint, **HEALTHY})
        assert result.returncode == 0, result.stderr
        spans = receiver.spans()
        app_span = _by_name(spans, "GET /checkout")[0]
        violation = _by_name(spans, "appshield.violation")[0]
        assert violation.trace_id == app_span.trace_id
        assert violation.parent_span_id == app_span.span_id
        events = [e for e in app_span.events if e.name == "appshield.violation"]
        assert len(events) == 1
        assert attributes(events[0].attributes)["security_rule.name"] == "no-denied-writes"
        assert json.loads(result.stdout)["recording"] is True


def test_nothing_set_means_nothing_on_the_network_and_no_sdk(tmp_path: Path) -> None:
    body = """
    violate()
    print(json.dumps(sorted(m for m in sys.modules if m.startswith("opentelemetry"))))
    """
    result = run_app(tmp_path, body)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
    assert result.stderr == ""


def test_exporter_is_exempt_from_a_network_deny_but_the_app_is_not(tmp_path: Path) -> None:
    """network: deny by default. appshield's own OTLP export still gets through (its export
    runs with the busy flag set), while the app's own connection to the same address is
    denied and reported."""
    body = """
    import socket
    violate()
    host, port = os.environ["EP"].rsplit("/", 1)[-1].split(":")
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
        print("app connected")
    except PolicyViolation:
        print("app denied")
    """
    with running() as receiver:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "EP": receiver.endpoint}
        result = run_app(tmp_path, body, env | HEALTHY, network="deny")
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "app denied"
        rules = {
            attributes(s.attributes)["security_rule.name"]
            for s in _by_name(receiver.spans(), "appshield.violation")
        }
        assert rules == {"no-denied-writes", "default:network"}


def test_app_global_providers_for_all_signals_no_private_pipeline(tmp_path: Path) -> None:
    """The app configured traces, logs and metrics (in memory) before the violation: all
    three carry it, and appshield builds no pipeline of its own even with OTEL_* set."""
    body = """
    import threading
    from opentelemetry import _logs, metrics, trace
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    spans, logs = InMemorySpanExporter(), InMemoryLogRecordExporter()
    reader = InMemoryMetricReader()
    tp = TracerProvider(); tp.add_span_processor(SimpleSpanProcessor(spans))
    lp = LoggerProvider(); lp.add_log_record_processor(SimpleLogRecordProcessor(logs))
    trace.set_tracer_provider(tp)
    _logs.set_logger_provider(lp)
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    for _ in range(3):
        violate()
    data = reader.get_metrics_data()
    total = sum(
        p.value
        for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
        if m.name == "appshield.violations" for p in m.data.data_points
    )
    print(json.dumps({
        "spans": [s.name for s in spans.get_finished_spans()],
        "logs": [r.log_record.event_name for r in logs.get_finished_logs()],
        "count": total,
        "threads": sorted(t.name for t in threading.enumerate()),
    }))
    """
    result = run_app(tmp_path, body, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"})
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["spans"] == ["appshield.violation"]
    assert out["logs"] == ["appshield.violation"]
    assert out["count"] == 3
    assert "appshield-telemetry-init" not in out["threads"]
