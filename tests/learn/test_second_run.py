"""Learn a real workload, then enforce a SECOND run of it (new pids, new temp names, new
date, another port): zero violations; what it never did is still blocked."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from appshield.learn.records import read_records
from appshield.learn.runner import learning_environment

WORKER = textwrap.dedent(
    """
    import datetime, json, os, subprocess, sys, tempfile, time, uuid

    import helper

    os.makedirs("out", exist_ok=True)
    with open(f"out/result-{os.getpid()}.json", "w") as f:
        json.dump({"ppid": os.getppid()}, f)
    fd, name = tempfile.mkstemp(prefix="job-", suffix=".dat")
    os.write(fd, b"x")
    os.close(fd)
    os.unlink(name)
    with tempfile.TemporaryDirectory(prefix="scratch-") as scratch:
        with open(os.path.join(scratch, "part.txt"), "w") as f:
            f.write("a")
    day = os.environ.get("FAKE_DAY") or datetime.date.today().isoformat()
    with open(f"out/log-{day}.txt", "a") as f:
        f.write("ok\\n")
    with open(f"out/item-{uuid.uuid4()}.bin", "wb") as f:
        f.write(b"1")
    if "--child" not in sys.argv:
        port = sys.argv[1]
        child = [sys.executable, "worker.py", "--child", "--port", port, "-w", "2"]
        subprocess.run(child, check=True)
    helper.check()
    attack = os.environ.get("ATTACK")
    if attack == "file":
        open("out/../secret.txt", "w").write("x")
    elif attack == "shell":
        os.system("true")
    elif attack == "read":
        open("/etc/hostname").read()
    """
)
HELPER = textwrap.dedent(
    """
    import traceback

    def check():
        try:
            raise ValueError("an error path: the traceback reads this file")
        except ValueError:
            text = traceback.format_exc()
        assert "raise ValueError" in text, text
    """
)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPSHIELD_", "OTEL_"))}
    env.update(extra)
    return env


def _appshield(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appshield", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(**env),
    )


def _violations(log: Path) -> list[dict[str, object]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def test_recorder_notes_tempfiles_random_part_and_the_pids(tmp_path: Path) -> None:
    folder = tmp_path / "rec"
    folder.mkdir()
    script = (
        "import tempfile, os\n"
        "fd, name = tempfile.mkstemp(prefix='wgunicorn-', dir=os.environ['D'])\n"
        "os.close(fd); os.unlink(name)\n"
        "tempfile.mkdtemp(prefix='a-', suffix='-b', dir=os.environ['D'])\n"
    )
    env = learning_environment(str(folder), _env(D=str(tmp_path)))
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    seen = read_records(folder)
    made = {
        o.operation.path: o.volatile  # type: ignore[union-attr]
        for o in seen
        if o.volatile and o.operation.category == "file"
    }
    names = {Path(path).name: parts for path, parts in made.items()}
    gunicorn = [n for n in names if n.startswith("wgunicorn-")]
    folders = [n for n in names if n.startswith("a-")]
    assert len(gunicorn) == 1 and names[gunicorn[0]] == (gunicorn[0][len("wgunicorn-") :],)
    assert len(folders) == 1 and names[folders[0]] == (folders[0][2:-2],)
    assert all(len(o.pids) == 2 for o in seen)


def test_worker_learned_then_enforced_on_a_second_run(tmp_path: Path) -> None:
    (tmp_path / "worker.py").write_text(WORKER)
    (tmp_path / "helper.py").write_text(HELPER)
    policy = tmp_path / "appshield.yaml"
    learned = _appshield(
        "learn", "--out", str(policy), "--", sys.executable, "worker.py", "8002", cwd=tmp_path
    )
    assert learned.returncode == 0, learned.stderr
    text = policy.read_text()
    for glob in ("out/result-*.json", "{tmp}/job-*.dat", "{tmp}/scratch-*", "out/log-*.txt"):
        assert glob in text, text
    assert 'executable: "{python}"' in text and '"--port", "[0-9]*", "-w", "[0-9]*"' in text
    assert _appshield("check", str(policy), cwd=tmp_path).returncode == 0

    log = tmp_path / "violations.jsonl"
    second = _appshield(
        "run", "--policy", str(policy), "--", sys.executable, "worker.py", "9100",
        cwd=tmp_path, APPSHIELD_LOG=str(log), FAKE_DAY="2031-01-02",
    )  # fmt: skip
    assert second.returncode == 0, second.stderr
    assert _violations(log) == []
    assert len(list((tmp_path / "out").glob("result-*.json"))) == 4  # two runs, two processes

    for attack, category in (("file", "file"), ("shell", "process"), ("read", "file")):
        log.unlink(missing_ok=True)
        blocked = _appshield(
            "run", "--policy", str(policy), "--", sys.executable, "worker.py", "9100",
            cwd=tmp_path, APPSHIELD_LOG=str(log), ATTACK=attack,
        )  # fmt: skip
        assert blocked.returncode != 0
        found = _violations(log)
        assert found[0]["category"] == category and found[0]["blocked"], found


APP = textwrap.dedent(
    """
    from flask import Flask

    app = Flask(__name__)


    @app.route("/")
    def index():
        return "hello"


    @app.route("/fail")
    def fail():
        raise RuntimeError("boom")
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _serve(
    command: list[str], cwd: Path, port: int, env: dict[str, str], *, child: bool
) -> list[object]:
    """Start `command` (gunicorn under appshield), request / and /fail, stop the master (the
    command's child when `child`: `learn` runs it as one, `run` becomes it)."""
    errors = (cwd / "stderr.txt").open("w")
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=errors)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).read()
                break
            except OSError:
                failed = time.monotonic() > deadline or proc.poll() is not None
                assert not failed, (cwd / "stderr.txt").read_text()
                time.sleep(0.1)
        codes: list[object] = []
        for path in ["/", "/fail"] * 4:
            try:
                url = f"http://127.0.0.1:{port}{path}"
                codes.append(urllib.request.urlopen(url, timeout=30).status)
            except urllib.error.HTTPError as exc:
                codes.append(exc.code)
        master = _children(proc.pid)[0] if child else proc.pid
        os.kill(master, signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, (cwd / "stderr.txt").read_text()
        return codes
    finally:
        errors.close()
        if proc.poll() is None:
            for pid in _children(proc.pid):
                os.kill(pid, signal.SIGKILL)
            proc.kill()
            proc.wait()


def test_gunicorn_three_workers_learned_then_enforced(tmp_path: Path) -> None:
    pytest.importorskip("flask")
    gunicorn = Path(sys.executable).with_name("gunicorn")
    if not gunicorn.exists():
        pytest.skip("gunicorn is not installed")
    (tmp_path / "app.py").write_text(APP)
    policy = tmp_path / "appshield.yaml"
    serve = [str(gunicorn), "-w", "3", "app:app", "-b"]
    port = _free_port()
    learn = [sys.executable, "-m", "appshield", "learn", "--out", str(policy), "--", *serve]
    codes = _serve([*learn, f"127.0.0.1:{port}"], tmp_path, port, _env(), child=True)
    assert codes == [200, 500] * 4
    text = policy.read_text()
    assert '"{tmp}/wgunicorn-*"' in text and "/**/*.py" in text, text

    log = tmp_path / "violations.jsonl"
    port = _free_port()
    run = [sys.executable, "-m", "appshield", "run", "--policy", str(policy), "--", *serve]
    env = _env(APPSHIELD_LOG=str(log))
    assert _serve([*run, f"127.0.0.1:{port}"], tmp_path, port, env, child=False) == [200, 500] * 4
    found = _violations(log)
    assert found == [], json.dumps(found, indent=1) + "\n" + text
