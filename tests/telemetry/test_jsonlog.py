"""The APPSHIELD_LOG sink: fields, aggregation, stderr mode, and an unwritable path."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from appshield.telemetry import TelemetryReporter, violation_record
from tests.telemetry.conftest import SAMPLE_OPS, make_settings, violation

FIELDS = {"time", "rule", "category", "api", "target", "action", "blocked", "mode", "policy", "pid"}


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_fields_and_aggregation(tmp_path: Path) -> None:
    log = tmp_path / "violations.jsonl"
    rep = TelemetryReporter(make_settings(log_path=str(log), interval_s=0.05))
    for _ in range(5):
        rep.report(violation())
    rep.report(violation(SAMPLE_OPS["network"], rule="no-net", api="socket.connect"))
    time.sleep(0.06)
    rep.report(violation())
    lines = _lines(log)
    assert len(lines) == 3
    first, net, again = lines
    assert FIELDS <= set(first)
    assert first["rule"] == "no-writes" and first["category"] == "file"
    assert first["target"] == "/etc/passwd" and first["blocked"] is True
    assert first["mode"] == "enforce" and first["policy"] == "test-policy"
    assert "suppressed_count" not in first
    assert net["target"] == "evil.example (203.0.113.9):443"
    assert again["suppressed_count"] == 4
    assert str(first["time"]).endswith("Z")


def test_summary_at_flush(tmp_path: Path) -> None:
    log = tmp_path / "v.jsonl"
    rep = TelemetryReporter(make_settings(log_path=str(log)))
    for _ in range(100):
        rep.report(violation())
    rep.flush(time.monotonic() + 2)
    lines = _lines(log)
    assert len(lines) == 2
    assert lines[1]["suppressed_count"] == 99 and lines[1]["summary"] is True
    rep.exit_hooks.disarm()


def test_dash_writes_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    rep = TelemetryReporter(make_settings(log_path="-"))
    rep.report(violation())
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and json.loads(err[0])["rule"] == "no-writes"
    rep.exit_hooks.disarm()


def test_unwritable_log_is_not_an_error(tmp_path: Path) -> None:
    rep = TelemetryReporter(make_settings(log_path=str(tmp_path / "missing-dir" / "v.jsonl")))
    rep.report(violation())  # no exception
    rep.report(violation(line=7))
    rep.exit_hooks.disarm()


def test_violation_record_keeps_the_old_call_shape() -> None:
    record = violation_record(violation(SAMPLE_OPS["process"]))
    assert record["target"] == "curl --token=[REDACTED] https://x.io"
    assert FIELDS <= set(record)


def test_unwritable_log_warns_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "a-file").write_text("")
    target = str(tmp_path / "a-file" / "v.jsonl")
    rep = TelemetryReporter(make_settings(log_path=target))
    with caplog.at_level("WARNING", logger="appshield"):
        for line in range(5):
            rep.report(violation(line=line))
    own = [r.getMessage() for r in caplog.records if "(rule " not in r.getMessage()]
    assert len(own) == 1 and "APPSHIELD_LOG" in own[0] and target in own[0]
