"""Process-level outages: the app keeps running, nothing promised is lost, one clear warning.

Each case runs `_outage_app.py` under `appshield run` (enforce) with something broken:
the OTLP endpoint down, slow or answering 503; `APPSHIELD_LOG` on a full disk (/dev/full)
or under a path that cannot exist (its parent is a file); the policy file deleted after
start. "Promised" means: every denied operation blocked, every allowed one done, the
violations in `APPSHIELD_LOG` when it is writable, and the process exits on its own in
bounded time. Warnings are read from the app's stderr, where its logging configuration
sends the `appshield` logger's records.
"""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.examples._ready import require

APP = Path(__file__).with_name("_outage_app.py")
ROUND = 50
EXIT_BOUND = 40.0  # seconds: generous for a loaded 2-core machine; the flush is bounded (2 s)

POLICY = """\
version: 1
name: outage
mode: enforce
defaults: {{process: allow, file: allow, network: allow, import: allow}}
rules:
  - id: deny-secret
    category: file
    action: deny
    match: {{path: "{workdir}/secret/**"}}
"""


@pytest.fixture(autouse=True)
def _landed() -> None:
    require("loader", "engine", "hooks", "run", "otel")


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "secret").mkdir()
    (tmp_path / "public.txt").write_text("public")
    (tmp_path / "policy.yaml").write_text(POLICY.format(workdir=tmp_path))
    return tmp_path


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPSHIELD_", "OTEL_"))}
    return env | extra


def otlp_env(endpoint: str) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_LOGS_EXPORTER": "otlp",
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "2",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }


def start_app(workdir: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "appshield", "run", "--policy", str(workdir / "policy.yaml"),
            "--", sys.executable, str(APP), str(workdir), *args]  # fmt: skip
    return subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=base_env(**env)
    )


def finish(app: subprocess.Popen[str]) -> tuple[dict[str, Any], str, float]:
    started = time.monotonic()
    try:
        out, err = app.communicate(timeout=EXIT_BOUND)
    except subprocess.TimeoutExpired:
        app.kill()
        out, err = app.communicate()
        pytest.fail(f"the app did not exit within {EXIT_BOUND}s\n{err}")
    assert app.returncode == 0, out + err
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT ")), err, time.monotonic() - started


def run_app(workdir: Path, env: dict[str, str]) -> tuple[dict[str, Any], str]:
    result, err, _ = finish(start_app(workdir, env))
    return result, err


def assert_enforced(rounds: list[dict[str, int]]) -> None:
    for seen in rounds:
        assert seen == {"blocked": ROUND, "leaked": 0, "ok": ROUND, "wrongly_blocked": 0}


def appshield_warnings(stderr: str) -> list[str]:
    """appshield's lines on stderr about itself: not the per-violation warnings, which name
    their rule and are the app's to see since it configured logging."""
    lines = [
        line.removeprefix("WARNING appshield: ")
        for line in stderr.splitlines()
        if "appshield" in line.lower() and "(rule " not in line
    ]
    # The reload watcher writes its message to stderr and to the logger; when the app sends
    # the logger to stderr too, the same text shows twice. Count messages, not copies.
    return list(dict.fromkeys(lines))


def violation_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


# --- OTLP endpoint outages -------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class _Failing(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def failing_endpoint() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


@contextmanager
def slow_endpoint() -> Iterator[str]:
    """Accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []

    def hold() -> None:
        while True:
            try:
                held.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=hold, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()
        for conn in held:
            conn.close()


@contextmanager
def down_endpoint() -> Iterator[str]:
    yield f"http://127.0.0.1:{free_port()}"


@pytest.mark.parametrize(
    "endpoint", [down_endpoint, slow_endpoint, failing_endpoint], ids=["down", "slow", "503"]
)
def test_otlp_endpoint_outage(endpoint: Any, workdir: Path) -> None:
    log = workdir / "violations.jsonl"
    with endpoint() as url:
        result, err = run_app(workdir, otlp_env(url) | {"APPSHIELD_LOG": str(log)})
    assert_enforced(result["rounds"])
    assert len(violation_lines(log)) == ROUND  # the local record is complete
    warnings = appshield_warnings(err)
    assert len(warnings) == 1, err  # one clear warning, not one per failed export
    assert "dropped" in warnings[0]


# --- APPSHIELD_LOG unwritable ----------------------------------------------------------


@pytest.mark.parametrize("where", ["full-disk", "parent-is-a-file"])
def test_log_unwritable(where: str, workdir: Path) -> None:
    (workdir / "a-file").write_text("")
    target = "/dev/full" if where == "full-disk" else str(workdir / "a-file" / "log.jsonl")
    result, err = run_app(workdir, {"APPSHIELD_LOG": target})
    assert_enforced(result["rounds"])
    warnings = appshield_warnings(err)
    assert len(warnings) == 1, err
    assert "APPSHIELD_LOG" in warnings[0] or target in warnings[0]


# --- the policy file deleted after start -----------------------------------------------


@pytest.mark.parametrize("reload", ["0", "1"])
def test_policy_deleted_after_start(reload: str, workdir: Path) -> None:
    env = {"APPSHIELD_RELOAD": reload, "APPSHIELD_RELOAD_INTERVAL": "0.2"}
    flag = workdir / "deleted"
    app = start_app(workdir, env, "--wait-for", str(flag))
    assert app.stdout is not None
    assert app.stdout.readline().strip() == "READY"
    (workdir / "policy.yaml").unlink()
    flag.touch()
    result, err, _ = finish(app)
    assert_enforced(result["rounds"])  # the policy in force stays in force
    warnings = appshield_warnings(err)
    if reload == "1":
        assert len(warnings) == 1, err  # the watcher says once that the file is gone
    else:
        assert warnings == [], err  # nobody looks at the file: nothing to say
