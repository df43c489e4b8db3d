"""A violation committed inside the app's own logging never hangs the app.

The `appshield` logger's warning goes to the app's handlers. Made from a thread that is
itself inside logging (a handler's `emit` opening its file, `basicConfig` creating its
handler) or importing a module, a plain `logger.warning` waited for ever: for
`logging._lock`, which the same thread held while the first violation's telemetry was built
on another thread; for another handler's lock, held by a thread in that handler's `emit`
waiting for this one; for a handler whose `emit` waits for the module this thread imports.
Each scenario runs in a real subprocess with real threads; the child dumps its stacks and
exits after 20 s, and the parent gives up after 60 s, so a regression fails, never hangs.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from appshield.telemetry import logsink
from tests.telemetry.apps import clean_env

POLICY = """\
version: 1
name: logging-deadlock
defaults: {process: allow, file: allow, network: allow, import: allow}
rules:
  - id: watch-logs
    category: file
    action: alert
    match: {path: "WATCHED/**", access: write}
"""

PRELUDE = """\
import faulthandler, json, logging, os, sys, threading, time
faulthandler.dump_traceback_later(20, exit=True)  # a hang fails with every thread's stack
import appshield
WATCHED = os.environ["TEST_WATCHED"]
appshield.install(os.environ["TEST_POLICY"])
"""


def _run(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    watched = tmp_path / "watched"
    watched.mkdir()
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.replace("WATCHED", str(watched)))
    script = tmp_path / "app.py"
    script.write_text(PRELUDE + textwrap.dedent(body))
    env = clean_env(TEST_POLICY=str(policy), TEST_WATCHED=str(watched))
    done = subprocess.run(
        [sys.executable, str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    return done


def test_first_violation_while_basic_config_holds_the_logging_lock(tmp_path: Path) -> None:
    """`basicConfig(filename=...)` opens its file holding `logging._lock`: the process's
    first violation, whose telemetry is built on a helper thread the reporter waits for."""
    done = _run(
        tmp_path,
        """
        path = os.path.join(WATCHED, "app.log")
        logging.basicConfig(filename=path, level=logging.INFO)
        logging.getLogger("app").info("started")
        """,
    )
    assert done.stderr == ""
    lines = (tmp_path / "watched" / "app.log").read_text().splitlines()
    # The warning was made before the handler existed, and reached it once it did (at the
    # latest by the exit flush, before logging's own exit closes the file): delivered, not
    # dropped.
    assert "INFO:app:started" in lines
    (warning,) = [line for line in lines if line.startswith("WARNING:appshield:")]
    assert "alert file open" in warning and "app.log" in warning


def test_two_handlers_each_reporting_from_inside_its_emit(tmp_path: Path) -> None:
    """Two threads, each in a different handler's `emit` (holding its lock) at the same
    time, each committing a violation there: each warning goes to both handlers."""
    done = _run(
        tmp_path,
        """
        both_inside = threading.Barrier(2, timeout=10)
        seen = []

        class Sidecar(logging.Handler):
            def __init__(self, tag):
                super().__init__()
                self.tag = tag

            def emit(self, record):
                seen.append((self.tag, record.name, record.threadName))
                if record.name.startswith("user"):
                    both_inside.wait()  # the other thread holds the other handler
                    with open(os.path.join(WATCHED, self.tag), "w"):
                        pass

        # the first violation (the telemetry's build) out of the way
        open(os.path.join(WATCHED, "warm-up"), "w").close()
        first, second = Sidecar("h1"), Sidecar("h2")
        logging.root.addHandler(first)
        logging.root.addHandler(second)
        for name, handler in (("user1", first), ("user2", second)):
            user = logging.getLogger(name)
            user.propagate = False
            user.addHandler(handler)
        threads = [
            threading.Thread(target=logging.getLogger(n).warning, args=("x",), name=n)
            for n in ("user1", "user2")
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        deadline = time.monotonic() + 10
        while len(seen) < 6 and time.monotonic() < deadline:
            time.sleep(0.01)
        print(json.dumps({"seen": sorted(seen)}))
        """,
    )
    out = json.loads(done.stdout)
    ours = sorted(tuple(entry) for entry in out["seen"] if entry[1] == "appshield")
    # Each handler got both warnings, each named after the thread that committed it.
    assert ours == [
        ("h1", "appshield", "user1"),
        ("h1", "appshield", "user2"),
        ("h2", "appshield", "user1"),
        ("h2", "appshield", "user2"),
    ]


def test_a_handler_waiting_for_the_module_this_thread_imports(tmp_path: Path) -> None:
    """Thread A imports a module whose body commits a violation (A holds its import lock);
    thread B is inside a handler's `emit` (holding its lock), importing that same module."""
    (tmp_path / "slowmod.py").write_text(
        textwrap.dedent(
            """
            import os, time
            import __main__
            __main__.importing.set()          # B may now import this module too
            __main__.handler_inside.wait(10)  # B holds the handler and waits for this module
            time.sleep(0.2)                   # ... blocked on its import lock by now
            open(os.path.join(os.environ["TEST_WATCHED"], "slow"), "w").close()
            """
        )
    )
    done = _run(
        tmp_path,
        """
        sys.path.insert(0, os.path.dirname(WATCHED))
        importing, handler_inside = threading.Event(), threading.Event()
        got = []

        class Lazy(logging.Handler):
            def emit(self, record):
                got.append((record.name, record.threadName))
                if record.name == "user":
                    importing.wait(10)
                    handler_inside.set()
                    import slowmod  # noqa: F401  (waits for thread A's import)

        open(os.path.join(WATCHED, "warm-up"), "w").close()  # the telemetry's build
        logging.root.addHandler(Lazy())
        a = threading.Thread(target=__import__, args=("slowmod",), name="A")
        b = threading.Thread(target=logging.getLogger("user").warning, args=("x",), name="B")
        a.start()
        b.start()
        a.join()
        b.join()
        deadline = time.monotonic() + 10
        while len(got) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        print(json.dumps(sorted(got)))
        """,
    )
    assert json.loads(done.stdout) == [["appshield", "A"], ["user", "B"]]


def test_a_handler_with_a_plain_lock_whose_emit_commits_a_violation(tmp_path: Path) -> None:
    """A handler of the app's own kind, with a lock that cannot be taken twice: the warning
    its emit's violation makes must not come back into it on the same thread."""
    done = _run(
        tmp_path,
        """
        got = []

        class Plain(logging.Handler):
            def createLock(self):
                self.lock = threading.Lock()

            def emit(self, record):
                got.append((record.name, record.threadName))
                if record.name == "user":
                    open(os.path.join(WATCHED, "plain"), "w").close()

        open(os.path.join(WATCHED, "warm-up"), "w").close()  # the telemetry's build
        logging.root.addHandler(Plain())
        logging.getLogger("user").warning("x")
        deadline = time.monotonic() + 10
        while len(got) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        print(json.dumps(got))
        """,
    )
    assert json.loads(done.stdout) == [["user", "MainThread"], ["appshield", "MainThread"]]


def test_outside_logging_the_warning_is_made_on_the_spot(tmp_path: Path) -> None:
    """The ordinary case is unchanged: the record is handled before the call returns, on
    the thread that committed the violation, naming appshield's reporter as its caller."""
    done = _run(
        tmp_path,
        """
        got = []

        class Keep(logging.Handler):
            def emit(self, record):
                got.append((record.threadName, threading.current_thread().name,
                            record.module, record.funcName))

        logging.root.addHandler(Keep())
        open(os.path.join(WATCHED, "x"), "w").close()
        print(json.dumps(got))
        """,
    )
    assert json.loads(done.stdout) == [["MainThread", "MainThread", "reporter", "_warn"]]


def test_a_thread_inside_logging_is_recognised() -> None:
    """The check `warn` makes: a handler's lock or `logging._lock` held by this thread.
    (Asked of one lock at a time: another test may have left a handler's lock held.)"""
    handler = logging.Handler()
    lock = handler.lock
    try:
        assert not logsink._owned(lock)
        with lock:  # type: ignore[union-attr]
            assert logsink._owned(lock)
            assert logsink._holds_a_logging_lock()
        # held by another thread only: this one is not inside logging
        taken, release = threading.Event(), threading.Event()

        def hold() -> None:
            with lock:  # type: ignore[union-attr]
                taken.set()
                release.wait(10)

        other = threading.Thread(target=hold)
        other.start()
        try:
            assert taken.wait(10)
            assert not logsink._owned(lock)
        finally:
            release.set()
            other.join(10)
        with logging._lock:  # type: ignore[attr-defined]
            assert logsink._holds_a_logging_lock()
    finally:
        handler.close()


def test_a_lock_of_another_kind_counts_when_taken() -> None:
    """A handler whose lock is not an RLock cannot say who holds it: taken counts as held
    (its warning is delivered by the log thread), and a lock object of no known kind too."""
    plain = threading.Lock()
    assert not logsink._owned(plain)
    with plain:
        assert logsink._owned(plain)
    assert logsink._owned(object())
    assert not logsink._owned(None)
