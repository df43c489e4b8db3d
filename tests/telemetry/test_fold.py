"""Repeats folded before a report is built (`Shield.enforce` -> `reporter.fold`): each one is
still counted exactly once, and what is folded comes back in the summaries."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from appshield.operations import FileOp
from appshield.policy import Policy
from appshield.runtime import Shield, ShieldConfig
from appshield.telemetry import DeferredReporter, TelemetryReporter
from appshield.telemetry.aggregate import Aggregator, violation_key
from tests.telemetry.conftest import make_settings, violation

S = 1_000_000_000
DENY = {
    "version": 1,
    "name": "fold-test",
    "defaults": {"process": "allow", "file": "allow", "network": "allow", "import": "allow"},
    "rules": [
        {"id": "no-secrets", "category": "file", "action": "deny", "match": {"path": "/secret/**"}}
    ],
}


def test_fold_needs_a_reported_first_and_stays_in_the_interval() -> None:
    agg = Aggregator(interval_s=10)
    v = violation()
    key = violation_key(v)
    assert not agg.fold(key, 0, 1)  # never reported: must go through admit
    assert agg.admit(v, 0) == (0, None)
    assert agg.fold(key, 5 * S, v.time_ns + 7)
    assert not agg.fold(key, 10 * S, v.time_ns + 8)  # the interval is over: report again
    (summary,) = agg.drain()
    assert summary.suppressed_count == 1
    assert summary.violation.time_ns == v.time_ns + 7  # the latest repeat's time
    assert summary.violation.operation == v.operation


def _deny_twice(shield: Shield, op: FileOp, times: int) -> None:
    for _ in range(times):
        with pytest.raises(PermissionError):
            shield.enforce(op, "open")  # one code location
    for _ in range(times):
        with pytest.raises(PermissionError):
            shield.enforce(op, "open")  # another


def test_enforce_counts_every_repeat_once(tmp_path: Path) -> None:
    log = tmp_path / "v.jsonl"
    real = TelemetryReporter(make_settings(log_path=str(log)))
    deferred = DeferredReporter(str(log), {}, None)
    deferred._real = real  # the deferred stand-in, already built
    shield = Shield(ShieldConfig(Policy.from_mapping(DENY)), deferred)
    folded: list[bool] = []
    fold = real.aggregator.fold
    real.aggregator.fold = lambda *a: folded.append(fold(*a)) or folded[-1]  # type: ignore[method-assign]
    op = FileOp("/secret/key", "write")
    _deny_twice(shield, op, 50)
    assert folded.count(True) == 98  # the repeats never reached report()
    assert real.stats.total_violations() == 100
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert len(lines) == 2  # the first of each code location, in full
    assert lines[0]["code"]["file"] == __file__
    assert lines[0]["code"]["line"] != lines[1]["code"]["line"]
    real.flush(time.monotonic() + 2)
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    summaries = [line for line in lines if line.get("summary")]
    assert sum(line["suppressed_count"] for line in summaries) == 98
    assert len(lines) == 4
    real.exit_hooks.disarm()


def test_a_listener_still_sees_every_violation(tmp_path: Path) -> None:
    real = TelemetryReporter(make_settings())
    shield = Shield(ShieldConfig(Policy.from_mapping(DENY)), real)
    seen: list[object] = []
    shield.add_listener(seen.append)
    _deny_twice(shield, FileOp("/secret/key", "write"), 10)
    assert len(seen) == 20
    assert real.stats.total_violations() == 20
    real.exit_hooks.disarm()
