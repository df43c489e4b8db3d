"""Run one bypass attempt in a fresh interpreter and let the outside world judge it.

An attempt is a snippet of Python that, if it gets through, leaves a trace outside the
process: a canary file appears, a loopback listener counts a connection, or a secret reaches
stdout. Each attempt runs three ways:
- control: no appshield at all; the trace must appear (proves the attempt really works);
- enforce: under a deny policy; the trace must not appear;
- monitor: the same policy in monitor mode; the trace appears and a violation is reported
  in the `APPSHIELD_LOG` JSON lines.

`before` runs ahead of `appshield.install()`, to capture aliases before patching.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

__all__ = ["Attempt", "Listener", "Outcome", "run_attempt"]


@dataclass(frozen=True)
class Attempt:
    id: str
    code: str
    category: str
    before: str = ""
    # What betrays success: "canary" (the file CANARY exists), "connect" (the listener got a
    # connection), "stdout" (SECRET printed).
    evidence: str = "canary"
    # Extra rules (YAML list items, already indented as list entries) for this attempt.
    rules: str = ""
    # Monitor mode reports are checked unless this is False (for attempts whose report is a
    # stated limit).
    reported: bool = True
    extra_env: dict[str, str] = field(default_factory=dict)
    # Another interpreter for this attempt (one with a capability the test interpreter's
    # build lacks): returns (its path, environment additions), or the reason there is none
    # on this machine, and the attempt is skipped with it.
    interpreter: Callable[[], tuple[str, dict[str, str]] | str] | None = None


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str
    happened: bool
    violations: list[dict[str, object]]


class Listener:
    """A TCP listener on 127.0.0.1 that counts the connections it accepts."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port: int = self.sock.getsockname()[1]
        self.count = 0
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.count += 1
            conn.close()

    def close(self) -> None:
        self._stop = True
        self.sock.close()

    def __iter__(self) -> Iterator[int]:  # pragma: no cover - convenience
        yield self.port


PRELUDE = """\
import os, sys
CANARY = os.environ["BYPASS_CANARY"]
SECRET_FILE = os.environ["BYPASS_SECRET_FILE"]
PORT = int(os.environ["BYPASS_PORT"])
WORK = os.environ["BYPASS_WORK"]
"""

INSTALL = """\
import appshield
appshield.install(os.environ["BYPASS_POLICY"], mode=os.environ["BYPASS_MODE"], locked=True)
"""


def policy_text(work: Path, secret_file: Path, canary: Path, port: int, extra_rules: str) -> str:
    """The deny policy every attempt runs under. Defaults allow, so that the interpreter and
    the test scaffolding work; the rules deny exactly what the attempts try."""
    return textwrap.dedent(
        f"""\
        version: 1
        name: bypass-suite
        mode: enforce
        defaults: {{process: allow, file: allow, network: allow, import: allow}}
        rules:
          - id: no-canary
            category: file
            action: deny
            match: {{path: ["{canary}", "{work}/forbidden/**"], access: [write, delete]}}
          - id: no-secret
            category: file
            action: deny
            match: {{path: "{secret_file}", access: read}}
          - id: no-listener
            category: network
            action: deny
            match: {{port: {port}}}
          - id: no-shells
            category: process
            action: deny
            match:
              executable: [sh, bash, dash, touch, /bin/sh, /usr/bin/sh, /bin/bash, /usr/bin/bash,
                           /bin/dash, /usr/bin/dash, /usr/bin/touch, /bin/touch]
          - id: no-evil-import
            category: import
            action: deny
            match: {{module: [evilmod, ctypes, _ctypes]}}
        """
    ) + textwrap.indent(textwrap.dedent(extra_rules), "  ")


def run_attempt(
    attempt: Attempt,
    tmp_path: Path,
    listener: Listener,
    *,
    mode: str | None,
    timeout: float = 60,
) -> Outcome:
    """mode None: the control run, without appshield."""
    work = tmp_path / "work"
    (work / "forbidden").mkdir(parents=True, exist_ok=True)
    canary = work / "canary"
    secret_file = work / "secret.txt"
    secret_file.write_text("SECRET-7f3a9\n")
    policy = tmp_path / "policy.yaml"
    policy.write_text(policy_text(work, secret_file, canary, listener.port, attempt.rules))
    log = tmp_path / "violations.jsonl"
    script = tmp_path / "attempt.py"
    body = PRELUDE + textwrap.dedent(attempt.before)
    if mode is not None:
        body += INSTALL
    body += "\n" + textwrap.dedent(attempt.code)
    script.write_text(body)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("APPSHIELD_", "OTEL_", "PYTEST_", "COV_"))
    }
    env.update(
        BYPASS_CANARY=str(canary),
        BYPASS_SECRET_FILE=str(secret_file),
        BYPASS_PORT=str(listener.port),
        BYPASS_WORK=str(work),
        BYPASS_POLICY=str(policy),
        BYPASS_MODE=mode or "enforce",
        APPSHIELD_LOG=str(log),
        PYTHONDONTWRITEBYTECODE="1",
    )
    env.update(attempt.extra_env)
    python = sys.executable
    if attempt.interpreter is not None:
        found = attempt.interpreter()
        if isinstance(found, str):
            pytest.skip(found)
        python, more = found
        env.update(more)
    before_count = listener.count
    proc = subprocess.run(
        [python, str(script)],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if attempt.evidence == "canary":
        happened = canary.exists()
    elif attempt.evidence == "connect":
        # the listener thread may lag behind the child's exit by a moment
        for _ in range(50):
            if listener.count > before_count:
                break
            threading.Event().wait(0.01)
        happened = listener.count > before_count
    elif attempt.evidence == "stdout":
        happened = "SECRET-7f3a9" in proc.stdout
    else:
        raise ValueError(attempt.evidence)
    violations = []
    if log.exists():
        violations = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return Outcome(proc.returncode, proc.stdout, proc.stderr, happened, violations)
