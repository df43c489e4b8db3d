"""The recording inside real shielded processes: folded counts, a bounded size under a flood
of distinct operations, forked children appending to one file, counts flushed while a
process runs, a recording that cannot be written, and learn reading a recording."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from appshield.learn import learn_policy, not_allowed
from appshield.learn.records import read_records
from appshield.policy import Policy
from appshield.record.replay import load_recordings
from appshield.record.writer import PERIODIC_FLUSHES
from tests.record._helpers import appshield, clean_env

ALLOW_ALL = """\
version: 1
name: allow-all
defaults: {process: allow, file: allow, network: allow, import: allow}
rules: []
"""


def _run(tmp_path: Path, script: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    policy = tmp_path / "allow.yaml"
    policy.write_text(ALLOW_ALL)
    return subprocess.run(
        [sys.executable, "-m", "appshield", "run", "--policy", str(policy), "--",
         sys.executable, "-c", textwrap.dedent(script), *args],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env=clean_env(**env),
    )  # fmt: skip


FLOOD = """
    import sys
    base, distinct, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    for i in range(distinct):
        try:
            open(f"{base}/missing-{i}")
        except FileNotFoundError:
            pass
    for _ in range(repeats):
        open("/dev/null").close()
"""


def test_a_flood_of_distinct_operations_stays_within_the_bound(tmp_path: Path) -> None:
    recording = tmp_path / "flood.jsonl"
    limit, distinct, repeats = 300, 6_000, 20_000
    done = _run(tmp_path, FLOOD, str(tmp_path / "none"), str(distinct), str(repeats),
                APPSHIELD_RECORD=str(recording), APPSHIELD_RECORD_LIMIT=str(limit))  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [json.loads(x) for x in recording.read_text().splitlines()]
    entries = [x for x in lines if "op" in x]
    distinct_entries = {json.dumps({k: v for k, v in x.items() if k != "count"}) for x in entries}
    assert len(distinct_entries) == limit  # the cap, whatever the number of operations
    # the documented bound: a header, `limit` first sightings, `limit` count lines and one
    # overflow line per flush (the periodic ones and the last)
    flushes = PERIODIC_FLUSHES + 1
    assert len(lines) <= 1 + limit + flushes * (limit + 1)
    loaded = load_recordings([str(recording)])
    overflowed = loaded.overflow["file allow"]
    recorded_files = sum(1 for e, _ in loaded.entries if e.operation.category == "file")
    assert overflowed + recorded_files >= distinct  # every decision counted somewhere
    # the repeats fold into one entry (it was recorded before the cap or it is counted)
    devnull = [e for e, _ in loaded.entries if getattr(e.operation, "path", "") == "/dev/null"]
    assert sum(e.times for e in devnull) in (0, repeats)
    # the file is small: its size does not grow with the 26,000 operations
    assert recording.stat().st_size < (1 + limit) * flushes * 2_000


FORKS = """
    import os, sys
    base, children, each = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    pids = []
    for c in range(children):
        pid = os.fork()
        if pid == 0:
            for i in range(each):
                try:
                    open(f"{base}/child-{c}-{i}")
                except FileNotFoundError:
                    pass
            os._exit(0)  # no atexit: the first sightings must already be on disk
        pids.append(pid)
    for pid in pids:
        os.waitpid(pid, 0)
"""


def test_forked_children_append_whole_lines_to_the_same_file(tmp_path: Path) -> None:
    recording = tmp_path / "forks.jsonl"
    children, each = 4, 500
    done = _run(tmp_path, FORKS, str(tmp_path / "none"), str(children), str(each),
                APPSHIELD_RECORD=str(recording))  # fmt: skip
    assert done.returncode == 0, done.stderr
    loaded = load_recordings([str(recording)])
    assert loaded.torn == 0  # no line of one process cut into another's
    parents = [pid for pid, h in loaded.headers.items() if h["ppid"] not in loaded.headers]
    assert len(parents) == 1 and len(loaded.headers) == 1 + children
    paths = [
        e.operation.path
        for e, _ in loaded.entries
        if e.operation.category == "file" and "/child-" in e.operation.path
    ]
    assert len(paths) == len(set(paths)) == children * each


COUNTED_THEN_KILLED = """
    import os, signal, sys, time
    for _ in range(10):
        open(sys.argv[1]).close()
    time.sleep(1.2)
    open(sys.argv[1]).close()  # the first periodic flush is due: the counts go out
    os.kill(os.getpid(), signal.SIGKILL)  # no atexit
"""


def test_counts_are_flushed_while_the_process_runs(tmp_path: Path) -> None:
    recording = tmp_path / "killed.jsonl"
    data = tmp_path / "data.txt"
    data.write_text("x")
    done = _run(tmp_path, COUNTED_THEN_KILLED, str(data), APPSHIELD_RECORD=str(recording))
    assert done.returncode == -9
    loaded = load_recordings([str(recording)])
    reads = [e for e, _ in loaded.entries if getattr(e.operation, "path", "") == str(data)]
    # two call sites: the loop's ten (one first sighting, nine counted and flushed) and the last
    assert sorted(e.times for e in reads) == [1, 10]


def test_a_recording_that_cannot_be_written_never_reaches_the_app(tmp_path: Path) -> None:
    unwritable = tmp_path / "no-such-folder" / "rec.jsonl"
    script = "import sys; print(open(sys.argv[1]).read())"
    done = _run(tmp_path, script, str(tmp_path / "allow.yaml"), APPSHIELD_RECORD=str(unwritable))
    assert done.returncode == 0 and "allow-all" in done.stdout
    assert done.stderr.count("appshield: recording to") == 1
    assert "enforcement goes on" in done.stderr
    # `appshield run --record` checks it before the command starts
    started = appshield("run", "--policy", str(tmp_path / "allow.yaml"), "--record",
                        str(unwritable), "--", sys.executable, "-c", "print('ran')")  # fmt: skip
    assert started.returncode == 2 and "ran" not in started.stdout
    assert "cannot write the recording" in started.stderr


def test_learn_reads_a_recording(tmp_path: Path) -> None:
    """`appshield learn --from FILE`: a recording made by `run --record` is learned from like
    learn's own records, and the learned policy allows everything the run did."""
    recording = tmp_path / "run.jsonl"
    data = tmp_path / "data.txt"
    data.write_text("x")
    script = "import json, sys; open(sys.argv[1]).read(); print(json.dumps([1]))"
    done = _run(tmp_path, script, str(data), APPSHIELD_RECORD=str(recording))
    assert done.returncode == 0, done.stderr
    observations = read_records(recording)
    assert any(getattr(o.operation, "path", "") == str(data) for o in observations)
    assert all(o.roots.prefix for o in observations)  # the header's folders, by pid
    policy = Policy.from_yaml(learn_policy(observations).text)
    assert not_allowed(policy, observations) == []
    out = tmp_path / "learned.yaml"
    learned = appshield("learn", "--from", str(recording), "--out", str(out))
    assert learned.returncode == 0, learned.stderr
    enforced = _run_under(out, tmp_path, script, str(data))
    assert enforced.returncode == 0, enforced.stderr


def _run_under(
    policy: Path, cwd: Path, script: str, *args: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appshield", "run", "--policy", str(policy), "--",
         sys.executable, "-c", script, *args],
        capture_output=True, text=True, timeout=120, cwd=cwd, env=clean_env(),
    )  # fmt: skip


SIGNALLED = """
    import signal, sys
    secret, data = sys.argv[1], sys.argv[2]
    opened = blocked = 0
    inside = False

    def handler(signum, frame):
        global opened, blocked, inside
        if inside:  # a report takes longer than the timer's period: never nest
            return
        inside = True
        try:
            open(secret).close()
            opened += 1
        except PermissionError:
            blocked += 1
        finally:
            inside = False

    signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, 0.002, 0.002)
    for i in range(1500):  # each distinct: every one is written while the timer fires
        try:
            open(f"{data}-{i}")
        except FileNotFoundError:
            pass
    signal.setitimer(signal.ITIMER_REAL, 0)
    print(opened, blocked)
"""


def test_recording_exempts_nothing_a_signal_handler_does(tmp_path: Path) -> None:
    """Recording runs inside decisions on the app's thread: a signal handler that runs while
    a line is being written is judged like any other code (control: in monitor mode the same
    handler's opens happen, so it did run during the recording)."""
    secret = tmp_path / "secret.txt"
    secret.write_text("s")
    policy = tmp_path / "deny-secret.yaml"
    rule = f"{{id: no-secret, category: file, action: deny, match: {{path: {secret}}}}}"
    policy.write_text(ALLOW_ALL.replace("rules: []", f"rules:\n  - {rule}\n"))
    results = {}
    for mode in ("enforce", "monitor"):
        done = subprocess.run(
            [sys.executable, "-m", "appshield", "run", "--policy", str(policy), "--mode", mode,
             "--record", str(tmp_path / f"{mode}.jsonl"), "--",
             sys.executable, "-c", textwrap.dedent(SIGNALLED), str(secret), str(tmp_path / "x")],
            capture_output=True, text=True, timeout=120, cwd=tmp_path, env=clean_env(),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        results[mode] = tuple(map(int, done.stdout.split()))
    opened, blocked = results["enforce"]
    assert opened == 0 and blocked > 0, results
    assert results["monitor"][0] > 0, results  # the control: the handler's opens happen
    loaded = load_recordings([str(tmp_path / "enforce.jsonl")])
    denied = [e for e, _ in loaded.entries if e.decision.rule_id == "no-secret"]
    assert sum(e.times for e in denied) == blocked  # and each one is in the recording


SPAWNS = """
    import subprocess, sys
    child = "import sys; open(sys.argv[1]).read()"
    subprocess.run([sys.executable, "-c", child, sys.argv[1]], check=True)
    open(sys.argv[1]).read()
"""


def test_a_started_python_child_records_into_the_same_file(tmp_path: Path) -> None:
    """`run --record` passes the recording on through the environment: a Python child that
    `subprocess` starts (a fresh interpreter, not a fork) appends its own lines."""
    recording = tmp_path / "spawn.jsonl"
    data = tmp_path / "data.txt"
    data.write_text("x")
    policy = tmp_path / "allow.yaml"
    policy.write_text(ALLOW_ALL)
    command = [sys.executable, "-c", textwrap.dedent(SPAWNS), str(data)]
    done = appshield(
        "run", "--policy", str(policy), "--record", "spawn.jsonl", "--", *command, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    loaded = load_recordings([str(recording)])
    (parent,) = [pid for pid, h in loaded.headers.items() if h["ppid"] not in loaded.headers]
    (child,) = [pid for pid, h in loaded.headers.items() if h["ppid"] == parent]
    lines = [json.loads(x) for x in recording.read_text().splitlines()]
    readers = {x["pid"] for x in lines if x.get("op", {}).get("path") == str(data)}
    assert readers == {parent, child}
    started = [e for e, _ in loaded.entries if e.operation.category == "process"]
    assert started and started[0].operation.executable == os.path.realpath(sys.executable)
