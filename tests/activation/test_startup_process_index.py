"""With a warm policy cache, start-up does not restore the process index: most processes
start no program. The first spawn builds it, and is decided exactly as under an index built
at start (real child processes, real programs, the cache written by a real start)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.activation._helpers import TIMEOUT, clean_env, policy_file

POLICY = """\
version: 1
name: process-later
defaults: {process: deny, file: allow, network: allow, import: allow}
rules:
  - id: true-only
    category: process
    action: allow
    match: {executable: "true"}
"""

CHILD = """\
import shutil, subprocess, sys
import appshield.auto
from appshield import runtime
from appshield.errors import PolicyViolation
compiled = runtime.active_shield().policy.compiled
print("at-start", "process" in compiled._categories)
# An unshielded Python child would be refused: `true` is no Python.
print("allowed", subprocess.run([shutil.which("true")]).returncode)
try:
    subprocess.run([shutil.which("false")])
except PolicyViolation as exc:
    print("denied", exc.rule_id)
print("after", "process" in compiled._categories)
"""


def test_the_process_index_is_built_by_the_first_spawn(tmp_path: Path) -> None:
    path = policy_file(tmp_path, POLICY)
    env = clean_env(APPSHIELD_POLICY=str(path))
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # the first start writes the cache
    outputs = []
    for _ in range(2):  # without a cache, then restored from it
        done = subprocess.run(
            [sys.executable, "-c", CHILD],
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout.split("\n"))
    uncached, cached = outputs
    assert uncached[1:] == cached[1:] == ["allowed 0", "denied default:process", "after True", ""]
    assert cached[0] == "at-start False"
