"""The user's loop, end to end with real processes: learn, enforce with zero violations,
then an injected attack is blocked and reported; `--merge` grows the policy run by run."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[2] / "examples" / "learn_demo" / "app.py"


class Service:
    """A line-echo service on 127.0.0.1 that counts the connections it accepted."""

    def __init__(self, port: int = 0) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            with conn:
                conn.recv(100)
                conn.sendall(b"hi\n")

    def close(self) -> None:
        self.sock.close()


def _low_port_service() -> Service:
    """A service on a fixed port below the ephemeral range, which learning never saw."""
    for _ in range(50):
        try:
            return Service(random.randint(20000, 32000))
        except OSError:
            continue
    raise RuntimeError("no free port below 32768")


@pytest.fixture
def service() -> Iterator[Service]:
    s = Service()
    yield s
    s.close()


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPSHIELD_", "OTEL_"))}
    env.update(extra)
    return env


def appshield(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appshield", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env or _env(),
    )


def app(port: int, *extra: str) -> list[str]:
    return [sys.executable, str(APP), "--port", str(port), *extra]


def violations(log: Path) -> list[dict[str, object]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def learn(tmp_path: Path, service: Service, *extra: str, merge: bool = False) -> Path:
    policy = tmp_path / "learned.yaml"
    option = ["--merge", str(policy)] if merge else ["--out", str(policy)]
    done = appshield("learn", *option, "--", *app(service.port, *extra))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "worker: 3 records" in done.stdout  # the app worked, its Python child too
    return policy


def enforce(policy: Path, port: int, log: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return appshield(
        "run",
        "--policy",
        str(policy),
        "--mode",
        "enforce",
        "--",
        *app(port, *extra),
        env=_env(APPSHIELD_LOG=str(log)),
    )


def test_learn_then_enforce_then_attack(tmp_path: Path, service: Service) -> None:
    policy = learn(tmp_path, service)
    text = policy.read_text()
    assert "defaults:\n  process: deny\n  file: deny\n  network: deny\n  import: deny" in text
    assert appshield("check", str(policy)).returncode == 0

    # The same work, a new service port: allowed, nothing reported.
    fresh = Service()
    log = tmp_path / "clean.log"
    done = enforce(policy, fresh.port, log)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "service: hi" in done.stdout and "worker: 3 records" in done.stdout
    assert violations(log) == []

    # New behaviour: each attack is blocked before it happens and reported.
    canary = tmp_path / "canary"
    secret = tmp_path / "secret.txt"
    secret.write_text("s3cr3t")
    hidden = _low_port_service()
    attacks = {"shell": str(canary), "port": str(hidden.port), "secret": str(secret)}
    for kind, target in attacks.items():
        log = tmp_path / f"{kind}.log"
        done = enforce(policy, fresh.port, log, "--attack", kind, "--target", target)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"BLOCKED {kind}" in done.stdout, done.stdout + done.stderr
        reported = violations(log)
        assert reported and all(v["blocked"] for v in reported), reported
    assert not canary.exists()
    assert hidden.accepted == 0
    assert "s3cr3t" not in done.stdout
    hidden.close()
    fresh.close()


def test_learning_blocks_nothing_and_merge_adds_runs(tmp_path: Path, service: Service) -> None:
    policy = learn(tmp_path, service)
    policy.write_text(policy.read_text().replace("rules:", "# reviewed by hand\nrules:"))
    first = policy.read_text()

    secret = tmp_path / "extra.txt"
    secret.write_text("extra")
    learn(tmp_path, service, "--attack", "secret", "--target", str(secret), merge=True)
    merged = policy.read_text()
    assert merged.startswith(first.rstrip("\n"))  # the human's text survives untouched
    assert "/extra.txt" in merged and merged.count("- id:") > first.count("- id:")

    log = tmp_path / "merged.log"
    done = enforce(policy, service.port, log, "--attack", "secret", "--target", str(secret))
    assert "DONE secret" in done.stdout, done.stdout + done.stderr
    assert violations(log) == []

    canary = tmp_path / "canary"
    done = appshield(
        "learn",
        "--out",
        str(tmp_path / "other.yaml"),
        "--",
        *app(service.port, "--attack", "shell", "--target", str(canary)),
    )
    assert done.returncode == 0 and "DONE shell" in done.stdout
    assert canary.exists()  # learning observes, never blocks


def test_existing_output_is_not_overwritten(tmp_path: Path) -> None:
    out = tmp_path / "appshield.yaml"
    out.write_text("keep me")
    done = appshield("learn", "--out", str(out), "--", sys.executable, "-c", "pass")
    assert done.returncode == 2 and "exists" in done.stderr
    assert out.read_text() == "keep me"


def test_exit_code_is_the_commands(tmp_path: Path) -> None:
    out = str(tmp_path / "p.yaml")
    done = appshield("learn", "--out", out, "--", sys.executable, "-c", "raise SystemExit(7)")
    assert done.returncode == 7
    assert (tmp_path / "p.yaml").exists()
