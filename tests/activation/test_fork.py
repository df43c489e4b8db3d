"""Pre-fork servers: a worker forked from a shielded master is shielded."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.activation._helpers import PY, RUN, allow_all_but, clean_env, run


def _policy(tmp_path: Path, secret: Path) -> Path:
    return allow_all_but(
        tmp_path,
        f"""
        - id: no-secret
          category: file
          action: deny
          match: {{path: "{secret}"}}
    """,
    )


def test_forked_child_is_shielded(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("s3cret")
    policy = _policy(tmp_path, secret)
    code = f"""
import os, sys
from appshield import runtime
pid = os.fork()
if pid == 0:
    shield = runtime.active_shield()
    try:
        open({str(secret)!r}).read()
        verdict = "read"
    except PermissionError as exc:
        verdict = "blocked " + str(getattr(exc, "rule_id", None))
    print("WORKER", shield is not None and shield.locked, verdict, flush=True)
    os._exit(0)
os.waitpid(pid, 0)
"""
    result = run([*RUN, "--policy", str(policy), "--", PY, "-c", code])
    assert result.returncode == 0, result.stderr
    assert "WORKER True blocked no-secret" in result.stdout


GUNICORN = shutil.which("gunicorn", path=os.path.dirname(sys.executable))

WSGI_APP = """
import json, os
from appshield import runtime

def app(environ, start_response):
    shield = runtime.active_shield()
    try:
        open(os.environ["SECRET_PATH"]).read()
        verdict = "read"
    except PermissionError as exc:
        verdict = "blocked:" + str(getattr(exc, "rule_id", None))
    body = json.dumps({"pid": os.getpid(), "locked": bool(shield and shield.locked),
                       "verdict": verdict}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
"""


@pytest.mark.skipif(GUNICORN is None, reason="gunicorn missing")
def test_gunicorn_worker_is_shielded(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("s3cret")
    policy = _policy(tmp_path, secret)
    (tmp_path / "wsgi_app.py").write_text(WSGI_APP)
    argv = [
        *RUN,
        "--policy",
        str(policy),
        "--",
        str(GUNICORN),
        "--workers",
        "1",
        "--bind",
        "127.0.0.1:0",
        "--chdir",
        str(tmp_path),
        "wsgi_app:app",
    ]
    env = clean_env(SECRET_PATH=str(secret))
    server = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        port = _listening_port(server)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=20) as response:
            answer = json.loads(response.read())
        assert answer["pid"] != server.pid  # served by a forked worker
        assert answer == {"pid": answer["pid"], "locked": True, "verdict": "blocked:no-secret"}
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


def _listening_port(server: subprocess.Popen[str]) -> int:
    assert server.stderr is not None
    deadline = time.monotonic() + 30
    seen = []
    while time.monotonic() < deadline:
        line = server.stderr.readline()
        if not line:
            break
        seen.append(line)
        found = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", line)
        if found:
            # the worker boots right after; its "Booting worker" line follows
            while "Booting worker" not in line and time.monotonic() < deadline:
                line = server.stderr.readline()
                seen.append(line)
                if not line:
                    break
            return int(found.group(1))
    raise AssertionError("gunicorn did not start:\n" + "".join(seen))
