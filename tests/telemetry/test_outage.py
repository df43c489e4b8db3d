"""Exporter outages: down (closed port), slow, and failing with 500s. The app's violating
calls stay within 2x of their cost with a healthy receiver, nothing reaches the app (no
exception, nothing on stderr), memory stays bounded, drops are counted, and the process
exits within a bounded time."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from tests.telemetry.apps import run_app
from tests.telemetry.otlp_receiver import running

N = 3000  # distinct: more than the 2048-record in-flight limit plus one 512-record batch

BODY = f"""
import resource, statistics
times = []
violate("warm")
time.sleep(1.0)  # the private pipeline loads in the background meanwhile
for i in range({N}):
    t = time.perf_counter()
    violate(f"f{{i}}")
    times.append(time.perf_counter() - t)
stats = active_shield().reporter.real.stats
_, dropped = stats.snapshot()
times.sort()
print(json.dumps({{
    "median_us": statistics.median(times) * 1e6,
    "p99_us": times[int(len(times) * 0.99)] * 1e6,
    "violations": stats.total_violations(),
    "dropped": dropped,
    "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    "end": time.time(),
}}))
"""


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(tmp_path: Path, endpoint: str) -> dict[str, Any]:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_METRIC_EXPORT_INTERVAL": "500"}
    started = time.time()
    result = run_app(tmp_path, BODY, env, timeout=60)
    finished = time.time()
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr
    out: dict[str, Any] = json.loads(result.stdout)
    out["exit_s"] = finished - out["end"]
    out["wall_s"] = finished - started
    return out


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    with running() as receiver:
        return _run(tmp_path_factory.mktemp("healthy"), receiver.endpoint)


@pytest.mark.parametrize("mode", ["down", "slow", "error"])
def test_outage_does_not_reach_the_app(
    tmp_path: Path, baseline: dict[str, Any], mode: str, record_property: Any
) -> None:
    if mode == "down":
        figures = _run(tmp_path, f"http://127.0.0.1:{_closed_port()}")
    else:
        with running(mode, delay=3.0) as receiver:
            figures = _run(tmp_path, receiver.endpoint)
    record_property("figures", figures)
    print(mode, figures, "baseline", baseline)
    assert figures["violations"] == N + 1
    assert figures["median_us"] <= 2 * baseline["median_us"] + 20
    # the flush on the way out gives up after APPSHIELD_FLUSH_TIMEOUT (2 s); the rest is the
    # interpreter's own finalisation, measured in the healthy run
    assert figures["exit_s"] < max(5.0, baseline["exit_s"] + 3.0)
    if mode != "slow":  # a slow receiver may keep up with this loop on a loaded machine
        assert sum(figures["dropped"].values()) > 0
    assert figures["maxrss_kb"] < baseline["maxrss_kb"] * 1.5
