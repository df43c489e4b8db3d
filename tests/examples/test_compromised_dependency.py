"""examples/compromised_dependency: the story in one command holds (exit 0), judged by the
script from the outside world (canary, listeners, marker files) with a control run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

RUN = Path(__file__).resolve().parents[2] / "examples" / "compromised_dependency" / "run.py"


def test_the_story_holds() -> None:
    done = subprocess.run([sys.executable, str(RUN)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "FAILED" not in done.stdout
    assert done.stdout.rstrip().endswith("the story holds")
    assert "package:evil (evil 2.0)" in done.stdout
