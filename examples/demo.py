"""appshield in one command: `python examples/demo.py` (add `--monitor` to only report).

The demo plays a small service that has been tricked into doing three dangerous things:
starting a shell, reading cloud credentials and talking to a local admin port. Under
`demo-policy.yaml` each one is blocked before it happens and reported, while the service's
ordinary work (running `uname`, reading its own notes, calling its web port) still works.

Everything it touches is its own: a temporary folder with a fake `~/.aws/credentials`, and
two listeners on 127.0.0.1 that count the connections they receive, so the outside world
confirms that a blocked connection never arrived.

Exit code 0 when every outcome is the expected one, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
POLICY = HERE / "demo-policy.yaml"
WEB_PORTS = range(8000, 8100)  # the ports `loopback-web-only` allows


class Listener:
    """A loopback TCP listener that greets and counts every connection it accepts."""

    def __init__(self, ports: range | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.port = self._bind(ports)
        self.sock.listen(16)
        self.count = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _bind(self, ports: range | None) -> int:
        for port in ports or (0,):
            try:
                self.sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(self.sock.getsockname()[1])
        raise SystemExit(f"demo: no free loopback port in {ports}")

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.count += 1
            with conn:
                conn.sendall(f"hello from 127.0.0.1:{self.port}\n".encode())


@dataclass
class Step:
    title: str
    action: Callable[[], str]
    should_block: bool


def make_steps(workdir: Path, web: Listener, admin: Listener) -> list[Step]:
    credentials = workdir / "home" / ".aws" / "credentials"
    notes = workdir / "notes.txt"

    def shell() -> str:
        done = subprocess.run(["sh", "-c", "id"], capture_output=True, text=True, check=False)
        return done.stdout.strip()

    def uname() -> str:
        done = subprocess.run(["uname", "-s"], capture_output=True, text=True, check=False)
        return done.stdout.strip()

    def connect(port: int) -> Callable[[], str]:
        def attempt() -> str:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                return conn.recv(100).decode().strip()

        return attempt

    return [
        Step('subprocess.run(["sh", "-c", "id"])', shell, True),
        Step(f"open({str(credentials)!r}).read()", lambda: credentials.read_text().strip(), True),
        Step(f'socket.create_connection(("127.0.0.1", {admin.port}))', connect(admin.port), True),
        Step('subprocess.run(["uname", "-s"])', uname, False),
        Step(f"open({str(notes)!r}).read()", lambda: notes.read_text().strip(), False),
        Step(f'socket.create_connection(("127.0.0.1", {web.port}))', connect(web.port), False),
    ]


def make_workdir() -> Path:
    workdir = Path(tempfile.mkdtemp(prefix="appshield-demo-"))
    aws = workdir / "home" / ".aws"
    aws.mkdir(parents=True)
    (aws / "credentials").write_text(
        "[default]\naws_access_key_id = AKIADEMODEMODEMO\n"
        "aws_secret_access_key = not-a-real-secret\n"
    )
    (workdir / "notes.txt").write_text("service notes: all is well")
    return workdir


class LogTail:
    """Reads the JSON lines appshield appended to APPSHIELD_LOG since the last call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def new_records(self) -> list[dict[str, object]]:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        return [json.loads(line) for line in data.splitlines() if line.strip()]


def run_step(number: int, step: Step, tail: LogTail, violation_type: type) -> bool:
    """Run one step, print what happened and what was reported; True when as expected."""
    print(f"[{number}] {step.title}")
    blocked = False
    try:
        result = step.action()
        print(f"    ran: {result[:70]!r}")
    except violation_type as error:
        blocked = True
        print(f"    BLOCKED by rule {error.rule_id!r}")
    except OSError as error:
        print(f"    failed: {error}")
        return False
    for record in tail.new_records():
        shown = {key: record.get(key) for key in ("rule", "api", "target", "blocked", "mode")}
        print(f"    reported: {json.dumps(shown)}")
    return blocked == step.should_block


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--monitor", action="store_true", help="report only, block nothing")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = make_workdir()
    log_path = workdir / "violations.jsonl"
    # appshield reads its environment once, when first imported; quiet OpenTelemetry so the
    # demo needs no collector (set OTEL_TRACES_EXPORTER=console to see the spans as well).
    os.environ["APPSHIELD_LOG"] = str(log_path)
    for signal in ("TRACES", "METRICS", "LOGS"):
        os.environ.setdefault(f"OTEL_{signal}_EXPORTER", "none")
    web, admin = Listener(WEB_PORTS), Listener()
    steps = make_steps(workdir, web, admin)

    import appshield

    mode = "monitor" if args.monitor else "enforce"
    appshield.install(POLICY, mode=mode)
    print(f"appshield {appshield.__version__}: policy {POLICY.name}, mode {mode}\n")
    if args.monitor:
        for step in steps:
            step.should_block = False
    tail = LogTail(log_path)
    results = [
        run_step(i, step, tail, appshield.PolicyViolation) for i, step in enumerate(steps, 1)
    ]
    print(f"\nadmin port listener received {admin.count} connection(s); web port {web.count}")
    expected_admin = 1 if args.monitor else 0
    ok = all(results) and admin.count == expected_admin
    print("demo: every outcome as expected" if ok else "demo: UNEXPECTED outcome (see above)")
    appshield.uninstall()  # before cleaning up: the fake credentials are protected
    shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
