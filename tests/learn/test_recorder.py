"""The recorder inside real shielded processes: every operation, counts, forks, os._exit."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from appshield.learn.records import (
    Observation,
    Roots,
    observation_from_json,
    observation_to_json,
    read_records,
)
from appshield.learn.runner import learning_environment
from appshield.operations import FileOp, NetworkOp, ProcessOp

SCRIPT = textwrap.dedent(
    """
    import os, sys
    data = sys.argv[1]
    for _ in range(5):
        open(data).read()
    open(data, "r+").close()  # one call, two operations: both must be recorded
    if os.fork() == 0:
        open(data + ".child", "w").close()
        os._exit(0)  # no atexit: the operation must already be on disk
    os.wait()
    """
)


def test_records_every_operation_with_counts_across_fork(tmp_path: Path) -> None:
    folder = tmp_path / "rec"
    folder.mkdir()
    data = tmp_path / "data.txt"
    data.write_text("x")
    env = {k: v for k, v in learning_environment(str(folder)).items() if k != "APPSHIELD_LOG"}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(data)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    files = sorted(folder.glob("ops-*.jsonl"))
    assert len(files) == 2  # the parent and the forked child, each its own file
    seen = read_records(folder)
    file_ops = [o.operation for o in seen if isinstance(o.operation, FileOp)]
    reads = [o for o in seen if o.operation in file_ops and o.operation.path == str(data)]
    assert [o.count for o in reads if o.operation.access == "read"] == [6]
    assert reads[0].module == "__main__" and reads[0].roots == Roots.current()
    assert any(op.path == f"{data}.child" and op.access == "write" for op in file_ops)
    assert {op.access for op in file_ops if op.path == str(data)} == {"read", "write"}
    assert any(o.operation.category == "import" for o in seen)


def test_round_trip_and_torn_lines(tmp_path: Path) -> None:
    ops = [
        FileOp("/a", "read", resolved="/b"),
        NetworkOp("connect", None, "10.0.0.1", 443, "tcp", ("api.example.com",)),
        ProcessOp("/usr/bin/git", ("git", "status"), trusted_location=True),
    ]
    for op in ops:
        obs = Observation(op, "api", "m", ("m", "__main__"), 3)
        assert observation_from_json(observation_to_json(obs)) == obs
    path = tmp_path / f"ops-{os.getpid()}.jsonl"
    line = observation_to_json(Observation(ops[0], "open", "m", ("m",), 2))
    path.write_text(line + "\n" + line + "\n" + line[:20])  # killed mid-write
    (found,) = read_records(tmp_path)
    assert found.count == 4
