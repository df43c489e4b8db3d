"""The demo app (examples/demo.py) recorded for real, then replayed: against its own policy
nothing is new; with one allow rule removed exactly that rule's operations are newly
denied, and nothing else changes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from appshield.record.replay import load_recordings
from tests.record._helpers import (
    ROOT,
    appshield,
    changed_ops,
    clean_env,
    recorded_ops,
    replay_json,
    without_rule,
)

DEMO = ROOT / "examples" / "demo.py"
POLICY = ROOT / "examples" / "demo-policy.yaml"


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("demo") / "demo.jsonl"
    done = subprocess.run(
        [sys.executable, str(DEMO)], capture_output=True, text=True, timeout=120,
        env=clean_env(APPSHIELD_RECORD=str(path)),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return path


def test_every_decision_is_recorded_with_its_verdict_and_call_site(recording: Path) -> None:
    loaded = load_recordings([str(recording)])
    by_rule = {}
    for entry, _ in loaded.entries:
        assert entry.decision is not None and entry.packages == ()
        by_rule.setdefault(entry.decision.rule_id, []).append(entry)
    # the three attacks, blocked, and the service's ordinary work, allowed
    for rule in ("no-shell", "no-credentials", "no-loopback-admin"):
        assert by_rule[rule] and all(e.decision.blocked for e in by_rule[rule]), rule
    for rule in ("uname-only", "loopback-web-only", "default:file", "default:import"):
        assert by_rule[rule] and not any(e.decision.blocked for e in by_rule[rule]), rule
    (shell,) = {e.operation for e in by_rule["no-shell"]}
    assert shell.shell and shell.argv == ("sh", "-c", "id")
    site = by_rule["no-shell"][0].site
    assert site.file == str(DEMO) and site.function == "shell"
    assert by_rule["no-credentials"][0].operation.resolved is not None  # filled in
    (header,) = loaded.headers.values()
    assert header["policy_name"] == "demo" and header["mode"] == "enforce"
    assert header["cwd"] and header["argv"][0] == str(DEMO)


def test_replayed_against_its_own_policy_nothing_is_new(recording: Path) -> None:
    code, report = replay_json(POLICY, recording)
    assert code == 0
    assert report["newly_denied"] == [] and report["newly_allowed"] == []
    assert report["decisions"] == len(load_recordings([str(recording)]).entries)
    assert report["decisions_per_second"] > 0


@pytest.mark.parametrize("rule", ["uname-only", "loopback-web-only"])
def test_one_allow_rule_removed_denies_exactly_its_operations(
    recording: Path, tmp_path: Path, rule: str
) -> None:
    narrower = without_rule(POLICY, rule, tmp_path / "narrower.yaml")
    code, report = replay_json(narrower, recording)
    assert code == 1
    expected = recorded_ops(recording, rule)
    assert expected, rule
    assert changed_ops(report["newly_denied"]) == expected
    assert report["newly_allowed"] == []
    assert {g["rule"] for g in report["newly_denied"]} <= {"default:process", "default:network"}


def test_a_deny_rule_removed_newly_allows_its_operations(recording: Path, tmp_path: Path) -> None:
    wider = without_rule(POLICY, "no-credentials", tmp_path / "wider.yaml")
    code, report = replay_json(wider, recording)
    assert code == 0  # allowing more breaks nothing
    assert report["newly_denied"] == []
    assert changed_ops(report["newly_allowed"]) == recorded_ops(recording, "no-credentials")
    assert [g["rule"] for g in report["newly_allowed"]] == ["no-credentials"]


def test_the_text_report_groups_by_rule_and_call_site(recording: Path, tmp_path: Path) -> None:
    narrower = without_rule(POLICY, "uname-only", tmp_path / "narrower.yaml")
    done = appshield("replay", "--policy", str(narrower), str(recording))
    assert done.returncode == 1, done.stderr
    out = done.stdout
    assert f"rule default:process at {DEMO}:" in out and "(uname)" in out
    assert "uname -s" in out and "recorded: allow by uname-only" in out
    assert "decisions/s" in out and "operations/s" in out
    same = appshield("replay", "--policy", str(POLICY), str(recording))
    assert same.returncode == 0 and "denies nothing the recorded run did" in same.stdout
