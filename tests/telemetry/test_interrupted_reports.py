"""Reports survive an exception that lands anywhere inside them (a raising signal handler).

A Python signal handler runs between any two lines of appshield's reporting code, and what
it raises propagates from there. Each case below drives a real shield and reporter in monitor
mode (each allowed violation is reported, then the operation goes on) and injects one
exception at the k-th Python call made inside the shield, for every k: by a tracer, which
raises where that function starts, exactly where a signal handler's exception lands (3.11
and later check for signals on entering a function and on loops' backward jumps).

The property: every operation that went on (`enforce` returned) is in `APPSHIELD_LOG` once
the process's exit drain has run, in full or inside a summary of folded repeats. Duplicates
are allowed (an interrupted line is written again); losses are not. The reporter keeps two
keys only, so the cases also go through LRU evictions, whose summaries carry folded repeats.
"""

from __future__ import annotations

import gc
import io
import json
import logging
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from appshield.operations import FileOp
from appshield.policy import Policy
from appshield.runtime import Shield, ShieldConfig
from appshield.telemetry import TelemetryReporter
from tests.telemetry.conftest import make_settings

MONITOR = {
    "version": 1,
    "name": "interrupted",
    "mode": "monitor",
    "defaults": {"process": "allow", "file": "allow", "network": "allow", "import": "allow"},
    "rules": [
        {"id": "no-secrets", "category": "file", "action": "deny", "match": {"path": "/secret/**"}}
    ],
}

# A, B, a repeat of A (folded), C (evicts A, which holds a folded repeat: a summary), D
# (evicts B), a repeat of C: every path of the reporter, with two keys.
SEQUENCE = ["a", "b", "a", "c", "d", "c", "e"]


class Injected(Exception):
    """What a signal handler raises (an `Exception`: the sinks' fences catch those)."""


class HardInjected(BaseException):
    """What a signal handler raises that no fence catches (like KeyboardInterrupt)."""


class _Injector:
    """A tracer that counts the lines executed under it and raises `kind` once, where the
    k-th one starts (k None: never): what a signal handler arriving there would raise."""

    def __init__(self, k: int | None, kind: type[BaseException]) -> None:
        self.k, self.kind, self.calls = k, kind, 0
        self.files: list[str] = []  # the file of each call, when k is None

    def __call__(self, frame: FrameType, event: str, arg: object) -> Any:
        if event == "call":
            self.calls += 1
            if self.k is None:
                self.files.append(frame.f_code.co_filename)
            elif self.calls == self.k:
                raise self.kind(f"call {self.k}")  # CPython then unsets the tracer
        return self


def _run(tmp_path: Path, k: int | None, kind: type[BaseException]) -> _Injector:
    """Run SEQUENCE with an injection at call k (None: none); check that nothing that went
    on is missing from the log; return the injector (what it counted)."""
    log = tmp_path / f"v-{k}-{kind.__name__}.jsonl"
    reporter = TelemetryReporter(make_settings(log_path=str(log), max_keys=2))
    shield = Shield(ShieldConfig(Policy.from_mapping(MONITOR)), reporter)
    injector = _Injector(k, kind)
    went_on: Counter[str] = Counter()
    # No collection meanwhile: its weakref callbacks would shift the count of calls (and
    # take the injected exception, which Python then reports as unraisable).
    collecting = gc.isenabled()
    gc.disable()
    try:
        for name in SEQUENCE:
            op = FileOp(f"/secret/{name}", "write")
            sys.settrace(injector)
            try:
                shield.enforce(op, "open")
            except (Injected, HardInjected):
                continue  # the operation did not happen (the exception reached the app)
            finally:
                sys.settrace(None)
            went_on[op.target] += 1
        shield._drain_pending()  # what the exit runs
    finally:
        sys.settrace(None)
        if collecting:
            gc.enable()
        reporter.exit_hooks.disarm()
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    in_full = {line["target"] for line in lines if not line.get("summary")}
    accounted: Counter[str] = Counter()
    for line in lines:
        accounted[line["target"]] += (0 if line.get("summary") else 1) + line.get(
            "suppressed_count", 0
        )
    where = f"{kind.__name__} injected at call {k}"
    # Each one in full at least once: a repeat is folded only after its first full report.
    assert set(went_on) <= in_full, f"{where}: never reported in full: {set(went_on) - in_full}"
    short = {t: (n, accounted[t]) for t, n in went_on.items() if accounted[t] < n}
    assert not short, f"{where}: (went on, reported or counted in a summary): {short}"
    if k is None:
        assert set(went_on) == {f"/secret/{name}" for name in SEQUENCE}
    return injector


@pytest.fixture(autouse=True)
def _logger_of_its_own() -> Iterator[None]:
    """The `appshield` logger writes to a handler of the test's own (the logger sink's code
    is interrupted too), not to pytest's capture, which would keep a thousand records."""
    log = logging.getLogger("appshield")
    handler = logging.StreamHandler(io.StringIO())
    log.addHandler(handler)
    propagate, log.propagate = log.propagate, False
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.propagate = propagate


def _calls(tmp_path: Path) -> range:
    """The calls to inject at: every one the sequence makes once the process is warm. (The
    very first report also compiles regular expressions, some 5,000 calls of `re`'s own
    parser, run once per process: an exception there reaches appshield as one raised by the
    `re.compile` call, like any other call's.)"""
    _run(tmp_path, None, Injected)  # warm: the caches the first report fills
    files = _run(tmp_path, None, Injected).files
    assert _run(tmp_path, None, Injected).files == files  # the same calls every time
    assert sum("/appshield/" in name for name in files) > 100  # the tracer sees the reporting
    return range(1, len(files) + 1)


@pytest.mark.parametrize("kind", [Injected, HardInjected])
def test_a_report_interrupted_at_any_call_is_not_lost(
    tmp_path: Path, kind: type[BaseException]
) -> None:
    for k in _calls(tmp_path):
        _run(tmp_path, k, kind)
