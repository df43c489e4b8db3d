"""Run a snippet of attack code in a fresh interpreter under a deny policy, and judge it from
the outside world.

The policy denies: writing anything under WORK/forbidden (the canaries), reading SECRET,
connecting to the loopback listener's port, starting `touch`. Everything else is allowed, so
the interpreter and the scaffolding work. The child prints one JSON line of its own counts
on stdout (`RESULT {...}`); the canaries on disk and the listener's count are the evidence.
A watchdog (the subprocess timeout) turns a hang into a failure.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Listener", "Run", "run_child"]


class Listener:
    """A TCP listener on 127.0.0.1 that counts the connections it accepts."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port: int = self.sock.getsockname()[1]
        self.count = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.count += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    canaries: list[str]
    connections: int
    violations: list[dict[str, object]]
    result: dict[str, object]


PRELUDE = """\
import os, sys, json
WORK = os.environ["FC_WORK"]
FORBIDDEN = os.path.join(WORK, "forbidden")
SECRET = os.environ["FC_SECRET"]
PORT = int(os.environ["FC_PORT"])
ALLOWED = os.path.join(WORK, "allowed")
RESULT = {}
def done():
    print("RESULT " + json.dumps(RESULT), flush=True)
"""

INSTALL = """\
import appshield
appshield.install(os.environ["FC_POLICY"], mode=os.environ["FC_MODE"], locked=True)
"""


def _policy(work: Path, secret: Path, port: int) -> str:
    return textwrap.dedent(
        f"""\
        version: 1
        name: failclosed
        mode: enforce
        defaults: {{process: allow, file: allow, network: allow, import: allow}}
        rules:
          - id: no-forbidden
            category: file
            action: deny
            match: {{path: "{work}/forbidden/**", access: [write, delete]}}
          - id: no-secret
            category: file
            action: deny
            match: {{path: "{secret}", access: read}}
          - id: no-listener
            category: network
            action: deny
            match: {{port: {port}}}
          - id: no-touch
            category: process
            action: deny
            match: {{executable: [touch, /usr/bin/touch, /bin/touch]}}
        """
    )


def run_child(
    code: str,
    tmp_path: Path,
    listener: Listener,
    *,
    mode: str | None,
    timeout: float = 120,
    python: str = sys.executable,
) -> Run:
    """mode None: the control run, without appshield."""
    work = tmp_path / "work"
    (work / "forbidden").mkdir(parents=True, exist_ok=True)
    (work / "allowed").mkdir(parents=True, exist_ok=True)
    secret = work / "secret.txt"
    secret.write_text("SECRET-7f3a9\n")
    policy = tmp_path / "policy.yaml"
    policy.write_text(_policy(work, secret, listener.port))
    log = tmp_path / "violations.jsonl"
    script = tmp_path / "child.py"
    body = PRELUDE + (INSTALL if mode is not None else "") + textwrap.dedent(code) + "\ndone()\n"
    script.write_text(body)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("APPSHIELD_", "OTEL_", "PYTEST_", "COV_"))
    }
    env.update(
        FC_WORK=str(work),
        FC_SECRET=str(secret),
        FC_PORT=str(listener.port),
        FC_POLICY=str(policy),
        FC_MODE=mode or "enforce",
        APPSHIELD_LOG=str(log),
    )
    before = listener.count
    proc = subprocess.run(
        [python, str(script)],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    for _ in range(50):  # the listener thread may lag behind the child's exit
        if listener.count > before:
            break
        threading.Event().wait(0.01)
    violations = []
    if log.exists():
        violations = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    result: dict[str, object] = {}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT ") :])
    canaries = sorted(p.name for p in (work / "forbidden").iterdir())
    return Run(
        proc.returncode,
        proc.stdout,
        proc.stderr,
        canaries,
        listener.count - before,
        violations,
        result,
    )
