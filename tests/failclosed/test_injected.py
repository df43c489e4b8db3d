"""Exceptions injected from outside appshield's arguments: tracers, signal handlers, floods,
the recursion limit (issue 11, "Tracer, signal and stack cases").

Each case runs in a fresh interpreter (control without the shield, enforce, monitor) and is
judged by the outside world: canary files under a folder the policy denies writing, and a
loopback listener whose port the policy denies. The properties:

- enforce: no canary appears and the listener counts no connection, ever;
- monitor: every canary that appeared (every connection made) was reported;
- nothing hangs: each child runs under a watchdog (the subprocess timeout).

The control run shows that the same code really creates the canaries without appshield.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.failclosed._child import Listener, Run, run_child

# Every hooked operation, as a function of a unique name `n`: each one, if it gets through,
# leaves FORBIDDEN/<n> behind (or a connection on the listener, for "connect").
OPS = """\
import socket, subprocess, sqlite3, shutil
def _src(n):
    path = os.path.join(ALLOWED, "src-" + n)
    with open(path, "w"):
        pass
    return path
def op_open(n): open(os.path.join(FORBIDDEN, n), "w").close()
def op_fileio(n):
    import io
    io.FileIO(os.path.join(FORBIDDEN, n), "w").close()
def op_os_open(n): os.close(os.open(os.path.join(FORBIDDEN, n), os.O_CREAT | os.O_WRONLY))
def op_os_open_dir_fd(n):
    os.close(os.open(n, os.O_CREAT | os.O_WRONLY, dir_fd=FOLDER_FD))
def op_mkdir(n): os.mkdir(os.path.join(FORBIDDEN, n))
def op_rename(n): os.rename(_src(n), os.path.join(FORBIDDEN, n))
def op_symlink(n): os.symlink("/tmp", os.path.join(FORBIDDEN, n))
def op_link(n): os.link(_src(n), os.path.join(FORBIDDEN, n))
def op_mkfifo(n): os.mkfifo(os.path.join(FORBIDDEN, n))
def op_move(n): shutil.move(_src(n), os.path.join(FORBIDDEN, n))
def op_sqlite(n):
    sqlite3.connect(os.path.join(FORBIDDEN, n)).execute("create table t(x)")
def op_subprocess(n): subprocess.run(["touch", os.path.join(FORBIDDEN, n)])
def op_posix_spawn(n):
    os.waitpid(os.posix_spawn("/usr/bin/touch", ["touch", os.path.join(FORBIDDEN, n)],
                              dict(os.environ)), 0)
def op_connect(n):
    socket.create_connection(("127.0.0.1", PORT), timeout=5).close()
FOLDER_FD = os.open(FORBIDDEN, os.O_RDONLY)
FILE_OPS = [op_open, op_fileio, op_os_open, op_os_open_dir_fd, op_mkdir, op_rename,
            op_symlink, op_link, op_mkfifo, op_move, op_sqlite]
ALL_OPS = FILE_OPS + [op_subprocess, op_posix_spawn, op_connect]
RESULT["errors"] = {}
def attempt(op, n):
    try:
        op(n)
    except BaseException as exc:  # noqa: BLE001 - whatever stops it, the world decides
        key = type(exc).__name__
        RESULT["errors"][key] = RESULT["errors"].get(key, 0) + 1
"""


@pytest.fixture
def listener() -> Iterator[Listener]:
    # One per test: a connection an earlier test's child made, which the accepting thread
    # takes only later on a loaded machine, must never count as this test's.
    server = Listener()
    yield server
    server.close()


def _reported(run: Run, name: str) -> bool:
    return any(name in str(v.get("target", "")) for v in run.violations)


def _assert_enforced(run: Run) -> None:
    assert run.canaries == [], f"got through: {run.canaries}\n{run.stderr[-3000:]}"
    assert run.connections == 0, f"{run.connections} connections got through"
    assert "RESULT " in run.stdout, f"the child did not finish:\n{run.stderr[-3000:]}"


def _assert_monitored(run: Run, port: int) -> None:
    assert "RESULT " in run.stdout, f"the child did not finish:\n{run.stderr[-3000:]}"
    unreported = [name for name in run.canaries if not _reported(run, name)]
    assert unreported == [], f"happened without a report: {unreported}"
    if run.connections:
        assert _reported(run, f":{port}"), "a connection was made and not reported"


def _check(code: str, tmp_path: Path, listener: Listener, *, control_effects: bool = True) -> None:
    control = run_child(OPS + code, tmp_path / "control", listener, mode=None)
    assert "RESULT " in control.stdout, control.stderr[-3000:]
    if control_effects:
        assert control.canaries or control.connections, "the attack does not work without it"
    _assert_enforced(run_child(OPS + code, tmp_path / "enforce", listener, mode="enforce"))
    monitored = run_child(OPS + code, tmp_path / "monitor", listener, mode="monitor")
    _assert_monitored(monitored, listener.port)


RAISING_TRACER = """\
import sys, threading
class TracerError(Exception):
    pass
def tracer(frame, event, arg):
    # Raise only inside appshield's own frames: the app's frames are traced as usual.
    if "/appshield/" in frame.f_code.co_filename:
        raise TracerError(event)
    return tracer
"""


def test_raising_settrace_tracer(tmp_path: Path, listener: Listener) -> None:
    code = (
        RAISING_TRACER
        + """\
sys.settrace(tracer)
for i, op in enumerate(ALL_OPS):
    attempt(op, f"t{i}")
sys.settrace(None)
"""
    )
    _check(code, tmp_path, listener)


def test_raising_threading_settrace_tracer(tmp_path: Path, listener: Listener) -> None:
    code = (
        RAISING_TRACER
        + """\
threading.settrace(tracer)
def work():
    for i, op in enumerate(ALL_OPS):
        attempt(op, f"th{i}")
worker = threading.Thread(target=work)
worker.start()
worker.join()
threading.settrace(None)
"""
    )
    _check(code, tmp_path, listener)


def test_raising_setprofile_function(tmp_path: Path, listener: Listener) -> None:
    code = (
        RAISING_TRACER
        + """\
sys.setprofile(tracer)
for i, op in enumerate(ALL_OPS):
    attempt(op, f"p{i}")
sys.setprofile(None)
"""
    )
    _check(code, tmp_path, listener)


# The handler raises only while an operation is in flight (ARMED), so that the exception
# lands inside the operation (and so inside appshield), never in the loop's own scaffolding,
# which would end the child before it can report. At most two raises per attempt, and two
# nested handlers for them: whether an interpreter checks for pending signals at the start of
# an except block (3.10 can) or not, a second raise that lands before the first handler
# disarms is caught by the outer one, and there is no third.
HAMMER = """\
import signal, time
class Alarm(Exception):
    pass
class HardAlarm(BaseException):
    pass
ticks = [0]
ARMED = [False]
RAISED = [0]
def on_alarm(signum, frame):
    ticks[0] += 1
    if ARMED[0] and RAISED[0] < 2:
        RAISED[0] += 1
        raise (HardAlarm if ticks[0] % 3 == 0 else Alarm)()
def _count(exc):
    key = type(exc).__name__
    RESULT["errors"][key] = RESULT["errors"].get(key, 0) + 1
def armed_attempt(op, n):
    try:
        try:
            RAISED[0] = 0
            ARMED[0] = True
            op(n)
            ARMED[0] = False
        except BaseException as exc:
            ARMED[0] = False
            _count(exc)
    except BaseException as exc:
        ARMED[0] = False
        _count(exc)
"""


def test_raising_sigalrm_timer_over_denied_operations(tmp_path: Path, listener: Listener) -> None:
    code = (
        HAMMER
        + """\
signal.signal(signal.SIGALRM, on_alarm)
signal.setitimer(signal.ITIMER_REAL, 0.0005, 0.0005)
end = time.monotonic() + 2
i = 0
while time.monotonic() < end:
    armed_attempt(FILE_OPS[i % len(FILE_OPS)], f"s{i}")
    i += 1
signal.setitimer(signal.ITIMER_REAL, 0, 0)
signal.signal(signal.SIGALRM, signal.SIG_IGN)
RESULT["attempts"] = i
RESULT["ticks"] = ticks[0]
"""
    )
    try:
        _check(code, tmp_path, listener)
    except subprocess.TimeoutExpired:
        if sys.version_info >= (3, 11):
            raise
        # docs/limits.md: on 3.10 an exception raised at the start of a `with` block's
        # exception handling can skip its `__exit__`, leaving a lock held (any Python code's,
        # appshield's telemetry locks included); the child then hangs, which lets nothing
        # through but ends the run.
        pytest.xfail("3.10: a raising signal storm can leave a `with` lock held (limits.md)")


def test_signal_handler_opening_denied_files_while_main_opens_allowed(
    tmp_path: Path, listener: Listener
) -> None:
    # The handler lands inside appshield's work on the allowed opens (each a new path, so
    # each one is described in full): nothing it does may be exempt.
    code = """\
import signal, time
count = [0]
inside = [False]
def on_alarm(signum, frame):
    # A report takes longer than the interval: the handler does not nest in itself.
    if inside[0]:
        return
    inside[0] = True
    count[0] += 1
    try:
        open(os.path.join(FORBIDDEN, f"h{count[0]}"), "w").close()
    except PermissionError:
        pass
    inside[0] = False
signal.signal(signal.SIGALRM, on_alarm)
signal.setitimer(signal.ITIMER_REAL, 0.0005, 0.0005)
end = time.monotonic() + 2
i = 0
while time.monotonic() < end:
    try:
        with open(os.path.join(ALLOWED, f"a{i % 500}"), "w"):
            pass
    except BaseException:
        pass
    i += 1
signal.setitimer(signal.ITIMER_REAL, 0, 0)
signal.signal(signal.SIGALRM, signal.SIG_IGN)
RESULT["handler_runs"] = count[0]
RESULT["allowed_opens"] = i
"""
    _check(code, tmp_path, listener)


def test_signal_handler_committing_violations_during_a_flood(
    tmp_path: Path, listener: Listener
) -> None:
    # Reports take locks; a handler that reports while its thread holds one must not hang.
    code = """\
import signal, time
inside = [False]
def on_alarm(signum, frame):
    if inside[0]:  # reports take longer than the interval: no nesting in itself
        return
    inside[0] = True
    for j in range(3):
        attempt(FILE_OPS[j], f"hf{time.monotonic_ns()}-{j}")
    inside[0] = False
signal.signal(signal.SIGALRM, on_alarm)
signal.setitimer(signal.ITIMER_REAL, 0.0005, 0.0005)
end = time.monotonic() + 2
i = 0
while time.monotonic() < end:
    attempt(FILE_OPS[i % 3], f"f{i}")
    i += 1
signal.setitimer(signal.ITIMER_REAL, 0, 0)
signal.signal(signal.SIGALRM, signal.SIG_IGN)
RESULT["flood"] = i
"""
    _check(code, tmp_path, listener)


def test_every_operation_in_the_last_30_frames_before_the_recursion_limit(
    tmp_path: Path, listener: Listener
) -> None:
    code = """\
def deepest():
    depth = [0]
    def down(d):
        depth[0] = d
        down(d + 1)
    try:
        down(1)
    except RecursionError:
        pass
    return depth[0]
LIMIT = deepest()
def at_depth(d, op, n):
    if d > 1:
        return at_depth(d - 1, op, n)
    return attempt(op, n)
RESULT["limit"] = LIMIT
for i, op in enumerate(ALL_OPS):
    for slack in range(1, 31):
        try:
            at_depth(LIMIT - slack, op, f"r{i}-{slack}")
        except RecursionError:
            pass
"""
    _check(code, tmp_path, listener)


def test_a_c_profiler_keeps_working_and_changes_no_decision(
    tmp_path: Path, listener: Listener
) -> None:
    # cProfile on 3.10/3.11 installs its profiler from C: `sys.getprofile()` returns the
    # Profile object, which is not callable. appshield used to set it aside and put it back
    # with `sys.setprofile`, after which every call of the app raised TypeError. Now allowed
    # work runs as it does without the shield, the profile holds the app's calls, and the
    # denied operations stay denied.
    code = """\
import cProfile, pstats
def allowed_work(i):
    folder = os.path.join(ALLOWED, f"mods{i}")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"prof_mod_{i}.py"), "w") as f:
        f.write("VALUE = 41\\n")
    sys.path.insert(0, folder)
    value = __import__(f"prof_mod_{i}").VALUE + 1
    sys.path.remove(folder)
    done_ok = subprocess.run(["true"]).returncode == 0
    return value, done_ok
profiler = cProfile.Profile()
profiler.enable()
outcomes = [allowed_work(i) for i in range(3)]
for i, op in enumerate(ALL_OPS):
    attempt(op, f"cp{i}")
outcomes.append(allowed_work(9))
profiler.disable()
RESULT["outcomes"] = outcomes
RESULT["profiled_allowed_work"] = any(
    key[2] == "allowed_work" for key in pstats.Stats(profiler).stats
)
"""
    control = run_child(OPS + code, tmp_path / "control", listener, mode=None)
    assert control.result, control.stderr[-3000:]
    for mode in ("enforce", "monitor"):
        run = run_child(OPS + code, tmp_path / mode, listener, mode=mode)
        assert run.result.get("outcomes") == control.result["outcomes"], run.stderr[-3000:]
        assert run.result.get("profiled_allowed_work") is True
        assert "TypeError" not in run.result.get("errors", {}), run.result
        if mode == "enforce":
            _assert_enforced(run)
        else:
            _assert_monitored(run, listener.port)


def test_first_violation_from_a_finalizer_at_interpreter_shutdown(
    tmp_path: Path, listener: Listener
) -> None:
    # A `__del__` that runs while the interpreter clears its modules commits the process's
    # first violation, so the telemetry is built there. 3.10 and 3.11 still start a thread
    # at that point but never let it run: waiting for a helper thread to build the reporter
    # hung the exit for ever. Now the exit completes and the write stays denied; the watchdog
    # (the timeout) turns a hang into a failure.
    code = """\
class Late:
    # Bound now: the builtins and modules are cleared before this runs.
    def __del__(self, open=open, join=os.path.join, folder=FORBIDDEN, sys=sys):
        try:
            open(join(folder, "at-exit"), "w").close()
        except BaseException as exc:
            sys.stderr.write("finalizer: %s\\n" % type(exc).__name__)
KEEP = Late()
"""
    control = run_child(code, tmp_path / "control", listener, mode=None, timeout=60)
    assert control.canaries == ["at-exit"], control.stderr[-3000:]
    for mode in ("enforce", "monitor"):
        run = run_child(code, tmp_path / mode, listener, mode=mode, timeout=60)
        assert run.returncode == 0, run.stderr[-3000:]
        # Whatever the finalizer could still import, the write did not happen: at this point
        # appshield cannot always describe the path (its own lazy imports fail), and an
        # operation it cannot describe is denied, in monitor mode too.
        assert run.canaries == [], (mode, run.stderr[-3000:])
        assert "finalizer:" in run.stderr


def test_import_lock_left_held_by_an_interrupted_import(tmp_path: Path, listener: Listener) -> None:
    # What a raising signal handler leaves behind when it lands between importlib's
    # `_imp.acquire_lock()` and the `try` that gives it back (the storm above hits it now and
    # then): the import system's global lock, held for ever by the app's thread. From then on
    # no other thread can import anything, appshield's helper threads (the telemetry build,
    # the parts loaded on first use) included. Waiting for them must not hang the app, and
    # nothing may get through unreported.
    code = """\
import _imp
_imp.acquire_lock()
for i, op in enumerate(ALL_OPS):
    attempt(op, f"l{i}")
"""
    _check(code, tmp_path, listener)


def test_import_lock_left_held_by_another_thread(tmp_path: Path, listener: Listener) -> None:
    # The same lock left held by a thread that is not the one reporting: it cannot be lent to
    # appshield's helpers, so the telemetry is never built. Enforce still lets nothing
    # through; monitor lets the operations happen (its promise) and says at exit, on stderr,
    # how many violations it could not report: never a hang, never silence.
    code = """\
import _imp, threading
held = threading.Event()
def hold_for_ever():
    _imp.acquire_lock()
    held.set()
    threading.Event().wait()
threading.Thread(target=hold_for_ever, daemon=True).start()
held.wait()
for i, op in enumerate(FILE_OPS):
    attempt(op, f"o{i}")
"""
    control = run_child(OPS + code, tmp_path / "control", listener, mode=None)
    assert control.canaries, control.stderr[-3000:]
    _assert_enforced(run_child(OPS + code, tmp_path / "enforce", listener, mode="enforce"))
    monitored = run_child(OPS + code, tmp_path / "monitor", listener, mode="monitor")
    assert "RESULT " in monitored.stdout, monitored.stderr[-3000:]
    unreported = [name for name in monitored.canaries if not _reported(monitored, name)]
    if unreported:
        assert "violation(s) could not be reported" in monitored.stderr, monitored.stderr
