"""Python children inherit the shield through the environment; the ones that would start
without it are denied (`implicit:unshielded_children`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.activation._helpers import PY, RUN, allow_all_but, run

LS = shutil.which("ls")


def _policy(tmp_path: Path) -> Path:
    return allow_all_but(
        tmp_path,
        """
        - id: no-ls
          category: process
          action: deny
          match: {executable: ls}
    """,
    )


CHILD_TRIES_LS = """
import subprocess
try:
    subprocess.run(["ls"], check=True, capture_output=True)
    print("CHILD ls ran")
except PermissionError as exc:
    print("CHILD blocked", getattr(exc, "rule_id", None))
"""


@pytest.mark.skipif(LS is None, reason="needs ls")
def test_child_python_is_shielded_and_blocked(tmp_path: Path) -> None:
    policy = _policy(tmp_path)
    parent = (
        "import subprocess, sys\n"
        f"out = subprocess.run([sys.executable, '-c', {CHILD_TRIES_LS!r}],"
        " capture_output=True, text=True)\n"
        "print(out.stdout, end=''); print(out.stderr, end='')\n"
    )
    result = run([*RUN, "--policy", str(policy), "--", PY, "-c", parent])
    assert result.returncode == 0, result.stderr
    assert "CHILD blocked no-ls" in result.stdout


UNSHIELDED_ATTEMPTS = {
    "isolated": "[sys.executable, '-I', '-c', 'pass'], env=None",
    "no-site": "[sys.executable, '-S', '-c', 'pass'], env=None",
    "ignore-env": "[sys.executable, '-E', '-c', 'pass'], env=None",
    "dropped-bootstrap": "[sys.executable, '-c', 'pass'],"
    " env={k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}",
    "kill-switch": "[sys.executable, '-c', 'pass'], env={**os.environ, 'APPSHIELD_DISABLE': '1'}",
    "other-policy": "[sys.executable, '-c', 'pass'],"
    " env={**os.environ, 'APPSHIELD_POLICY': '/tmp/allow-all.yaml'}",
    "other-mode": "[sys.executable, '-c', 'pass'], env={**os.environ, 'APPSHIELD_MODE': 'monitor'}",
}


def test_children_that_would_run_unshielded_are_denied(tmp_path: Path) -> None:
    # One shielded parent tries every way (one process start per case keeps this fast).
    policy = allow_all_but(tmp_path)
    attempts = "".join(
        f"    ({case!r}, lambda: subprocess.run({call}, check=True)),\n"
        for case, call in sorted(UNSHIELDED_ATTEMPTS.items())
    )
    parent = (
        "import os, subprocess, sys\n"
        f"ATTEMPTS = [\n{attempts}]\n"
        "for case, attempt in ATTEMPTS:\n"
        "    try:\n"
        "        attempt()\n"
        "        print(case, 'STARTED')\n"
        "    except PermissionError as exc:\n"
        "        print(case, 'DENIED', getattr(exc, 'rule_id', None))\n"
    )
    result = run([*RUN, "--policy", str(policy), "--", PY, "-c", parent])
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"{case} DENIED implicit:unshielded_children" for case in sorted(UNSHIELDED_ATTEMPTS)
    ]


def test_same_environment_child_is_allowed(tmp_path: Path) -> None:
    policy = allow_all_but(tmp_path)
    parent = (
        "import subprocess, sys\n"
        "subprocess.run([sys.executable, '-c', 'import sys; sys.exit(0)'], check=True)\n"
        "print('STARTED')\n"
    )
    result = run([*RUN, "--policy", str(policy), "--", PY, "-c", parent])
    assert result.returncode == 0, result.stderr
    assert "STARTED" in result.stdout
