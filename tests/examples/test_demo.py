"""The README demo runs, blocks the three dangerous steps, and lets the ordinary ones through."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.examples._ready import require

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo.py"


def run_demo(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPSHIELD_", "OTEL_"))}
    return subprocess.run(
        [sys.executable, str(DEMO), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


@pytest.fixture(autouse=True)
def _landed() -> None:
    require("loader", "engine", "hooks")


def test_enforce_blocks_and_reports() -> None:
    done = run_demo()
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for rule in ("no-shell", "no-credentials", "no-loopback-admin"):
        assert f"BLOCKED by rule {rule!r}" in out
        assert f'"rule": "{rule}"' in out
    assert out.count("BLOCKED") == 3
    assert "not-a-real-secret" not in out
    assert "hello from 127.0.0.1" in out  # the allowed connection got its greeting
    assert "admin port listener received 0 connection(s)" in out


def test_monitor_lets_everything_happen_and_reports() -> None:
    done = run_demo("--monitor")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "BLOCKED" not in out
    assert "uid=" in out  # the shell really ran
    for rule in ("no-shell", "no-credentials", "no-loopback-admin"):
        assert f'"rule": "{rule}"' in out
    assert "admin port listener received 1 connection(s)" in out
