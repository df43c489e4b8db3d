"""`appshield learn` stopped from outside (`timeout`, `docker stop`, a supervisor, Ctrl-C):
the signal is forwarded to the workload, learn waits for it (bounded), writes the policy from
what ran, says so at the top, leaves no process behind and ends by the same signal.

Real processes throughout: an http.server and a gunicorn master with two workers on
127.0.0.1, stopped halfway; the learned policy is then enforced on a second run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from appshield.learn.runner import _descendants, _ended

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

SERVER = r"""
import http.server, sys
port_file, data, secret = sys.argv[1:4]

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        path = {"/data": data, "/secret": secret}.get(self.path)
        try:
            with open(path) as handle:
                body, status = handle.read().encode(), 200
        except PermissionError:
            body, status = b"BLOCKED", 403
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
with open(port_file + ".part", "w") as handle:
    handle.write(str(server.server_address[1]))
import os
os.replace(port_file + ".part", port_file)
server.serve_forever()
"""

WSGI = r"""
import os
HERE = os.path.dirname(os.path.abspath(__file__))

def app(environ, start_response):
    with open(os.path.join(HERE, "data.txt")) as handle:
        body = handle.read().encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]
"""

STUBBORN = r"""
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"])
open(sys.argv[1], "w").close()
time.sleep(60)
"""


RELOADER = r"""
import subprocess, sys
# Like a reloader: the server runs in a child; SIGTERM (default action) ends only the parent.
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
open(sys.argv[1], "w").close()
child.wait()
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPSHIELD_", "OTEL_"))}
    env.update(extra)
    return env


def _start(args: list[str], tmp_path: Path, name: str, **env: str) -> subprocess.Popen[bytes]:
    """A process in a session of its own, with no terminal: nothing from pytest's terminal
    reaches it, and a SIGINT sent to it is one a supervisor sent."""
    return subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=open(tmp_path / f"{name}.out", "wb"),
        stderr=open(tmp_path / f"{name}.err", "wb"),
        env=_env(**env),
        cwd=tmp_path,
        start_new_session=True,
    )


def _until(check: Callable[[], object], what: str, timeout: float = 30.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _stop(proc: subprocess.Popen[bytes], signum: int, timeout: float = 30.0) -> int:
    proc.send_signal(signum)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise


def _learn(tmp_path: Path, policy: Path, *command: str, extra: tuple[str, ...] = ()) -> list[str]:
    return [
        sys.executable,
        "-m",
        "appshield",
        "learn",
        "--out",
        str(policy),
        *extra,
        "--",
        *command,
    ]


def _violations(log: Path) -> list[dict[str, object]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stopped_server_still_yields_a_policy_that_enforces_what_ran(
    tmp_path: Path, signum: int
) -> None:
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    data, secret = tmp_path / "data.txt", tmp_path / "secret.txt"
    data.write_text("hello")
    secret.write_text("s3cr3t")
    policy = tmp_path / "learned.yaml"

    port_file = tmp_path / "server.port"  # the same name on both runs: it is learned
    server = [sys.executable, str(script), str(port_file), str(data), str(secret)]
    learn = _start(_learn(tmp_path, policy, *server), tmp_path, "learn")
    try:
        port = int(str(_until(lambda: port_file.exists() and port_file.read_text(), "server")))
        assert _get(port, "/data") == (200, "hello")
        assert _get(port, "/data") == (200, "hello")
        started = time.monotonic()
        code = _stop(learn, signum)
    finally:
        if learn.poll() is None:
            os.killpg(learn.pid, signal.SIGKILL)
            learn.wait()
    stderr = (tmp_path / "learn.err").read_text()
    assert code == -signum, stderr  # learn ends by the signal it was stopped with
    assert time.monotonic() - started < 15
    name = signal.Signals(signum).name
    text = policy.read_text()
    assert f"# This run was cut short: appshield learn received {name}" in text.split("version:")[0]
    assert "data.txt" in text and "secret.txt" not in text
    assert f"{name}: stopping the command" in stderr and "cut short" in stderr
    check = subprocess.run(
        [sys.executable, "-m", "appshield", "check", str(policy)],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
    )
    assert check.returncode == 0, check.stdout + check.stderr

    # A second run enforcing the learned policy: the same requests, no violation; a read
    # the first run never did is blocked before a byte is returned, and reported.
    log = tmp_path / "enforce.log"
    port_file.unlink()
    run = [sys.executable, "-m", "appshield", "run", "--policy", str(policy), "--mode", "enforce"]
    enforced = _start([*run, "--", *server], tmp_path, "enforce", APPSHIELD_LOG=str(log))
    try:
        port = int(str(_until(lambda: port_file.exists() and port_file.read_text(), "server")))
        assert _get(port, "/data") == (200, "hello")
        assert _violations(log) == []
        assert _get(port, "/secret") == (403, "BLOCKED")
    finally:
        _stop(enforced, signal.SIGTERM)
    reported = _violations(log)
    assert [(v["category"], v["blocked"]) for v in reported] == [("file", True)], reported
    assert str(reported[0]["target"]).endswith("secret.txt")


def _gunicorn_args(tmp_path: Path) -> list[str]:
    args = ["-w", "2", "-b", "127.0.0.1:0", "--chdir", str(tmp_path)]
    from gunicorn.config import KNOWN_SETTINGS

    if any(setting.name == "control_socket_disable" for setting in KNOWN_SETTINGS):
        args.append("--no-control-socket")  # gunicorn >= 24 shares ~/.gunicorn otherwise
    return [sys.executable, "-m", "gunicorn", *args, "wsgiapp:app"]


def test_gunicorn_master_and_workers_stopped_by_sigterm(tmp_path: Path) -> None:
    pytest.importorskip("gunicorn")
    (tmp_path / "wsgiapp.py").write_text(WSGI)
    (tmp_path / "data.txt").write_text("from a worker")
    policy = tmp_path / "learned.yaml"
    learn = _start(_learn(tmp_path, policy, *_gunicorn_args(tmp_path)), tmp_path, "learn")
    err = tmp_path / "learn.err"
    try:
        line = _until(
            lambda: next(
                (x for x in err.read_text().splitlines() if "Listening at: http://" in x), None
            ),
            "gunicorn to listen",
        )
        port = int(str(line).rsplit(":", 1)[1].split()[0].strip(" /()"))
        for _ in range(4):
            assert _get(port, "/") == (200, "from a worker")
        tree = _until(
            lambda: len(_descendants(learn.pid)) >= 3 and _descendants(learn.pid), "2 workers"
        )
        code = _stop(learn, signal.SIGTERM)
    finally:
        if learn.poll() is None:
            os.killpg(learn.pid, signal.SIGKILL)
            learn.wait()
    assert code == -signal.SIGTERM, err.read_text()
    assert isinstance(tree, list)
    assert _until(lambda: all(_ended(pid) for pid in tree), "no process left", timeout=10)
    text = policy.read_text()
    assert "# This run was cut short: appshield learn received SIGTERM" in text
    assert "data.txt" in text  # read by the forked workers only: their records were merged


def test_workload_that_ignores_the_signal_is_killed_after_the_bound(tmp_path: Path) -> None:
    script = tmp_path / "stubborn.py"
    script.write_text(STUBBORN)
    ready = tmp_path / "ready"
    policy = tmp_path / "learned.yaml"
    command = _learn(
        tmp_path, policy, sys.executable, str(script), str(ready), extra=("--stop-timeout", "1")
    )
    learn = _start(command, tmp_path, "learn")
    try:
        _until(ready.exists, "the workload")
        tree = _until(
            lambda: len(_descendants(learn.pid)) >= 2 and _descendants(learn.pid), "child"
        )
        started = time.monotonic()
        code = _stop(learn, signal.SIGTERM)
        took = time.monotonic() - started
    finally:
        if learn.poll() is None:
            os.killpg(learn.pid, signal.SIGKILL)
            learn.wait()
    assert code == -signal.SIGTERM
    assert 0.9 < took < 10
    assert isinstance(tree, list)
    assert _until(lambda: all(_ended(pid) for pid in tree), "no process left", timeout=10)
    text = policy.read_text()
    assert "received SIGTERM and stopped the command (killed after 1 s)" in text
    assert "stubborn.py" in text
    assert "killing the command" in (tmp_path / "learn.err").read_text()


def test_command_killed_by_a_signal_exits_128_plus_n(tmp_path: Path) -> None:
    policy = tmp_path / "learned.yaml"
    done = subprocess.run(
        _learn(tmp_path, policy, sys.executable, "-c", "import os; os.kill(os.getpid(), 9)"),
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 128 + signal.SIGKILL, done.stderr
    assert "# This run was cut short: the command was ended by SIGKILL." in policy.read_text()


def test_stop_timeout_must_be_a_number_of_seconds(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "appshield", "learn", "--stop-timeout", "soon", "--", "true"],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
        cwd=tmp_path,
    )
    assert done.returncode == 2 and "not a number of seconds" in done.stderr


def test_orphans_of_a_command_that_died_of_the_signal_are_stopped(tmp_path: Path) -> None:
    script = tmp_path / "reloader.py"
    script.write_text(RELOADER)
    ready = tmp_path / "ready"
    policy = tmp_path / "learned.yaml"
    # --keep: the learning folder stays, so nothing but learn can end the orphan (a shielded
    # process whose policy file vanished ends itself when it notices).
    keep = ("--keep", str(tmp_path / "kept"))
    command = _learn(tmp_path, policy, sys.executable, str(script), str(ready), extra=keep)
    learn = _start(command, tmp_path, "learn")
    try:
        _until(ready.exists, "the workload")
        tree = _until(
            lambda: len(_descendants(learn.pid)) >= 2 and _descendants(learn.pid), "child"
        )
        started = time.monotonic()
        code = _stop(learn, signal.SIGTERM)
        took = time.monotonic() - started
    finally:
        if learn.poll() is None:
            os.killpg(learn.pid, signal.SIGKILL)
            learn.wait()
    assert code == -signal.SIGTERM
    assert took < 5  # the orphan got SIGTERM at once, not SIGKILL after the bound
    assert isinstance(tree, list) and all(_ended(pid) for pid in tree)
    assert "stopped the command (it ended by SIGTERM)" in policy.read_text()


def test_merge_run_cut_short_is_noted_above_the_rules_it_added(tmp_path: Path) -> None:
    policy = tmp_path / "learned.yaml"
    first = subprocess.run(
        _learn(tmp_path, policy, sys.executable, "-c", "pass"),
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
        stdin=subprocess.DEVNULL,
    )
    assert first.returncode == 0, first.stderr
    before = policy.read_text()
    assert "cut short" not in before
    extra = tmp_path / "extra.txt"
    extra.write_text("x")
    code = f"import os; open({str(extra)!r}).read(); os.kill(os.getpid(), 15)"
    python = [sys.executable, "-c", code]
    second = subprocess.run(
        [sys.executable, "-m", "appshield", "learn", "--merge", str(policy), "--", *python],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
        stdin=subprocess.DEVNULL,
    )
    assert second.returncode == 128 + signal.SIGTERM, second.stderr
    merged = policy.read_text()
    assert merged.startswith(before.rstrip("\n"))
    added = merged[len(before.rstrip("\n")) :]
    assert added.index("# This run was cut short: the command was ended by SIGTERM.") < added.index(
        "extra.txt"
    )


COUNTS_SIGINT = r"""
import os, signal, time
# Each SIGINT taken from the kernel with who sent it: the terminal (si_code SI_KERNEL) or a
# process (si_pid). Blocked and waited for, not handled, so none is missed or merged late.
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
print("ready", flush=True)
deadline = None
while deadline is None or time.monotonic() < deadline:
    info = signal.sigtimedwait({signal.SIGINT}, 0.05 if deadline else 30)
    if info is None:
        continue
    sender = "terminal" if info.si_code == 0x80 else f"pid {info.si_pid}"
    print(f"SIGINT from {sender}", flush=True)
    deadline = deadline or time.monotonic() + 1.5
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pty job control")
def test_ctrl_c_at_a_terminal_reaches_the_command_once(tmp_path: Path) -> None:
    import pty
    import select

    script = tmp_path / "counts.py"
    script.write_text(COUNTS_SIGINT)
    policy = tmp_path / "learned.yaml"
    # A multi-line -c in the command: the policy's first comment must stay one line.
    command = [sys.executable, "-c", "import runpy, sys\nrunpy.run_path(sys.argv[1])", str(script)]
    args = _learn(tmp_path, policy, *command)
    env = _env()
    pid, fd = pty.fork()  # learn as the foreground job of a terminal of its own
    if pid == 0:  # pragma: no cover - the child execs at once
        try:
            os.chdir(tmp_path)
            os.execve(args[0], args, env)
        finally:
            os._exit(127)
    out, pressed = b"", False
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            if b"ready" in out and not pressed:
                os.write(fd, b"\x03")  # Ctrl-C: the terminal signals the whole job
                pressed = True
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
    finally:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done == 0:
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
        os.close(fd)
    text = out.decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == -signal.SIGINT, text
    # A forwarded copy shows as "from pid": a copy sent before the first SIGINT was taken
    # would be merged into it by the kernel, so this catches a regression most times.
    assert "SIGINT from terminal" in text and "SIGINT from pid" not in text, text
    learned = policy.read_text()
    assert "received SIGINT and stopped the command (it exited with 0)" in learned
    check = subprocess.run(
        [sys.executable, "-m", "appshield", "check", str(policy)],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
    )
    assert check.returncode == 0, check.stdout + check.stderr
