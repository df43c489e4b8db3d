"""The Flask and worker examples, each run shielded in its own process (`appshield run`),
with the app's own OpenTelemetry pipeline exporting to memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.examples._ready import require

ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("_otel_driver.py")


def run_scenario(name: str, policy: Path, workdir: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPSHIELD_", "OTEL_"))}
    done = subprocess.run(
        [sys.executable, "-m", "appshield", "run", "--policy", str(policy), "--",
         sys.executable, str(DRIVER), name, str(workdir)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def violation_spans(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in result["spans"] if s["name"] == "appshield.violation"]


@pytest.fixture(autouse=True)
def _landed() -> None:
    require("loader", "engine", "hooks", "run")


def test_flask_command_injection_blocked_inside_the_request_trace(tmp_path: Path) -> None:
    result = run_scenario("flask", ROOT / "examples/flask_service/appshield.yaml", tmp_path)
    attack, safe = result["responses"]
    assert attack["status"] == 403
    assert "no-shell" in attack["body"]["detail"]
    assert safe["status"] == 200 and "localhost" in safe["body"]["result"]

    (violation,) = violation_spans(result)
    server = next(s for s in result["spans"] if s["name"] == "GET /lookup")
    assert server["kind"] == "SERVER"
    assert violation["trace_id"] == server["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert violation["parent_id"] == server["span_id"]
    assert violation["status"] == "ERROR"
    attributes = violation["attributes"]
    assert attributes["security_rule.name"] == "no-shell"
    assert attributes["security_rule.ruleset.name"] == "flask-service"
    assert attributes["appshield.blocked"] is True
    assert attributes["appshield.api"] == "subprocess.Popen"
    assert "appshield.violation" in server["events"]  # the event on the request span
    assert result["violations_counted"] == 1


def test_worker_violation_without_a_request(tmp_path: Path) -> None:
    (tmp_path / "home" / ".aws").mkdir(parents=True)
    (tmp_path / "home" / ".aws" / "credentials").write_text("aws_secret_access_key = x\n")
    (tmp_path / "report.csv").write_text("day,total\nmonday,3\n")
    result = run_scenario("worker", ROOT / "examples/worker/appshield.yaml", tmp_path)
    statuses = [(o["job"], o["status"]) for o in result["outcomes"]]
    assert statuses == [("job-1", "done"), ("job-2", "refused"), ("job-3", "done")]
    assert "no-credentials" in result["outcomes"][1]["detail"]
    assert not (tmp_path / "out" / "credentials.gz").exists()

    (violation,) = violation_spans(result)
    assert violation["parent_id"] is None  # a root span: there was no request
    assert violation["attributes"]["security_rule.name"] == "no-credentials"
    assert violation["attributes"]["file.path"].endswith("/.aws/credentials")
    assert result["violations_counted"] == 1
