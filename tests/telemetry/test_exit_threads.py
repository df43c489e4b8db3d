"""The way out where no thread can be started (Python 3.12+): the flush thread started ahead
of time, and the held exporter that stands in for a batch processor's thread."""

from __future__ import annotations

import threading
import time

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from appshield.telemetry.lifecycle import ExitHooks
from appshield.telemetry.standalone import FencedSpanExporter, HeldExporter
from appshield.telemetry.stats import TelemetryStats


def _spans(count: int) -> list:  # type: ignore[type-arg]
    provider = TracerProvider(shutdown_on_exit=False)
    finished = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(finished))
    tracer = provider.get_tracer("test")
    for i in range(count):
        tracer.start_span(f"s{i}").end()
    return list(finished.get_finished_spans())


def test_held_exporter_sends_only_when_flushed_and_counts_what_it_cannot_hold() -> None:
    stats = TelemetryStats()
    sink = InMemorySpanExporter()
    held = HeldExporter(FencedSpanExporter(sink, stats), 2, stats, "traces")
    assert held.export(_spans(3)).name == "SUCCESS"  # no I/O on the emitting thread
    assert sink.get_finished_spans() == ()
    assert stats.snapshot()[1] == {"traces": 1}
    held.send(time.monotonic() - 1)  # past the deadline: nothing starts
    assert sink.get_finished_spans() == ()
    held.send(time.monotonic() + 5)
    assert [s.name for s in sink.get_finished_spans()] == ["s0", "s1"]


def test_the_exit_flush_runs_on_the_thread_started_ahead_and_the_wait_is_bounded() -> None:
    release = threading.Event()
    ran_on: list[str] = []

    def slow_flush(deadline: float) -> None:
        ran_on.append(threading.current_thread().name)
        release.wait(10)  # an export stuck on a dead collector

    hooks = ExitHooks(slow_flush, 0.3)
    hooks.arm(with_signal=True)  # the first report with OpenTelemetry output
    try:
        flushers = [t for t in threading.enumerate() if t.name == "appshield-telemetry-flush"]
        assert len(flushers) == 1
        started = time.monotonic()
        hooks.at_exit()
        first = time.monotonic() - started
        hooks.at_exit()  # a second hook shares the deadline: no new wait
        assert time.monotonic() - started < 0.3 + 0.5
        assert 0.2 < first < 0.3 + 0.5
        assert ran_on == ["appshield-telemetry-flush"]
    finally:
        release.set()
        hooks.disarm()
    flushers[0].join(5)
    assert not flushers[0].is_alive()  # disarm ends it
