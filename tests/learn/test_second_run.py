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
