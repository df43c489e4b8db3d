"""Small apps run as real subprocesses by the end-to-end tests.

Each one installs the shield on POLICY (a deny on writes under DENIED) and triggers
violations. A real `open(..., "w")` is tried first; while the file hooks are not in place
the violation is produced through `active_shield().enforce()` instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

POLICY = """\
version: 1
name: telemetry-e2e
defaults: {process: allow, file: allow, network: NETWORK, import: allow}
rules:
  - id: no-denied-writes
    category: file
    action: deny
    match: {path: "DENIED/**", access: write}
"""

PRELUDE = """\
import json, os, sys, time
import appshield
from appshield.errors import PolicyViolation
from appshield.operations import FileOp
from appshield.runtime import active_shield

DENIED = os.environ["TEST_DENIED"]
appshield.install(os.environ["TEST_POLICY"])


def violate(name="x"):
    path = os.path.join(DENIED, name)
    try:
        with open(path, "w"):
            pass
    except PolicyViolation:
        return
    active_shield().enforce(FileOp(path, "write"), "open")
"""


def write_policy(tmp_path: Path, network: str = "allow") -> tuple[Path, Path]:
    denied = tmp_path / "denied"
    denied.mkdir(exist_ok=True)
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.replace("DENIED", str(denied)).replace("NETWORK", network))
    return policy, denied


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "APPSHIELD_", "PYTEST_"))
    }
    env.update(extra)
    return env


def run_app(
    tmp_path: Path,
    body: str,
    env: dict[str, str] | None = None,
    timeout: float = 60,
    network: str = "allow",
    **popen: Any,
) -> subprocess.CompletedProcess[str]:
    policy, denied = write_policy(tmp_path, network)
    script = tmp_path / "app.py"
    script.write_text(PRELUDE + textwrap.dedent(body))
    full_env = clean_env(TEST_POLICY=str(policy), TEST_DENIED=str(denied))
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, str(script)],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=tmp_path,
        **popen,
    )


def start_app(
    tmp_path: Path, body: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    policy, denied = write_policy(tmp_path)
    script = tmp_path / "app.py"
    script.write_text(PRELUDE + textwrap.dedent(body))
    full_env = clean_env(TEST_POLICY=str(policy), TEST_DENIED=str(denied))
    full_env.update(env or {})
    return subprocess.Popen(
        [sys.executable, str(script)],
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
