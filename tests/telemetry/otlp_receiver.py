"""A tiny OTLP/HTTP receiver on 127.0.0.1 that decodes the protobuf requests.

Modes: "ok" (200), "error" (500 on every request), "slow" (sleeps `delay` seconds, then 200).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

_TYPES: dict[str, Any] = {
    "/v1/traces": ExportTraceServiceRequest,
    "/v1/logs": ExportLogsServiceRequest,
    "/v1/metrics": ExportMetricsServiceRequest,
}


class Receiver:
    def __init__(self, mode: str = "ok", delay: float = 0.0) -> None:
        self.mode = mode
        self.delay = delay
        self.requests: dict[str, list[Any]] = {path: [] for path in _TYPES}
        self.hits = 0
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    @property
    def endpoint(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def spans(self) -> list[Any]:
        with self.lock:
            return [
                span
                for request in self.requests["/v1/traces"]
                for rs in request.resource_spans
                for ss in rs.scope_spans
                for span in ss.spans
            ]

    def log_records(self) -> list[Any]:
        with self.lock:
            return [
                record
                for request in self.requests["/v1/logs"]
                for rl in request.resource_logs
                for sl in rl.scope_logs
                for record in sl.log_records
            ]

    def metric_points(self, name: str) -> list[Any]:
        with self.lock:
            return [
                point
                for request in self.requests["/v1/metrics"]
                for rm in request.resource_metrics
                for sm in rm.scope_metrics
                for metric in sm.metrics
                if metric.name == name
                for point in metric.sum.data_points
            ]

    def handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    receiver.hits += 1
                if receiver.mode == "slow":
                    time.sleep(receiver.delay)
                if receiver.mode == "error":
                    self.send_response(500)
                    self.end_headers()
                    return
                kind = _TYPES.get(self.path)
                if kind is not None:
                    message = kind()
                    message.ParseFromString(body)
                    with receiver.lock:
                        receiver.requests[self.path].append(message)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


@contextmanager
def running(mode: str = "ok", delay: float = 0.0) -> Iterator[Receiver]:
    receiver = Receiver(mode, delay)
    server = ThreadingHTTPServer(("127.0.0.1", 0), receiver.handler())
    server.daemon_threads = True
    receiver.server = server
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


def attributes(proto_attrs: Any) -> dict[str, Any]:
    """OTLP KeyValue list -> plain dict."""
    out: dict[str, Any] = {}
    for kv in proto_attrs:
        value = kv.value
        which = value.WhichOneof("value")
        if which == "array_value":
            out[kv.key] = [getattr(v, v.WhichOneof("value")) for v in value.array_value.values]
        else:
            out[kv.key] = getattr(value, which) if which else None
    return out
