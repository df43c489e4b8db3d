"""Floods: a million violations give bounded telemetry and memory and an exact counter.

The default run uses 200,000 violations (about a second); the full million is marked slow.
"""

from __future__ import annotations

import gc
import logging
import time
import tracemalloc

import pytest

from appshield.operations import FileOp
from appshield.telemetry import TelemetryReporter
from tests.telemetry.conftest import Pipeline, make_settings, violation


def _flood(pipeline: Pipeline, total: int) -> dict[str, float]:
    rep = TelemetryReporter(
        make_settings(interval_s=10.0, max_keys=1024), providers=pipeline.providers
    )
    hot = [violation(FileOp(f"/data/hot{k}", "write"), line=k) for k in range(10)]
    started = time.perf_counter()
    for i in range(total):
        rep.report(hot[i % 10])
        if i % 100 == 0:  # a stream of distinct ones too: the LRU map must stay bounded
            rep.report(violation(FileOp(f"/data/cold{i}", "write")))
    elapsed = time.perf_counter() - started
    distinct = total // 100 + (1 if total % 100 else 0)
    rep.flush(time.monotonic() + 5)
    rep.exit_hooks.disarm()

    spans = pipeline.spans.get_finished_spans()
    assert len(rep.aggregator) <= 1024
    counted = sum(pipeline.counter().values())
    assert counted == total + distinct  # every violation counted, none lost
    # bounded telemetry: each hot key at most once per interval, plus its exit summary; the
    # distinct ones once each (plus at most one summary each for evicted hot keys)
    intervals = int(elapsed // 10) + 1
    assert len(spans) <= 10 * (intervals + 1) + distinct + 10
    suppressed = sum(int(s.attributes.get("appshield.suppressed_count", 0)) for s in spans)
    reported = sum(1 for s in spans if not s.attributes.get("appshield.summary"))
    assert reported + suppressed == total + distinct  # nothing folded is forgotten
    return {"per_violation_us": elapsed / (total + distinct) * 1e6, "spans": len(spans)}


def _memory_growth_kb(total: int) -> float:
    """Memory the reporter itself holds on to after a flood of distinct and repeated
    violations (no exporter that keeps records in memory)."""
    rep = TelemetryReporter(make_settings(max_keys=1024))
    hot = violation()
    # pytest keeps every captured log record; the app's handlers are not ours to measure
    logging.getLogger("appshield").propagate = False
    gc.collect()
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    for i in range(total):
        rep.report(hot)
        if i % 10 == 0:
            rep.report(violation(FileOp(f"/data/cold{i}", "write")))
    gc.collect()
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    logging.getLogger("appshield").propagate = True
    rep.exit_hooks.disarm()
    return (current - base) / 1024


def test_flood_200k(pipeline: Pipeline) -> None:
    figures = _flood(pipeline, 200_000)
    print(figures)
    assert figures["per_violation_us"] < 100


def test_memory_is_bounded_by_the_key_map_not_by_the_flood() -> None:
    small, large = _memory_growth_kb(10_000), _memory_growth_kb(30_000)
    print({"growth_kb_10k": small, "growth_kb_30k": large})
    assert large < small * 1.3 + 64
    assert large < 4 * 1024


@pytest.mark.slow
def test_flood_one_million(pipeline: Pipeline) -> None:
    figures = _flood(pipeline, 1_000_000)
    print(figures)
    assert figures["per_violation_us"] < 100
