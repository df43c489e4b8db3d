"""Real servers learned, checked, then enforced on a SECOND run (new pids, new temp names,
another port): zero violations, the error path and a lazy stdlib import included; then an
injected shell, an unexpected file read and a connect to an unexpected loopback port are each
blocked and reported, and in a monitor-mode control run the same three do happen.

The workloads and every step are in `_workloads` (scripts/learn_workloads.py prints the
table in docs/learning.md from the same code). Each test also checks that what the master,
its forked or spawned workers and Django's autoreloader child saw is merged into the one
policy: every one of those processes has records, and the policy came from all of them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from appshield.learn import not_allowed
from appshield.policy import Policy
from tests.learn import _workloads
from tests.learn._workloads import (
    LAZY_MODULE,
    SERVER_LOOP,
    Outcome,
    Unavailable,
    brief,
    clean_env,
    learn,
    read_violations,
    record_headers,
    records_by_process,
    second_run,
)


def _outcome(key: str, folder: Path, *, bytecode: bool = False) -> Outcome:
    """learn -> check -> enforced second run -> attacks, with every common assertion.
    `bytecode`: with bytecode writing on (see `clean_env`)."""
    workload = _workloads.WORKLOADS[key]
    try:
        workload.command(0)
    except Unavailable as exc:
        pytest.skip(str(exc))
    learned = learn(workload, folder, bytecode=bytecode)
    expected = [200 if path == "/" else 500 for path in SERVER_LOOP] if workload.server else [0]
    assert learned.codes == expected
    assert learned.checked.returncode == 0, learned.checked.stdout + learned.checked.stderr
    assert not learned.imported(LAZY_MODULE), "learning took the lazy path: it proves nothing"

    second = second_run(workload, folder, learned.policy, bytecode=bytecode)
    assert second.codes == expected, second.stderr
    assert second.violations == [], brief(second.violations)
    assert second.lazy_ok, second.lazy
    for attack in second.attacks:
        assert attack.stopped, (attack, brief(read_violations(folder / "violations-enforce.jsonl")))
        # by its own rule: the connect's lazy imports (the idna codec's stringprep and
        # unicodedata, in FastAPI and the worker) are the standard library's, and allowed
        assert attack.stopped_at == "", attack

    control = second_run(workload, folder, learned.policy, mode="monitor", bytecode=bytecode)
    for attack in control.attacks:  # the attacks are real: unblocked, each one happens
        assert attack.reported and not attack.blocked and attack.happened, attack
    return Outcome(workload, learned, second)


def _merged(folder: Path, outcome: Outcome) -> dict[int, dict[str, Any]]:
    """pid -> header of every process that recorded; asserts that each one's records are in
    the merged records (`read_records`: their pids are) and that the one policy allows
    every operation each of them saw."""
    headers = {int(h["pid"]): h for h in record_headers(folder)}
    merged_pids = {pid for o in outcome.learned.records for pid in o.pids}
    assert set(headers) <= merged_pids
    policy = Policy.from_file(str(outcome.learned.policy))
    for pid, seen in records_by_process(folder).items():
        assert seen, f"process {pid} recorded nothing"
        missing = [o.operation for o in not_allowed(policy, seen)]
        assert missing == [], (pid, missing[:5])
    return headers


def _imported(folder: Path, module: str) -> set[int]:
    """The processes that imported `module` while learning."""
    return {
        pid
        for pid, seen in records_by_process(folder).items()
        if any(getattr(o.operation, "module", None) == module for o in seen)
    }


def test_flask_gunicorn_three_workers(tmp_path: Path) -> None:
    # With bytecode writing on, as in production (the other workloads run with it off): the
    # second run's server loads the compiled policy from its cache, which resolves no {tmp},
    # so gunicorn's first `mkstemp` writes tempfile's trial file in the temp folder itself.
    outcome = _outcome("gunicorn", tmp_path, bytecode=True)
    assert list((tmp_path / "__pycache__").glob("appshield.yaml.*"))  # the cache was used
    learned = outcome.learned
    assert '"{tmp}/wgunicorn-*"' in learned.text and "/**/*.py" in learned.text
    assert '"{tmp}/????????"' in learned.text  # tempfile's trial file, seen while learning
    processes = _merged(tmp_path, outcome)
    (master,) = [pid for pid, h in processes.items() if h["ppid"] == learned.learn_pid]
    workers = {pid for pid, h in processes.items() if h["ppid"] == master}
    assert len(workers) == 3 and len(processes) == 4  # forked: each has its own record file
    assert _imported(tmp_path, "app") == workers  # each worker loads the app


def test_fastapi_uvicorn_two_workers(tmp_path: Path) -> None:
    outcome = _outcome("uvicorn", tmp_path)
    learned = outcome.learned
    processes = _merged(tmp_path, outcome)
    (master,) = [pid for pid, h in processes.items() if h["ppid"] == learned.learn_pid]
    spawned = {
        pid
        for pid, h in processes.items()
        if h["ppid"] == master and "--multiprocessing-fork" in h["argv"]
    }
    assert len(spawned) == 2  # spawned (a fresh interpreter each), not forked
    assert _imported(tmp_path, "app") == spawned
    assert "spawn_main(tracker_fd=*, pipe_handle=*)" in learned.text


def test_django_runserver_with_its_autoreloader_child(tmp_path: Path) -> None:
    outcome = _outcome("django", tmp_path)
    learned = outcome.learned
    processes = _merged(tmp_path, outcome)
    assert len(processes) == 2
    (parent,) = [pid for pid, h in processes.items() if h["ppid"] == learned.learn_pid]
    (child,) = [pid for pid, h in processes.items() if h["ppid"] == parent]
    # The autoreloader child runs the same command line; it is the one that serves.
    assert processes[child]["argv"] == processes[parent]["argv"]
    assert _imported(tmp_path, "urls") == {child}
    assert '"manage.py", "runserver", "127.0.0.1:[0-9]*"' in learned.text


def test_worker_with_run_specific_names(tmp_path: Path) -> None:
    outcome = _outcome("worker", tmp_path)
    text = outcome.learned.text
    for glob in ("out/result-*.json", "{tmp}/job-*.dat", "{tmp}/scratch-*", "out/log-*.txt"):
        assert glob in text, text
    assert 'executable: "{python}"' in text and '"--port", "[0-9]*", "-w", "[0-9]*"' in text
    processes = _merged(tmp_path, outcome)
    assert len(processes) == 2  # the worker and the child it runs
    # two processes in each of the five runs: learn, then (enforced, then monitor) the second
    # run with the lazy path and the one with the attacks
    assert len(list((tmp_path / "out").glob("result-*.json"))) == 10

    # One more attack the table does not count: a write outside the learned folders.
    log = tmp_path / "violations-write.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "appshield", "run", "--policy", str(outcome.learned.policy),
         "--", sys.executable, "worker.py", "9100"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env=clean_env(APPSHIELD_LOG=str(log), ATTACK="file"),
    )  # fmt: skip
    assert done.returncode != 0
    found = read_violations(log)
    assert found[0]["category"] == "file" and found[0]["blocked"], found
    assert not (tmp_path / "secret.txt").read_text().startswith("x")
