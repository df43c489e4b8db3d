"""A violation a distribution caused names it and its version in every sink: span, span
event, log record, the violations counter, the APPSHIELD_LOG line (docs/packages.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appshield.telemetry import TelemetryReporter
from appshield.telemetry.record import violation_record
from tests.telemetry.conftest import Pipeline, make_settings, violation

NAMED = {"appshield.package.name": "evil", "appshield.package.version": "2.0"}


def by_evil(rule: str = "package:evil", **kwargs: object):  # type: ignore[no-untyped-def]
    made = violation(rule=rule, **kwargs)  # type: ignore[arg-type]
    decision = made.decision._replace(package="evil", package_version="2.0")
    return made._replace(decision=decision)


def test_every_sink_names_the_distribution(
    pipeline: Pipeline, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = tmp_path / "v.jsonl"
    reporter = TelemetryReporter(make_settings(log_path=str(log)), providers=pipeline.providers)
    try:
        tracer = pipeline.tracer_provider.get_tracer("app")
        with tracer.start_as_current_span("job"):
            reporter.report(by_evil())
        spans = pipeline.spans.get_finished_spans()
        span = next(s for s in spans if s.name == "appshield.violation")
        job = next(s for s in spans if s.name == "job")
        assert NAMED.items() <= dict(span.attributes or {}).items()
        assert NAMED.items() <= dict(job.events[0].attributes or {}).items()
        (data,) = pipeline.logs.get_finished_logs()
        assert NAMED.items() <= dict(data.log_record.attributes or {}).items()
        counter = pipeline.counter()
        assert any(dict(key).get("appshield.package.name") == "evil" for key in counter)
        assert any(dict(key).get("appshield.package.version") == "2.0" for key in counter)
        reporter.flush_now()
        (line,) = log.read_text().splitlines()
        record = json.loads(line)
        assert (record["package"], record["package_version"]) == ("evil", "2.0")
        assert "distribution evil 2.0)" in caplog.text  # the `appshield` logger's warning
    finally:
        reporter.exit_hooks.disarm()


def test_ordinary_violation_has_no_package_fields() -> None:
    record = violation_record(violation())
    assert "package" not in record and "package_version" not in record


def test_two_distributions_at_one_place_are_not_folded(
    pipeline: Pipeline, reporter: TelemetryReporter
) -> None:
    first = by_evil(rule="packages:default")
    other = first._replace(decision=first.decision._replace(package="other", package_version="1.0"))
    reporter.report(first)
    reporter.report(other)
    spans = [s for s in pipeline.spans.get_finished_spans() if s.name == "appshield.violation"]
    assert {s.attributes["appshield.package.name"] for s in spans} == {"evil", "other"}
