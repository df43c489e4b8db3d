"""APPSHIELD_LOG_FORMAT: OCSF Detection Findings and Falco alerts, each line validated against
its schema (tests/data, written from the published specs), with the aggregation of `json`."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from appshield.decision import Decision
from appshield.operations import FileOp, ImportOp, NetworkOp, Operation
from appshield.report import CallSite, Violation
from appshield.settings import Settings, log_format
from appshield.telemetry import TelemetryReporter
from tests.telemetry.apps import clean_env
from tests.telemetry.conftest import SAMPLE_OPS, make_settings, violation

DATA = Path(__file__).resolve().parent.parent / "data"


def _validator(name: str) -> jsonschema.protocols.Validator:
    schema = json.loads((DATA / name).read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)  # type: ignore[no-any-return]


OCSF = _validator("ocsf_1.1.0_detection_finding.schema.json")
FALCO = _validator("falco_alert.schema.json")

# Every kind of operation, including the ones the samples lack (delete, bind, resolve, a
# native library, a unix socket, a host name OCSF's hostname_t refuses, an undescribed one).
OPERATIONS: dict[str, Operation] = {
    **SAMPLE_OPS,
    "delete": FileOp("/srv/data/x.db", "delete"),
    "write": FileOp("/etc/passwd", "write"),
    "bind": NetworkOp("bind", address="127.0.0.1", port=8080),
    "resolve": NetworkOp("resolve", host="api.example.com", port=443),
    "odd-host": NetworkOp("connect", host="under_score.example", port=80),
    "ipv6": NetworkOp("connect", address="::1", port=9),
    "unix": NetworkOp("connect", transport="unix", path="/run/x.sock"),
    "library": ImportOp(module=None, origin=None, library="/usr/lib/libevil.so"),
    "no-origin": ImportOp(module="json"),
}


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _report_all(path: Path, fmt: str, **kwargs: Any) -> list[dict[str, Any]]:
    rep = TelemetryReporter(make_settings(log_path=str(path), log_format=fmt))
    for name, op in OPERATIONS.items():
        rep.report(violation(op, rule=f"rule-{name}", **kwargs))
    rep.exit_hooks.disarm()
    return _lines(path)


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"action": "alert", "blocked": False}, {"blocked": False, "mode": "monitor"}],
    ids=["blocked", "alert", "monitor"],
)
def test_every_ocsf_line_is_a_valid_detection_finding(tmp_path: Path, kwargs: Any) -> None:
    lines = _report_all(tmp_path / "o.jsonl", "ocsf", **kwargs)
    assert len(lines) == len(OPERATIONS)
    for line in lines:
        OCSF.validate(line)
        assert line["class_uid"] == 2004 and line["type_uid"] == 200401
    by_rule = {line["finding_info"]["analytic"]["uid"]: line for line in lines}
    related = {r: line["finding_info"]["related_events"][0] for r, line in by_rule.items()}
    # The activity class of each operation (class_uid * 100 + activity_id).
    assert related["rule-file"]["type_uid"] == 100102  # File System Activity: Read
    assert related["rule-write"]["type_uid"] == 100103  # Update
    assert related["rule-delete"]["type_uid"] == 100104  # Delete
    assert related["rule-process"]["type_uid"] == 100701  # Process Activity: Launch
    assert related["rule-network"]["type_uid"] == 400101  # Network Activity: Open
    assert related["rule-bind"]["type_uid"] == 400107  # Listen
    assert related["rule-resolve"]["type_uid"] == 400301  # DNS Activity: Query
    assert related["rule-import"]["type_uid"] == 100501  # Module Activity: Load
    assert by_rule["rule-file"]["evidences"][0]["file"]["path"] == "/etc/shadow"
    assert by_rule["rule-network"]["evidences"][0]["dst_endpoint"]["port"] == 443
    odd = by_rule["rule-odd-host"]["evidences"][0]["dst_endpoint"]
    assert odd == {"name": "under_score.example", "port": 80}
    process = by_rule["rule-process"]["evidences"][0]["process"]
    assert process["cmd_line"] == "curl --token=[REDACTED] https://x.io"  # redacted as in json


def test_every_falco_line_is_a_valid_alert(tmp_path: Path) -> None:
    lines = _report_all(tmp_path / "f.jsonl", "falco")
    assert len(lines) == len(OPERATIONS)
    for line in lines:
        FALCO.validate(line)
        assert line["source"] == "appshield" and line["priority"] == "Critical"
        assert line["output_fields"]["security_rule.name"] == line["rule"]
    process = next(x for x in lines if x["rule"] == "rule-process")
    assert (
        process["output_fields"]["process.command_args"] == "curl --token=[REDACTED] https://x.io"
    )
    assert "Critical appshield: blocked process" in process["output"]


def test_shadow_and_undescribed_lines_validate(tmp_path: Path) -> None:
    from appshield.operations import UndescribedOp

    for fmt, validator in (("ocsf", OCSF), ("falco", FALCO)):
        log = tmp_path / f"{fmt}.jsonl"
        rep = TelemetryReporter(make_settings(log_path=str(log), log_format=fmt))
        shadow = Violation(
            FileOp("/etc/hosts", "read"),
            Decision("deny", "no-etc", False, "monitor"),
            "open",
            "candidate",
            CallSite((), "f", "/app.py", 3),
            time.time_ns(),
            123,
            shadow=True,
        )
        odd = violation(UndescribedOp("file", "open", "TypeError"), rule="implicit:undescribable")
        rep.report(shadow)
        rep.report(odd._replace(reason="undescribable"))
        rep.exit_hooks.disarm()
        first, second = _lines(log)
        validator.validate(first)
        validator.validate(second)
        if fmt == "ocsf":
            assert first["unmapped"]["appshield"]["shadow"] is True
            assert first["metadata"]["labels"] == ["shadow"] and first["severity_id"] == 1
            assert first["action"] == "Allowed"  # a shadow blocks nothing
            assert "related_events" not in second["finding_info"]
        else:
            assert first["output_fields"]["appshield.shadow"] is True
            assert "shadow" in first["tags"] and first["priority"] == "Informational"
            assert second["output_fields"]["appshield.reason"] == "undescribable"


@pytest.mark.parametrize("fmt", ["json", "ocsf", "falco"])
def test_same_aggregation_in_every_format(tmp_path: Path, fmt: str) -> None:
    """Five identical violations: one line, then (after the interval) one carrying the four
    folded repeats; at flush, a summary of the repeats still held."""
    log = tmp_path / "v.jsonl"
    rep = TelemetryReporter(make_settings(log_path=str(log), log_format=fmt, interval_s=0.05))
    for _ in range(5):
        rep.report(violation())
    time.sleep(0.06)
    rep.report(violation())
    for _ in range(3):
        rep.report(violation())
    rep.flush(time.monotonic() + 2)
    rep.exit_hooks.disarm()
    lines = _lines(log)
    assert len(lines) == 3

    def suppressed(line: dict[str, Any]) -> Any:
        if fmt == "ocsf":
            OCSF.validate(line)
            return line["unmapped"]["appshield"].get("suppressed_count"), line["count"]
        if fmt == "falco":
            FALCO.validate(line)
            return line["output_fields"].get("appshield.suppressed_count")
        return line.get("suppressed_count")

    if fmt == "ocsf":
        # `count`: the occurrences a line stands for (a summary: only the held repeats).
        assert [suppressed(x) for x in lines] == [(None, 1), (4, 5), (3, 3)]
    else:
        assert [suppressed(x) for x in lines] == [None, 4, 3]


def test_format_setting_is_read_and_checked() -> None:
    assert log_format(None) == "json" and log_format(" OCSF ") == "ocsf"
    assert Settings.from_environ({"APPSHIELD_LOG_FORMAT": "falco"}).check_log_format() == "falco"
    with pytest.raises(ValueError, match="APPSHIELD_LOG_FORMAT must be one of json, ocsf, falco"):
        Settings.from_environ({"APPSHIELD_LOG_FORMAT": "cef"}).check_log_format()


def test_unknown_format_fails_closed_at_start_up(tmp_path: Path) -> None:
    """As an invalid setting: `appshield run` exits 2 before CMD starts; the bootstrap ends
    the process with exit 2 and one line (the app's code never runs)."""
    policy = tmp_path / "p.yaml"
    policy.write_text(
        "version: 1\ndefaults: {process: allow, file: allow, network: allow, import: allow}\n"
    )
    marker = tmp_path / "ran"
    env = clean_env(APPSHIELD_LOG_FORMAT="xml")
    code = f"open({str(marker)!r}, 'w').close()"
    command = [sys.executable, "-c", code]
    run = subprocess.run(
        [sys.executable, "-m", "appshield", "run", "--policy", str(policy), "--", *command],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2, run.stderr
    assert "APPSHIELD_LOG_FORMAT must be one of" in run.stderr
    assert not marker.exists()
    from appshield.activation import BOOTSTRAP_DIR

    env.update(PYTHONPATH=BOOTSTRAP_DIR, APPSHIELD_POLICY=str(policy))
    boot = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert boot.returncode == 2
    assert "refusing to run unshielded" in boot.stderr and "APPSHIELD_LOG_FORMAT" in boot.stderr
    assert not marker.exists()
    # The control: the same run with a known format starts CMD.
    env["APPSHIELD_LOG_FORMAT"] = "ocsf"
    ok = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert ok.returncode == 0, ok.stderr
    assert marker.exists()


def test_the_schemas_reject_what_the_specs_reject(tmp_path: Path) -> None:
    """The control: a line missing a required attribute, or with an invented one, fails."""
    (ocsf,) = _lines_of_one(tmp_path, "ocsf")
    (falco,) = _lines_of_one(tmp_path, "falco")
    OCSF.validate(ocsf)
    FALCO.validate(falco)
    broken = [
        {k: v for k, v in ocsf.items() if k != "finding_info"},
        {**ocsf, "finding": ocsf["finding_info"]},
        {**ocsf, "finding_info": {"title": "no uid"}},
        {**ocsf, "type_uid": 200402},
        {**ocsf, "evidences": [{"file": {"path": "/x"}}]},  # file needs name and type_id
    ]
    for line in broken:
        with pytest.raises(jsonschema.ValidationError):
            OCSF.validate(line)
    for line in ({k: v for k, v in falco.items() if k != "rule"}, {**falco, "priority": "High"}):
        with pytest.raises(jsonschema.ValidationError):
            FALCO.validate(line)


def _lines_of_one(tmp_path: Path, fmt: str) -> list[dict[str, Any]]:
    log = tmp_path / f"one-{fmt}.jsonl"
    rep = TelemetryReporter(make_settings(log_path=str(log), log_format=fmt))
    rep.report(violation())
    rep.exit_hooks.disarm()
    return _lines(log)
