"""A small Flask service with a command injection in it, shielded by appshield.

`/lookup?host=NAME` runs `getent hosts NAME` through a shell, the classic mistake: a request
for `/lookup?host=localhost;id` runs `id` too. Under `appshield.yaml` the shell never starts:
appshield raises `PolicyViolation` (a `PermissionError`) before it does, the handler answers
403, and the violation appears as an `appshield.violation` span inside the request's trace.
`/lookup-safe` does the same lookup without a shell, and keeps working.

Run it (spans printed on the console):

    appshield run --policy examples/flask_service/appshield.yaml -- \
        python examples/flask_service/app.py
    curl 'http://127.0.0.1:5000/lookup?host=localhost;id'       # 403, and a violation span
    curl 'http://127.0.0.1:5000/lookup-safe?host=localhost'     # 200

The app sets up OpenTelemetry itself (`setup_tracing`); appshield then reports through the
app's own tracer provider. Each request gets a server span, extracted from `traceparent`
when the caller sent one.
"""

from __future__ import annotations

import os
import subprocess
from typing import Any

from flask import Flask, g, jsonify, request
from opentelemetry import context, propagate, trace
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

tracer = trace.get_tracer("examples.flask_service")


def lookup_with_shell(host: str) -> str:
    # VULNERABLE on purpose: `host` reaches a shell command line unquoted.
    done = subprocess.run(
        f"getent hosts {host}", shell=True, capture_output=True, text=True, check=False
    )
    return done.stdout


def lookup_without_shell(host: str) -> str:
    done = subprocess.run(["getent", "hosts", host], capture_output=True, text=True, check=False)
    return done.stdout


def _start_server_span() -> None:
    parent = propagate.extract(request.headers)
    route = request.url_rule.rule if request.url_rule else request.path
    span = tracer.start_span(
        f"{request.method} {route}",
        context=parent,
        kind=SpanKind.SERVER,
        attributes={"http.request.method": request.method, "http.route": route},
    )
    g.otel_span = span
    g.otel_token = context.attach(trace.set_span_in_context(span))


def _end_server_span(error: BaseException | None) -> None:
    span = g.pop("otel_span", None)
    token = g.pop("otel_token", None)
    if span is None:
        return
    if error is not None:
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, type(error).__name__))
    span.end()
    if token is not None:
        context.detach(token)


def create_app() -> Flask:
    app = Flask(__name__)
    app.before_request(_start_server_span)
    app.teardown_request(_end_server_span)

    @app.after_request
    def record_status(response: Any) -> Any:
        span = g.get("otel_span")
        if span is not None:
            span.set_attribute("http.response.status_code", response.status_code)
            if response.status_code >= 500:
                span.set_status(Status(StatusCode.ERROR))
        return response

    @app.errorhandler(PermissionError)
    def forbidden(error: PermissionError) -> Any:
        # appshield's PolicyViolation is a PermissionError: handled like an OS-level denial.
        span = g.get("otel_span")
        if span is not None:
            span.set_status(Status(StatusCode.ERROR, "forbidden"))
        return jsonify(error="forbidden", detail=str(error)), 403

    @app.get("/lookup")
    def lookup() -> Any:
        return jsonify(result=lookup_with_shell(request.args.get("host", "")))

    @app.get("/lookup-safe")
    def lookup_safe() -> Any:
        return jsonify(result=lookup_without_shell(request.args.get("host", "")))

    @app.get("/healthz")
    def healthz() -> Any:
        return jsonify(status="ok")

    return app


def setup_tracing(processor: SpanProcessor | None = None) -> TracerProvider:
    """The app's own OpenTelemetry setup (console output unless told otherwise)."""
    provider = TracerProvider()
    provider.add_span_processor(processor or SimpleSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(provider)
    return provider


if __name__ == "__main__":
    setup_tracing()
    create_app().run(host="127.0.0.1", port=int(os.environ.get("PORT", "5000")))
