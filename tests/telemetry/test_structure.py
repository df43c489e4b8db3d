"""Structure of what one violation produces, through real SDK providers with in-memory
exporters: names, parentage, attributes, status, the event, the log record, the counter."""

from __future__ import annotations

import logging
import time

import pytest
from opentelemetry.trace import SpanKind, StatusCode

from appshield.telemetry import TelemetryReporter
from tests.telemetry.conftest import SAMPLE_OPS, Pipeline, make_settings, violation


def test_span_is_child_of_active_span_with_error_status(
    pipeline: Pipeline, reporter: TelemetryReporter
) -> None:
    tracer = pipeline.tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("GET /checkout") as parent:
        reporter.report(violation())
    spans = {s.name: s for s in pipeline.spans.get_finished_spans()}
    child = spans["appshield.violation"]
    assert child.parent is not None
    assert child.parent.span_id == parent.get_span_context().span_id
    assert child.context.trace_id == parent.get_span_context().trace_id
    assert child.kind is SpanKind.INTERNAL
    assert child.status.status_code is StatusCode.ERROR
    assert child.instrumentation_scope.name == "appshield"


def test_alert_is_not_an_error_and_root_without_active_span(
    pipeline: Pipeline, reporter: TelemetryReporter
) -> None:
    reporter.report(violation(action="alert", blocked=False, rule="watch"))
    (span,) = pipeline.spans.get_finished_spans()
    assert span.parent is None
    assert span.status.status_code is StatusCode.UNSET
    assert span.attributes["appshield.action"] == "alert"
    assert span.attributes["appshield.blocked"] is False


def test_event_on_active_recording_span(pipeline: Pipeline, reporter: TelemetryReporter) -> None:
    tracer = pipeline.tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("job"):
        reporter.report(violation())
    job = next(s for s in pipeline.spans.get_finished_spans() if s.name == "job")
    (event,) = job.events
    assert event.name == "appshield.violation"
    assert event.attributes["security_rule.name"] == "no-writes"


COMMON = {
    "security_rule.name": "no-writes",
    "security_rule.ruleset.name": "test-policy",
    "appshield.action": "deny",
    "appshield.blocked": True,
    "appshield.mode": "enforce",
    "code.function.name": "handler",
    "code.file.path": "/srv/app/main.py",
    "code.line.number": 42,
}

TARGETS = {
    "process": {
        "security_rule.category": "process",
        "process.executable.name": "curl",
        "process.executable.path": "/usr/bin/curl",
        "process.command_args": ("curl", "--token=[REDACTED]", "https://x.io"),
    },
    "file": {"security_rule.category": "file", "file.path": "/etc/shadow"},
    "network": {
        "security_rule.category": "network",
        "server.address": "evil.example",
        "server.port": 443,
        "network.transport": "tcp",
        "network.peer.address": "203.0.113.9",
    },
    "import": {"security_rule.category": "import", "appshield.module": "ctypes"},
}


@pytest.mark.parametrize("category", sorted(TARGETS))
def test_attributes_per_category(
    pipeline: Pipeline, reporter: TelemetryReporter, category: str
) -> None:
    reporter.report(violation(SAMPLE_OPS[category], api=f"api.{category}"))
    (span,) = pipeline.spans.get_finished_spans()
    attrs = dict(span.attributes)
    for key, value in {**COMMON, **TARGETS[category]}.items():
        assert attrs[key] == value, key
    assert attrs["appshield.api"] == f"api.{category}"
    assert "appshield.suppressed_count" not in attrs


def test_log_record_through_logs_api(pipeline: Pipeline, reporter: TelemetryReporter) -> None:
    tracer = pipeline.tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("req"):
        reporter.report(violation())
    (data,) = pipeline.logs.get_finished_logs()
    record = data.log_record
    span = next(s for s in pipeline.spans.get_finished_spans() if s.name == "appshield.violation")
    assert record.event_name == "appshield.violation"
    assert record.severity_text == "WARN"
    assert record.attributes["security_rule.name"] == "no-writes"
    assert record.trace_id == span.context.trace_id
    assert record.span_id == span.context.span_id
    assert "no-writes" in str(record.body)


def test_counter_counts_every_violation_by_category_action_rule(
    pipeline: Pipeline, reporter: TelemetryReporter
) -> None:
    for _ in range(5):
        reporter.report(violation())
    for _ in range(3):
        reporter.report(violation(SAMPLE_OPS["network"], rule="no-net"))
    reporter.report(violation(action="alert", blocked=False, rule="watch"))
    counts = pipeline.counter()
    key = (
        ("appshield.action", "deny"),
        ("security_rule.category", "file"),
        ("security_rule.name", "no-writes"),
    )
    assert counts[key] == 5
    assert sum(counts.values()) == 9
    assert len(counts) == 3
    # repeats were folded: one span per distinct violation
    assert len(pipeline.spans.get_finished_spans()) == 3


def test_warning_on_appshield_logger(
    pipeline: Pipeline, reporter: TelemetryReporter, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="appshield"):
        reporter.report(violation())
        reporter.report(violation())  # a repeat: no second warning
    records = [r for r in caplog.records if r.name == "appshield"]
    assert len(records) == 1
    assert "no-writes" in records[0].getMessage()
    assert records[0].appshield_violation["security_rule.name"] == "no-writes"


def test_appshield_logger_has_only_a_null_handler(reporter: TelemetryReporter) -> None:
    reporter.report(violation())
    handlers = logging.getLogger("appshield").handlers
    assert handlers and all(isinstance(h, logging.NullHandler) for h in handlers)


def test_repeat_after_interval_carries_suppressed_count(pipeline: Pipeline) -> None:
    rep = TelemetryReporter(make_settings(interval_s=0.05), providers=pipeline.providers)
    for _ in range(4):
        rep.report(violation())

    time.sleep(0.06)
    rep.report(violation())
    spans = pipeline.spans.get_finished_spans()
    assert len(spans) == 2
    assert "appshield.suppressed_count" not in spans[0].attributes
    assert spans[1].attributes["appshield.suppressed_count"] == 3


def test_flush_reports_pending_repeats_as_a_summary(pipeline: Pipeline) -> None:
    rep = TelemetryReporter(make_settings(), providers=pipeline.providers)
    for _ in range(10):
        rep.report(violation())
    rep.flush(deadline=time.monotonic() + 5)
    spans = pipeline.spans.get_finished_spans()
    assert len(spans) == 2
    assert spans[1].attributes["appshield.suppressed_count"] == 9
    assert spans[1].attributes["appshield.summary"] is True
    assert spans[1].parent is None


def test_failing_sink_never_raises(pipeline: Pipeline) -> None:
    class Broken:
        def get_tracer(self, *a: object, **k: object) -> object:
            raise RuntimeError("broken provider")

    from appshield.telemetry import Providers

    rep = TelemetryReporter(
        make_settings(), providers=Providers(Broken(), pipeline.providers.logger_provider, None)
    )
    rep.report(violation())  # no exception
    assert len(pipeline.logs.get_finished_logs()) == 1
