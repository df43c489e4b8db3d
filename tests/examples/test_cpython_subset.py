"""CPython's own tests of the hooked modules pass, fail and skip exactly as without appshield.

The normal suite runs a tiny selection (`--tiny`); the bounded CI sample (`--subset`) is
marked slow. `scripts/cpython_tests.py --full` is the complete run, reported by hand.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.examples._ready import require

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "cpython_tests.py"


def run_script(size: str, tmp_path: Path, wall: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), f"--{size}", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=wall,
        check=False,
    )


def test_tiny_selection_matches_bare_run(tmp_path: Path) -> None:
    require("loader", "engine", "hooks", "run")
    done = run_script("tiny", tmp_path, wall=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 unexplained, 0 problem(s)" in done.stdout


@pytest.mark.slow
def test_subset_matches_bare_run(tmp_path: Path) -> None:
    require("loader", "engine", "hooks", "run")
    done = run_script("subset", tmp_path, wall=1800)
    assert done.returncode == 0, done.stdout + done.stderr
