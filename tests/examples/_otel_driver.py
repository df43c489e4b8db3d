"""Runs one example scenario inside a shielded process and prints what happened as JSON.

    python -m appshield run --policy P -- python _otel_driver.py flask|worker WORKDIR

The scenario configures OpenTelemetry the way an application does (its own providers, with
in-memory exporters), so the test sees exactly the spans and metrics appshield reported
through the app's pipeline.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def span_record(span: Any) -> dict[str, Any]:
    parent = span.parent
    return {
        "name": span.name,
        "trace_id": f"{span.context.trace_id:032x}",
        "span_id": f"{span.context.span_id:016x}",
        "parent_id": f"{parent.span_id:016x}" if parent is not None else None,
        "kind": span.kind.name,
        "status": span.status.status_code.name,
        "attributes": {k: _plain(v) for k, v in (span.attributes or {}).items()},
        "events": [e.name for e in span.events],
    }


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def violation_count(reader: InMemoryMetricReader) -> int:
    data = reader.get_metrics_data()
    total = 0
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == "appshield.violations":
                    total += sum(int(p.value) for p in metric.data.data_points)
    return total


def setup() -> tuple[InMemorySpanExporter, InMemoryMetricReader]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    return exporter, reader


def flask_scenario(workdir: Path) -> dict[str, Any]:
    sys.path.insert(0, str(EXAMPLES / "flask_service"))
    import app as flask_app

    client = flask_app.create_app().test_client()
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    attack = client.get(
        "/lookup", query_string={"host": "localhost;id"}, headers={"traceparent": traceparent}
    )
    safe = client.get("/lookup-safe", query_string={"host": "localhost"})
    return {
        "responses": [
            {"status": attack.status_code, "body": attack.get_json()},
            {"status": safe.status_code, "body": safe.get_json()},
        ]
    }


def worker_scenario(workdir: Path) -> dict[str, Any]:
    sys.path.insert(0, str(EXAMPLES / "worker"))
    import worker

    # The files were made by the test, outside the shield (the policy protects `.aws`).
    secret = workdir / "home" / ".aws" / "credentials"
    report = workdir / "report.csv"
    jobs = [
        {"id": "job-1", "source": str(report)},
        {"id": "job-2", "source": str(secret)},
        {"id": "job-3", "source": str(report)},
    ]
    outcomes = worker.run_jobs(jobs, workdir / "out")
    return {"outcomes": [o.__dict__ for o in outcomes]}


SCENARIOS = {"flask": flask_scenario, "worker": worker_scenario}


def main() -> None:
    exporter, reader = setup()
    result = SCENARIOS[sys.argv[1]](Path(sys.argv[2]))
    result["spans"] = [span_record(s) for s in exporter.get_finished_spans()]
    result["violations_counted"] = violation_count(reader)
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
