"""One measurement in a fresh interpreter: `python _worker.py OP MODE N REPS [POLICY]`.

MODE is one of:

- `bare`: nothing installed;
- `noop_hook`: `sys.addaudithook(lambda e, a: None)` and nothing else, the floor of any design
  that decides in a Python audit hook (every audit event calls it);
- `compiled_floor`: appshield's compiled audit hook, told of no event, and nothing else: the
  floor of its design (CPython's own cost per event once any hook is set, and the hook's
  first test);
- `shield`: `appshield.install(POLICY)` first;
- `shield_python`: the same, with the Python audit hook where the compiled one was built
  (run with `APPSHIELD_PURE_PYTHON=1`: `run.py --with-python-hook`);
- `aikido`: Aikido Zen's documented start-up (`import aikido_zen; aikido_zen.protect()`, the
  first lines of the app, before its other imports); run under an interpreter that has
  `aikido_zen` installed, with its own environment (`run.py --aikido-python`).

Prints one JSON list: nanoseconds per operation for each repetition. The parent (`run.py`)
interleaves the modes and takes medians, so that machine noise hits every side alike.
"""

from __future__ import annotations

import sys

if __name__ == "__main__" and sys.argv[2:3] == ["aikido"]:
    # Zen's start-up goes before the app's imports (its README): it patches the modules
    # imported after it as they load, and those imported before it at once.
    import importlib

    importlib.import_module("aikido_zen").protect()

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable

Loop = Callable[[int], None]


def _open_loop(work: str) -> Loop:
    path = os.path.join(work, "small.txt")
    with open(path, "w") as f:
        f.write("x" * 100)

    def loop(n: int) -> None:
        for _ in range(n):
            open(path, "rb").close()

    return loop


def _open_relative_loop(work: str) -> Loop:
    """`open("small.txt")` from the folder that holds it: a relative path, as apps open
    their configuration and templates."""
    with open(os.path.join(work, "small.txt"), "w") as f:
        f.write("x" * 100)
    os.chdir(work)

    def loop(n: int) -> None:
        for _ in range(n):
            open("small.txt", "rb").close()

    return loop


def _listdir_loop(work: str) -> Loop:
    """`os.listdir` of the same folder (absolute), as apps scan a folder of plugins or
    uploads on each request."""
    for name in ("a.txt", "b.txt", "c.txt"):
        with open(os.path.join(work, name), "w") as f:
            f.write("x")

    def loop(n: int) -> None:
        for _ in range(n):
            os.listdir(work)

    return loop


def _scandir_here_loop(work: str) -> Loop:
    """`os.scandir()` of the current folder, closed at once."""
    for name in ("a.txt", "b.txt", "c.txt"):
        with open(os.path.join(work, name), "w") as f:
            f.write("x")
    os.chdir(work)

    def loop(n: int) -> None:
        for _ in range(n):
            os.scandir().close()

    return loop


def _touch_loop(work: str) -> Loop:
    """`Path.touch()` of an existing file (`os.utime(path)`), as a heartbeat or a lock file
    is touched."""
    path = os.path.join(work, "touched")
    with open(path, "w"):
        pass

    def loop(n: int) -> None:
        for _ in range(n):
            os.utime(path)

    return loop


def _makedirs_loop(work: str) -> Loop:
    """`os.makedirs(folder, exist_ok=True)` of a folder that is there (one `os.mkdir` that
    fails with EEXIST), as apps make sure of an upload folder on each request."""
    path = os.path.join(work, "uploads")

    def loop(n: int) -> None:
        for _ in range(n):
            os.makedirs(path, exist_ok=True)

    return loop


def _sqlite_loop(work: str) -> Loop:
    """`sqlite3.connect(path).close()` of an existing database, as an app that opens its
    connection per request does (Django's default with SQLite)."""
    import sqlite3

    path = os.path.join(work, "app.db")
    sqlite3.connect(path).close()

    def loop(n: int) -> None:
        for _ in range(n):
            sqlite3.connect(path).close()

    return loop


def _subprocess_loop(work: str) -> Loop:
    def loop(n: int) -> None:
        for _ in range(n):
            subprocess.run(["true"], check=True)

    return loop


def _connect_loop(work: str) -> Loop:
    port = int(os.environ["BENCH_PORT"])

    def loop(n: int) -> None:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.connect(("127.0.0.1", port))
            s.close()

    return loop


def _create_connection_loop(work: str) -> Loop:
    port = int(os.environ["BENCH_PORT"])

    def loop(n: int) -> None:
        for _ in range(n):
            socket.create_connection(("127.0.0.1", port)).close()

    return loop


def _resolve_loop(work: str) -> Loop:
    def loop(n: int) -> None:
        for _ in range(n):
            socket.getaddrinfo("localhost", 80)

    return loop


def _cached_import_loop(work: str) -> Loop:
    import json  # noqa: F401  (already imported: the statement's cost is measured)

    code = compile("for _ in range(n):\n    import json\n", "<bench>", "exec")

    def loop(n: int) -> None:
        exec(code, {"n": n})

    return loop


def _exec_import_loop(work: str) -> Loop:
    import json  # noqa: F401  (already imported: compiling and running the string is measured)

    def loop(n: int) -> None:
        for _ in range(n):
            exec("import json", {})

    return loop


# Operations that raise an audit event appshield has no handler for: what any Python audit
# hook costs on them (`noop_hook`) is the floor, and appshield should stay near it.


def _compile_loop(work: str) -> Loop:  # event `compile`
    def loop(n: int) -> None:
        for _ in range(n):
            compile("x = 1", "<bench>", "exec")

    return loop


def _exec_code_loop(work: str) -> Loop:  # event `exec`
    code = compile("x = 1", "<bench>", "exec")

    def loop(n: int) -> None:
        namespace: dict[str, object] = {}
        for _ in range(n):
            exec(code, namespace)

    return loop


def _getframe_loop(work: str) -> Loop:  # event `sys._getframe`
    getframe = sys._getframe

    def loop(n: int) -> None:
        for _ in range(n):
            getframe()

    return loop


def _function_code_loop(work: str) -> Loop:  # event `object.__getattr__`
    def function() -> None:
        pass

    def loop(n: int) -> None:
        for _ in range(n):
            function.__code__  # noqa: B018  (the read is what is measured)

    return loop


def _frame_code_loop(work: str) -> Loop:  # event `object.__getattr__`
    frame = sys._getframe()

    def loop(n: int) -> None:
        for _ in range(n):
            frame.f_code  # noqa: B018  (the read is what is measured)

    return loop


def _first_import_loop(work: str) -> Loop:
    """`import` of a module this process has not imported, as an app's start-up imports its
    modules: one of the modules run.py wrote to BENCH_MODULES before any worker started,
    with their bytecode compiled, as an image or a second start has it. (Until round 32 each
    repetition wrote its modules itself: every file was then a first open for writing of a
    new path, decided in full, and that decision, about 185k instructions, was counted as
    part of the import. `open_new` measures it on its own.)"""
    folder = os.environ["BENCH_MODULES"]
    sys.path.insert(0, folder)
    counter = [0]

    def loop(n: int) -> None:
        base = counter[0]
        counter[0] += n
        names = [f"benchmod_{i}" for i in range(base, base + n)]
        t0 = time.perf_counter_ns()
        for name in names:
            __import__(name)
        loop.elapsed = time.perf_counter_ns() - t0  # type: ignore[attr-defined]

    return loop


def _open_new_loop(work: str) -> Loop:
    """`open(path, "w")` of a path never opened before: an app writing an upload, a report
    or a temporary file. Each is a first decision (the path resolved, the rules asked)."""
    counter = [0]

    def loop(n: int) -> None:
        base = counter[0]
        counter[0] += n
        for i in range(base, base + n):
            open(os.path.join(work, f"new_{i}.txt"), "w").close()

    return loop


def _violation_loop(distinct: bool) -> Callable[[str], Loop]:
    def make(work: str) -> Loop:
        denied = os.path.join(work, "denied")
        os.makedirs(denied, exist_ok=True)
        counter = [0]

        def loop(n: int) -> None:
            for _ in range(n):
                counter[0] += 1
                target = os.path.join(denied, f"f{counter[0]}" if distinct else "same")
                try:
                    open(target, "w").close()
                except PermissionError:
                    pass

        return loop

    return make


OPS: dict[str, Callable[[str], Loop]] = {
    "open": _open_loop,
    "open_relative": _open_relative_loop,
    "listdir": _listdir_loop,
    "scandir_here": _scandir_here_loop,
    "touch": _touch_loop,
    "makedirs": _makedirs_loop,
    "sqlite": _sqlite_loop,
    "subprocess": _subprocess_loop,
    "connect": _connect_loop,
    "create_connection": _create_connection_loop,
    "getaddrinfo": _resolve_loop,
    "import_cached": _cached_import_loop,
    "exec_import": _exec_import_loop,
    "compile": _compile_loop,
    "exec_code": _exec_code_loop,
    "getframe": _getframe_loop,
    "function_code": _function_code_loop,
    "frame_code": _frame_code_loop,
    "import_first": _first_import_loop,
    "open_new": _open_new_loop,
    "violation_repeated": _violation_loop(False),
    "violation_distinct": _violation_loop(True),
}


def main() -> None:
    op, mode, n, reps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    work = tempfile.mkdtemp(prefix="appshield-bench-")
    try:
        print(json.dumps(measure(op, mode, n, reps, work)))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def measure(op: str, mode: str, n: int, reps: int, work: str) -> list[float]:
    loop = OPS[op](work)
    handle = None
    if mode in ("shield", "shield_python"):
        import appshield

        handle = appshield.install(sys.argv[5])
    elif mode == "compiled_floor":
        # appshield's compiled hook told of no event: it answers every event at its first
        # test (a hash and a table miss). What CPython's audit machinery costs once any hook
        # is set, plus that test: the floor of the compiled hook.
        from appshield import _c_audit_hook, runtime

        _c_audit_hook.install(lambda event, args: None, (), runtime._compiled_hook_parts())
    elif mode == "noop_hook":
        sys.addaudithook(lambda e, a: None)
    elif mode not in ("bare", "aikido"):
        raise SystemExit(f"unknown mode {mode!r}")
    try:
        loop(max(1, n // 10))  # warm-up: caches, lazy imports, first-violation telemetry set-up
        results = []
        for _ in range(reps):
            t0 = time.perf_counter_ns()
            loop(n)
            elapsed = getattr(loop, "elapsed", None) or (time.perf_counter_ns() - t0)
            results.append(elapsed / n)
        return results
    finally:
        if handle is not None:
            handle.uninstall()  # so the clean-up of the work folder is not itself refused


if __name__ == "__main__":
    main()
