"""Shared by the record and replay tests: run commands with a recording, replay through the
real command, and remove one rule from a policy file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without appshield's and OpenTelemetry's settings, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPSHIELD_", "OTEL_"))}
    env.update({"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"})
    env["OTEL_LOGS_EXPORTER"] = "none"
    env.update(extra)
    return env


def appshield(*args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appshield", *args],
        capture_output=True, text=True, timeout=120, cwd=cwd, env=clean_env(**env),
    )  # fmt: skip


def replay_json(policy: Path, *recordings: Path) -> tuple[int, dict[str, Any]]:
    """`appshield replay --json`: its exit code and its report."""
    done = appshield("replay", "--policy", str(policy), "--json", *map(str, recordings))
    assert done.returncode in (0, 1), done.stdout + done.stderr
    return done.returncode, json.loads(done.stdout)


def without_rule(policy: Path, rule: str, out: Path) -> Path:
    """`policy` with the rule `rule` removed (written to `out`, next to it: `extends` and
    `{policy_dir}` resolve the same)."""
    data = yaml.safe_load(policy.read_text())
    before = len(data["rules"])
    data["rules"] = [r for r in data["rules"] if r["id"] != rule]
    assert len(data["rules"]) == before - 1, rule
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out


def changed_ops(groups: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(the operation as JSON text, its API) for every change in the groups of a report."""
    return sorted(
        (json.dumps(change["op"], sort_keys=True), change["api"])
        for group in groups
        for change in group["changes"]
    )


def recorded_ops(recording: Path, rule: str) -> list[tuple[str, str]]:
    """The same, for the distinct entries recorded as decided by `rule`."""
    from appshield.record.format import op_to_json
    from appshield.record.replay import load_recordings

    loaded = load_recordings([str(recording)])
    return sorted(
        (json.dumps(op_to_json(entry.operation), sort_keys=True), entry.api)
        for entry, _ in loaded.entries
        if entry.decision is not None and entry.decision.rule_id == rule
    )
