"""What a second run needs from the recorder: tempfile's random parts and the run's pids.
(The workloads learned, then enforced on a second run, are in test_servers.py.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from appshield.learn.records import read_records
from appshield.learn.runner import learning_environment
from tests.learn._workloads import clean_env


def test_recorder_notes_tempfiles_random_part_and_the_pids(tmp_path: Path) -> None:
    folder = tmp_path / "rec"
    folder.mkdir()
    script = (
        "import tempfile, os\n"
        "fd, name = tempfile.mkstemp(prefix='wgunicorn-', dir=os.environ['D'])\n"
        "os.close(fd); os.unlink(name)\n"
        "tempfile.mkdtemp(prefix='a-', suffix='-b', dir=os.environ['D'])\n"
    )
    env = learning_environment(str(folder), clean_env(D=str(tmp_path)))
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    seen = read_records(folder)
    made = {
        o.operation.path: o.volatile  # type: ignore[union-attr]
        for o in seen
        if o.volatile and o.operation.category == "file"
    }
    names = {Path(path).name: parts for path, parts in made.items()}
    gunicorn = [n for n in names if n.startswith("wgunicorn-")]
    folders = [n for n in names if n.startswith("a-")]
    assert len(gunicorn) == 1 and names[gunicorn[0]] == (gunicorn[0][len("wgunicorn-") :],)
    assert len(folders) == 1 and names[folders[0]] == (folders[0][2:-2],)
    assert all(len(o.pids) == 2 for o in seen)


def test_learning_leaves_tempfiles_first_call_to_the_program(tmp_path: Path) -> None:
    # The recorder asks tempfile.gettempdir() for `{tmp}`, which caches its answer; the
    # program's own first call must still write tempfile's trial file while learning, since
    # under `appshield run` with a cached policy (bytecode writing on) nothing asks first.
    (tmp_path / "job.py").write_text(
        "import os, tempfile\n"
        "print('cached:', tempfile.tempdir)\n"
        "fd, name = tempfile.mkstemp(prefix='job-')\n"
        "os.close(fd); os.unlink(name)\n"
    )
    policy, log = tmp_path / "appshield.yaml", tmp_path / "violations.jsonl"
    appshield = [sys.executable, "-m", "appshield"]
    job = [sys.executable, "job.py"]
    env = clean_env(bytecode=True, APPSHIELD_LOG=str(log))
    learned = subprocess.run(
        [*appshield, "learn", "--out", str(policy), "--", *job],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert learned.returncode == 0, learned.stderr
    assert "cached: None" in learned.stdout
    assert '"{tmp}/????????"' in policy.read_text()
    for _ in range(2):  # the first run writes the policy cache, the second loads it
        done = subprocess.run(
            [*appshield, "run", "--policy", str(policy), "--", *job],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "cached: None" in done.stdout
    assert list((tmp_path / "__pycache__").glob("appshield.yaml.*"))
    assert not log.exists(), log.read_text()
