"""Real workloads for `learn -> check -> second run -> attacks`, shared by tests/learn and
scripts/learn_workloads.py (so the table in docs/learning.md comes from the tested code).

Four workloads: Flask under `gunicorn -w 3`, FastAPI under `uvicorn --workers 2`, Django's
`manage.py runserver` with its autoreloader child, and a batch worker that writes pid-, date-
and uuid-named files and uses `tempfile` with a prefix. Each is learned from a bounded loop
that includes an error path (a handler failing with a 500; the worker formats a traceback),
then its policy is checked, then a SECOND run (new pids, new temp names, another port, another
date) is enforced: it also takes a code path learning never saw, which only imports a
pure-Python stdlib module lazily (`getopt`, see `LAZY_MODULE`).
Last, code running inside the app tries an injected shell, a read of a file it never read
and a connect to a loopback port it never used; each must be blocked and reported in the
violations log (`APPSHIELD_LOG`), and must not have happened. With `mode="monitor"` the same
attacks are the control: reported, not blocked, and they do happen.

Servers listen on 127.0.0.1 only; every loop is bounded in count and time; every process
group started here is killed when its step ends, whatever happened.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from appshield.learn.records import Observation, Roots, observation_from_json, read_records

__all__ = [
    "ATTACKS",
    "LAZY_ANSWER",
    "LAZY_MODULE",
    "SERVER_LOOP",
    "WORKLOADS",
    "AttackResult",
    "Outcome",
    "Unavailable",
    "Workload",
    "brief",
    "clean_env",
    "free_port",
    "learn",
    "markdown_table",
    "read_violations",
    "record_headers",
    "records_by_process",
    "run_workload",
    "second_run",
]

ATTACKS = ("shell", "read", "connect")
# The module the lazy path imports; learning must not have seen it, or the path proves nothing.
# (Not `"bücher.example".encode("idna")`: werkzeug and Django import its stringprep at start-up.
# In FastAPI and the worker the connect attack takes that path: getaddrinfo encodes the host
# with the idna codec, which imports stringprep and the extension module unicodedata.)
LAZY_MODULE = "getopt"
LAZY_ANSWER = "[('-v', ''), ('--limit', '3')] ['report']"
SERVER_LOOP = ("/", "/fail") * 4  # the bounded request loop: one handler fails with a 500
STEP_TIMEOUT = 60.0  # seconds any one start, request loop or stop may take

# Shared by every app: what the attacker does once it runs code in a handler, and the code
# path that only the second run takes. Learning never calls either function.
ATTACKS_PY = textwrap.dedent(
    """
    import os
    import socket

    HERE = os.path.dirname(os.path.abspath(__file__))


    def attack(kind, port=0):
        if kind == "shell":
            os.system(f"echo ran > {HERE}/shell-ran.txt")
            return "shell ran"
        if kind == "read":
            with open(os.path.join(HERE, "secret.txt")) as f:
                return f.read()
        if kind == "connect":
            socket.create_connection(("127.0.0.1", int(port)), timeout=5).close()
            return "connected"
        raise ValueError(kind)


    def lazy_path():
        # Only the second run takes this path; its first use imports a pure-Python stdlib
        # module that learning never saw.
        import getopt

        options, rest = getopt.getopt(["-v", "--limit=3", "report"], "v", ["limit="])
        return f"{options} {rest}"
    """
)
SECRET = "the-secret-the-app-never-reads\n"

FLASK_APP = textwrap.dedent(
    """
    from flask import Flask, request

    import attacks

    app = Flask(__name__)


    @app.route("/")
    def index():
        return "hello"


    @app.route("/fail")
    def fail():
        raise RuntimeError("boom")


    @app.route("/lazy")
    def lazy():
        return attacks.lazy_path()


    @app.route("/attack/<kind>")
    def attack(kind):
        return attacks.attack(kind, request.args.get("port", 0))
    """
)

FASTAPI_APP = textwrap.dedent(
    """
    from fastapi import FastAPI

    import attacks

    app = FastAPI()


    @app.get("/")
    def index():
        return {"hello": "world"}


    @app.get("/fail")
    def fail():
        raise RuntimeError("boom")


    @app.get("/lazy")
    def lazy():
        return {"address": attacks.lazy_path()}


    @app.get("/attack/{kind}")
    def attack(kind: str, port: int = 0):
        return {"result": attacks.attack(kind, port)}
    """
)

DJANGO_MANAGE = textwrap.dedent(
    """
    import os
    import sys

    if __name__ == "__main__":
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")
        from django.core.management import execute_from_command_line

        execute_from_command_line(sys.argv)
    """
)
DJANGO_SETTINGS = textwrap.dedent(
    """
    SECRET_KEY = "learn-test-only-not-a-secret"
    DEBUG = True  # the error path renders the debug page, which reads the app's sources
    ALLOWED_HOSTS = ["127.0.0.1"]
    ROOT_URLCONF = "urls"
    INSTALLED_APPS = []
    MIDDLEWARE = []
    DATABASES = {}
    USE_TZ = True
    """
)
DJANGO_URLS = textwrap.dedent(
    """
    from django.http import HttpResponse
    from django.urls import path

    import attacks


    def index(request):
        return HttpResponse("hello")


    def fail(request):
        raise RuntimeError("boom")


    def lazy(request):
        return HttpResponse(attacks.lazy_path())


    def attack(request, kind):
        return HttpResponse(attacks.attack(kind, request.GET.get("port", 0)))


    urlpatterns = [
        path("", index),
        path("fail", fail),
        path("lazy", lazy),
        path("attack/<str:kind>", attack),
    ]
    """
)

WORKER = textwrap.dedent(
    """
    import datetime, json, os, subprocess, sys, tempfile, time, uuid

    import attacks
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
    if os.environ.get("LAZY"):
        print(attacks.lazy_path())
    if "--child" not in sys.argv:
        for kind in filter(None, os.environ.get("ATTACKS", "").split(",")):
            try:
                print(kind, attacks.attack(kind, os.environ.get("ATTACK_PORT", 0)))
            except PermissionError as exc:
                print("blocked:", kind, exc)
    attack = os.environ.get("ATTACK")
    if attack == "file":
        open("out/../secret.txt", "w").write("x")
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


class Unavailable(Exception):
    """A server this workload needs is not installed."""


@dataclass(frozen=True)
class Workload:
    """name: how the table names it; files: the app's sources; command: its argv for a port
    (the program first, as given after `appshield learn --`); server: it serves HTTP until
    stopped (else it runs to the end once)."""

    key: str
    name: str
    files: Mapping[str, str]
    command: Callable[[int], list[str]]
    server: bool = True


def _script(name: str) -> str:
    """A console script of this interpreter's environment (gunicorn, uvicorn)."""
    path = Path(sys.executable).with_name(name)
    if not path.exists():
        raise Unavailable(f"{name} is not installed next to {sys.executable}")
    return str(path)


def _common(**files: str) -> dict[str, str]:
    return {"attacks.py": ATTACKS_PY, "secret.txt": SECRET, **files}


def _gunicorn(port: int) -> list[str]:
    # gunicorn 23+ opens a control socket, by default ~/.gunicorn/gunicorn.ctl (one path for
    # every gunicorn of the user): here it stays in the app's folder.
    gunicorn = _script("gunicorn")
    return [gunicorn, "-w", "3", "-b", f"127.0.0.1:{port}", "--control-socket", "gunicorn.ctl",
            "app:app"]  # fmt: skip


def _uvicorn(port: int) -> list[str]:
    uvicorn = _script("uvicorn")
    return [uvicorn, "app:app", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"]


def _django(port: int) -> list[str]:
    return [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}"]


def _worker(port: int) -> list[str]:
    return [sys.executable, "worker.py", str(port)]


DJANGO_FILES = {"manage.py": DJANGO_MANAGE, "settings.py": DJANGO_SETTINGS, "urls.py": DJANGO_URLS}
WORKLOADS: dict[str, Workload] = {
    w.key: w
    for w in (
        Workload(
            "gunicorn", "Flask + `gunicorn -w 3`", _common(**{"app.py": FLASK_APP}), _gunicorn
        ),
        Workload(
            "uvicorn",
            "FastAPI + `uvicorn --workers 2`",
            _common(**{"app.py": FASTAPI_APP}),
            _uvicorn,
        ),
        Workload(
            "django",
            "Django `manage.py runserver` (autoreloader)",
            _common(**DJANGO_FILES),
            _django,
        ),
        Workload(
            "worker",
            "worker (pid/date/uuid/tempfile names)",
            _common(**{"worker.py": WORKER, "helper.py": HELPER}),
            _worker,
            server=False,
        ),
    )
}


def clean_env(*, bytecode: bool = False, **extra: str) -> dict[str, str]:
    """This environment without appshield's and OpenTelemetry's settings, plus `extra`.
    `bytecode`: let Python write bytecode, as production usually does (these machines set
    PYTHONDONTWRITEBYTECODE): `appshield run` then caches the compiled policy and a cache hit
    resolves no `{tmp}`, so the app's first `tempfile` use runs as it would unshielded."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPSHIELD_", "OTEL_"))}
    if bytecode:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def read_violations(log: Path) -> list[dict[str, object]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def _children(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return int(response.status), response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")


@contextmanager
def _serving(
    command: list[str], cwd: Path, port: int, env: dict[str, str], *, under_learn: bool
) -> Iterator[tuple[Callable[[str], tuple[int, str]], int]]:
    """Start `command` (a server under `appshield learn` or `run`) in its own process group,
    wait until it answers on 127.0.0.1:`port`, and yield a GET function and the command's
    pid. On leaving, SIGTERM the server's master (learn's child when `under_learn`: learn
    runs it as one; `run` becomes it), wait for a clean exit, and in any case kill the
    whole group."""
    errors_path = cwd / f"stderr-{port}.txt"
    errors = errors_path.open("w")
    proc = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=errors,
        start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STEP_TIMEOUT
        while True:
            try:
                with urllib.request.urlopen(base + "/", timeout=1) as response:
                    response.read()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise AssertionError(
                        f"{command} did not serve: {errors_path.read_text()}"
                    ) from None
                time.sleep(0.1)
        yield (lambda path: _get(base + path)), proc.pid
        master = _children(proc.pid)[0] if under_learn else proc.pid
        os.kill(master, signal.SIGTERM)
        code = proc.wait(timeout=STEP_TIMEOUT)
        assert code == 0, f"exit {code}: {errors_path.read_text()}"
    finally:
        errors.close()
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        if proc.poll() is None:
            proc.wait()


def _appshield(*args: str) -> list[str]:
    return [sys.executable, "-m", "appshield", *args]


@dataclass
class Learned:
    policy: Path
    text: str
    records: list[Observation]
    learn_pid: int  # the `appshield learn` process: the workload's first process is its child
    codes: list[int]
    checked: subprocess.CompletedProcess[str]

    @property
    def rules(self) -> int:
        return len(yaml.safe_load(self.text).get("rules") or [])

    def imported(self, module: str) -> bool:
        """Whether any process imported `module` (or a submodule) while learning."""
        return any(
            o.operation.category == "import"
            and (getattr(o.operation, "module", None) or "").split(".")[0] == module
            for o in self.records
        )


def learn(workload: Workload, folder: Path, *, bytecode: bool = False) -> Learned:
    """Write the app into `folder`, learn it (records kept in `folder/records`), check it."""
    for name, text in workload.files.items():
        (folder / name).write_text(text)
    policy, keep = folder / "appshield.yaml", folder / "records"
    port = free_port()
    command = _appshield("learn", "--keep", str(keep), "--out", str(policy), "--",
                         *workload.command(port))  # fmt: skip
    if workload.server:
        env = clean_env(bytecode=bytecode)
        with _serving(command, folder, port, env, under_learn=True) as (get, learn_pid):
            codes = [get(path)[0] for path in SERVER_LOOP]
    else:
        done = _run_batch(command, folder, clean_env(bytecode=bytecode))
        codes, learn_pid = [done.returncode], -1
    text = policy.read_text()
    checked = subprocess.run(
        _appshield("check", str(policy)), cwd=folder, capture_output=True, text=True,
        timeout=STEP_TIMEOUT, env=clean_env(bytecode=bytecode),
    )  # fmt: skip
    return Learned(policy, text, read_records(keep), learn_pid, codes, checked)


def _header(path: Path) -> dict[str, Any] | None:
    try:
        with path.open() as handle:
            data = json.loads(handle.readline())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "header" in data else None


def record_headers(folder: Path) -> list[dict[str, Any]]:
    """The header (pid, ppid, argv) of every process that recorded while learning."""
    return [h for p in sorted((folder / "records").glob("ops-*.jsonl")) if (h := _header(p))]


def records_by_process(folder: Path) -> dict[int, list[Observation]]:
    """pid -> what that one process recorded while learning (`read_records` merges them)."""
    found: dict[int, list[Observation]] = {}
    for path in sorted((folder / "records").glob("ops-*.jsonl")):
        lines = path.read_text().splitlines()
        header = json.loads(lines[0]) if lines else {}
        if "header" not in header:
            continue
        roots, pid = Roots.from_json(header.get("roots", {})), int(header["pid"])
        pids = (pid, int(header["ppid"]))
        mine = found.setdefault(pid, [])
        for line in lines[1:]:
            try:
                mine.append(observation_from_json(line, roots, pids))
            except (ValueError, KeyError, TypeError):
                continue  # a torn last line of a process killed mid-write
    return found


def _run_batch(
    command: list[str], cwd: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=STEP_TIMEOUT)
        return subprocess.CompletedProcess(command, proc.returncode, out, err)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        if proc.poll() is None:
            proc.wait()


@dataclass
class AttackResult:
    """reported: a violation names it; blocked: the log says so; happened: its effect is
    there (the shell's file, the secret in a response, a connection the listener accepted);
    stopped_at: the module whose import stopped it first, when that is what did (an
    extension module the connect needed, with the connect named in the report's `during`),
    else ''."""

    kind: str
    reported: bool
    blocked: bool
    happened: bool
    stopped_at: str = ""

    @property
    def stopped(self) -> bool:
        return self.reported and self.blocked and not self.happened


@dataclass
class SecondRun:
    codes: list[int]  # statuses of the loop, or the worker's exit code
    lazy: tuple[int, str]  # the lazy-import path's status and answer
    violations: list[dict[str, object]]  # everything reported that is not an attack
    attacks: list[AttackResult] = field(default_factory=list)
    stderr: str = ""

    @property
    def lazy_ok(self) -> bool:
        return self.lazy[0] in (0, 200) and LAZY_ANSWER in self.lazy[1]


def brief(violations: Sequence[Mapping[str, object]]) -> list[str]:
    """One line per violation, for assertion messages."""
    return [
        f"{v.get('category')} {v.get('target')} ({v.get('rule')}, pid {v.get('pid')})"
        for v in violations
    ]


def _is_attack(kind: str, violation: Mapping[str, object], port: int) -> bool:
    category, target = violation.get("category"), str(violation.get("target", ""))
    if kind == "shell":
        return category == "process" and "shell-ran" in target
    if kind == "read":
        return category == "file" and target.endswith("secret.txt")
    if category == "import":
        # A connect's own lazy import (`socket.create_connection` -> getaddrinfo -> the idna
        # codec -> unicodedata) denied first: the report names the connect it was part of.
        return kind == "connect" and f":{port}'" in str(violation.get("during", ""))
    return category == "network" and target.endswith(f":{port}")


def _listener() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(4)
    return sock


def _accepted(sock: socket.socket) -> bool:
    readable, _, _ = select.select([sock], [], [], 0.5)
    return bool(readable)


def second_run(
    workload: Workload,
    folder: Path,
    policy: Path,
    *,
    mode: str = "enforce",
    bytecode: bool = False,
) -> SecondRun:
    """Run the workload again under `policy` (another port, new pids and temp names, another
    date): the learned loop plus the lazy-import path, then the three attacks."""
    log = folder / f"violations-{mode}.jsonl"
    log.unlink(missing_ok=True)
    (folder / "shell-ran.txt").unlink(missing_ok=True)
    port = free_port()
    command = _appshield("run", "--policy", str(policy), "--mode", mode, "--",
                         *workload.command(port))  # fmt: skip
    env = clean_env(bytecode=bytecode, APPSHIELD_LOG=str(log), FAKE_DAY="2031-01-02")
    listener = _listener()
    target = int(listener.getsockname()[1])
    try:
        if workload.server:
            with _serving(command, folder, port, env, under_learn=False) as (get, _):
                codes = [get(path)[0] for path in SERVER_LOOP]
                lazy = get("/lazy")
                answers = {kind: get(f"/attack/{kind}?port={target}") for kind in ATTACKS}
            stderr = (folder / f"stderr-{port}.txt").read_text()
        else:
            env["LAZY"] = "1"
            done = _run_batch(command, folder, env)
            codes, stderr = [done.returncode], done.stderr
            lazy = (done.returncode, done.stdout)
            env.update(ATTACKS=",".join(ATTACKS), ATTACK_PORT=str(target))
            env.pop("LAZY")
            attacked = _run_batch(command, folder, env)
            answers = {kind: (attacked.returncode, attacked.stdout) for kind in ATTACKS}
            stderr += attacked.stderr
        found = read_violations(log)
        results = []
        for kind in ATTACKS:
            mine = [v for v in found if _is_attack(kind, v, target)]
            if kind == "shell":
                happened = (folder / "shell-ran.txt").exists()
            elif kind == "read":
                happened = SECRET.strip() in answers[kind][1]
            else:
                happened = _accepted(listener)
            blocked = bool(mine) and all(v.get("blocked") for v in mine)
            at = next((str(v["target"]) for v in mine if v.get("category") == "import"), "")
            results.append(AttackResult(kind, bool(mine), blocked, happened, at))
        others = [v for v in found if not any(_is_attack(k, v, target) for k in ATTACKS)]
        return SecondRun(codes, lazy, others, results, stderr)
    finally:
        listener.close()


@dataclass
class Outcome:
    workload: Workload
    learned: Learned
    second: SecondRun

    @property
    def ops_seen(self) -> int:
        return len(self.learned.records)

    @property
    def processes(self) -> int:
        """How many processes recorded while learning (merged into the one policy)."""
        return len(record_headers(self.learned.policy.parent))

    @property
    def blocked(self) -> int:
        return sum(a.stopped for a in self.second.attacks)


def run_workload(workload: Workload, folder: Path, *, bytecode: bool = False) -> Outcome:
    """learn -> check -> second run (enforced) -> attacks, for one workload in `folder`."""
    learned = learn(workload, folder, bytecode=bytecode)
    second = second_run(workload, folder, learned.policy, bytecode=bytecode)
    return Outcome(workload, learned, second)


def markdown_table(outcomes: Sequence[Outcome]) -> str:
    lines = [
        "| workload | processes recorded | ops seen while learning | rules learned | `check`"
        " | violations on the second run | attacks blocked |",
        "| --- | ---: | ---: | ---: | --- | ---: | --- |",
    ]
    for o in outcomes:
        check = "valid" if o.learned.checked.returncode == 0 else "INVALID"
        kinds = ", ".join(
            a.kind + (f" (at its import of {a.stopped_at})" if a.stopped_at else "")
            for a in o.second.attacks
            if a.stopped
        )
        lines.append(
            f"| {o.workload.name} | {o.processes} | {o.ops_seen} | {o.learned.rules} | {check}"
            f" | {len(o.second.violations)} | {o.blocked}/{len(ATTACKS)} ({kinds or 'none'}) |"
        )
    return "\n".join(lines)
