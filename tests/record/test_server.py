"""A real server recorded: Flask under `gunicorn -w 3` (the workload of tests/learn), its
policy learned, then run enforced under `appshield run --record` for the request loop. The
master and its three forked workers all append to the one file; replayed against the same
policy nothing is new, and with one rule removed exactly that rule's operations are denied."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appshield.record.replay import load_recordings
from tests.learn import _workloads
from tests.learn._workloads import SERVER_LOOP, Unavailable, free_port
from tests.record._helpers import changed_ops, recorded_ops, replay_json, without_rule


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the learned policy, the recording of an enforced run of the request loop)."""
    workload = _workloads.WORKLOADS["gunicorn"]
    try:
        workload.command(0)
    except Unavailable as exc:
        pytest.skip(str(exc))
    folder = tmp_path_factory.mktemp("gunicorn")
    learned = _workloads.learn(workload, folder)
    assert learned.checked.returncode == 0, learned.checked.stdout
    recording = folder / "recording.jsonl"
    port = free_port()
    command = [*_workloads._appshield("run", "--policy", str(learned.policy), "--record",
               str(recording), "--"), *workload.command(port)]  # fmt: skip
    env = _workloads.clean_env()
    with _workloads._serving(command, folder, port, env, under_learn=False) as (get, _):
        codes = [get(path)[0] for path in SERVER_LOOP]
    assert codes == [200 if path == "/" else 500 for path in SERVER_LOOP]
    return learned.policy, recording


def test_master_and_workers_append_whole_lines_to_one_file(served: tuple[Path, Path]) -> None:
    _, recording = served
    loaded = load_recordings([str(recording)])
    assert loaded.torn == 0
    headers = loaded.headers
    (master,) = [pid for pid, h in headers.items() if h["ppid"] not in headers]
    workers = {pid for pid, h in headers.items() if h["ppid"] == master}
    assert len(workers) == 3 and len(headers) == 4
    pids = {
        int(line["pid"])
        for line in map(json.loads, recording.read_text().splitlines())
        if "op" in line
    }
    assert pids == set(headers)  # every process recorded decisions under its own pid
    served_requests = [
        e
        for e, _ in loaded.entries
        if e.operation.category == "import" and e.operation.module == "app"
    ]
    assert served_requests and all(e.decision.action == "allow" for e in served_requests)


def test_replayed_against_the_same_policy_nothing_is_new(served: tuple[Path, Path]) -> None:
    policy, recording = served
    code, report = replay_json(policy, recording)
    assert code == 0, report["newly_denied"][:3]
    assert report["newly_denied"] == [] and report["newly_allowed"] == []


@pytest.mark.parametrize("rule", ["import-app", "network-bind-127-0-0-1"])
def test_one_rule_removed_denies_exactly_its_operations(
    served: tuple[Path, Path], rule: str
) -> None:
    policy, recording = served
    narrower = without_rule(policy, rule, policy.with_name(f"without-{rule}.yaml"))
    code, report = replay_json(narrower, recording)
    expected = recorded_ops(recording, rule)
    assert expected, rule
    assert code == 1
    assert changed_ops(report["newly_denied"]) == expected
    assert report["newly_allowed"] == []
