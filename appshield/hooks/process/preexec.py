"""A `preexec_fn` must not change the program between the decision and the exec.

subprocess hands `_posixsubprocess.fork_exec` the app's `preexec_fn`. The C function forks,
runs it in the child, then execs the candidates it was handed, with no audit event. The
parent judged the program before the fork (and hands the child the judged file's absolute
path), but `preexec_fn` still runs before the exec and can change what that path leads to:
re-point a symlink (`true` -> `touch`), rename another file over it, `chmod +x` a file where
no program was found, `chroot` the child.

So when a `preexec_fn` is given, the fork_exec wrapper hands the C function a `Check` in its
place (`run_checked`). In the child, the `Check` runs the app's function, then looks at every
candidate again: the judged program must still be the very same file (device, inode and
inode-change time, through every symlink, as execve follows them: a re-pointed link, a file
renamed over it, a rewrite or a chmod all change one of them), and a candidate where nothing
could run must still hold nothing that can run.

- Unchanged (the common case): the child says so on a pipe and goes on to its exec.
- Changed: the child asks the parent and waits for its answer. The parent describes the
  changed candidates as they are now and decides them as starts (api `subprocess.preexec_fn`):
  a violation is reported, in both modes, and in enforce `PolicyViolation` is raised from the
  parent's call (Popen raises it, as for any refused start) and the child is reaped. The
  parent answers "go" only when that decision lets the start happen. A change the parent
  cannot see (the child changed root, namespace or user, so the same path names another file
  for it alone) cannot be judged: `implicit:undescribable`, reported; refused in enforce.
- The child `_exit(127)`s before the exec on anything else: no answer, the parent gone, or
  pipes that are no longer appshield's (the app's function closed or replaced them: then a
  change cannot be reported, so it is refused in monitor mode too).

Why the parent decides: the child is a copy of a process that may have been holding locks
(the reporter's, logging's) in other threads at the fork, so it must not report; and the
parent is where the app sees the outcome. The child only makes the system calls it needs
(stat, access, fstat, read, write, close, `_exit`) on values it was handed; it imports and
builds nearly nothing. The wrapper costs a `subprocess` call only when a `preexec_fn` is given
(two pipes, one byte each way); other starts never reach this module.

Limits (docs/limits.md): a `preexec_fn` that execs by itself is judged there, by the exec
hooks of the child (the child reports; the parent sees a `SubprocessError`); code that
deliberately attacks the check (a tracer, profiler, `sys.monitoring` callback or signal
handler that rewrites the check's frame or runs after it) is tampering, out of reach.
"""

from __future__ import annotations

import os

from appshield._proc_describe import describe_start
from appshield.decision import Decision
from appshield.errors import PolicyViolation
from appshield.hooks import _gate
from appshield.hooks.process import PREEXEC_INDEX  # read by the fork_exec wrapper, kept there
from appshield.operations import UndescribedOp
from appshield.settings import STARTUP

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, NamedTuple
else:
    from appshield._records import NamedTuple  # typing's costs ~0.7 M per class at start-up

__all__ = ["API", "PREEXEC_INDEX", "Expected", "run_checked"]

API = "subprocess.preexec_fn"

# Each candidate the child may run, with the identity it must still have (None: nothing that
# can run may be there).
Expected = tuple[tuple[bytes, tuple[int, int, int] | None], ...]

_SAME = b"="  # child -> parent: nothing changed, going on to the exec
_ASK = b"?"  # child -> parent: something changed, waiting for the answer
_GO = b"+"  # parent -> child: decided, the start may happen
_REFUSED = 127  # the exit status of a child that does not exec (as a shell's "not found")
_SIGKILL = 9

# Bound once: the child runs these after the app's own code, which may rebind `os.*`.
_stat = os.stat
_fstat = os.fstat
_access = os.access
_read = os.read
_write = os.write
_close = os.close
_exit = os._exit
_X_OK = os.X_OK
_S_IFMT = 0o170000
_S_IFREG = 0o100000


def _now(path: bytes) -> tuple[int, int, int] | None:
    """What execve would run at `path` now: the file's identity, or None when nothing there
    can run (missing, not a regular file, not executable)."""
    try:
        info = _stat(path)
    except OSError:
        return None
    if info.st_mode & _S_IFMT != _S_IFREG or not _access(path, _X_OK):
        return None
    return info.st_dev, info.st_ino, info.st_ctime_ns


def _pipe_id(fd: int) -> tuple[int, int] | None:
    try:
        info = _fstat(fd)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def _close_quietly(*fds: int) -> None:
    for fd in fds:
        try:
            _close(fd)
        except OSError:
            pass  # already closed: nothing is decided here


class Check(NamedTuple):
    """The `preexec_fn` the C function gets: immutable, so the app's function cannot change
    what is compared (short of attacking appshield, see the module docstring)."""

    app: Any  # the app's preexec_fn
    expected: Expected
    report: int  # the child's end of the pipe to the parent
    verdict: int  # the child's end of the pipe from the parent
    parent_ends: tuple[int, int]  # the parent's ends, inherited by the fork: closed at once
    pipes: tuple[tuple[int, int] | None, tuple[int, int] | None]  # `_pipe_id` of the two ends

    def __call__(self) -> None:
        # Before the app's code runs: it must not answer for the parent.
        _close_quietly(*self.parent_ends)
        self.app()  # its exception reaches the parent as subprocess reports it, as before
        ours = _pipe_id(self.report) == self.pipes[0] and _pipe_id(self.verdict) == self.pipes[1]
        for path, identity in self.expected:
            if _now(path) != identity:
                break
        else:
            if ours:
                try:
                    _write(self.report, _SAME)
                except OSError:
                    pass  # the parent reads an end of file: nothing to report either way
            return
        if ours:
            try:
                _write(self.report, _ASK)
                if _read(self.verdict, 1) == _GO:
                    return
            except OSError:
                pass  # no answer: refused below
        _exit(_REFUSED)


def _pipe() -> tuple[int, int]:
    """A pipe whose ends are not 0-2 (the child puts its standard streams there before
    `preexec_fn` runs), as subprocess does for its own error pipe."""
    ends = []
    low = []
    try:
        for fd in os.pipe():
            while fd < 3:
                low.append(fd)
                fd = os.dup(fd)
            ends.append(fd)
    except BaseException:
        _close_quietly(*ends)
        raise
    finally:
        _close_quietly(*low)
    return ends[0], ends[1]


def _prepare_again(
    paths: tuple[bytes, ...], argv: Any, env: Any, cwd: Any
) -> tuple[list[tuple[Any, str]], None]:
    described = []
    for path in paths:
        start = describe_start(path, argv, env, cwd, missing=True, startup_path=STARTUP.path)
        if start is not None:
            described.append((start.op, API))
    return described, None


def _judge_again(shield: Any, call: tuple[Any, ...], expected: Expected) -> None:
    """The child saw a change: decide the candidates that changed, as they are now. Raises
    `PolicyViolation` when the start must not happen."""
    changed = tuple(path for path, identity in expected if _now(path) != identity)
    if changed:
        _gate.judge_call(shield, "process", API, _prepare_again, changed, call[0], call[5], call[4])
        return
    # The same paths still name the judged files here: the child sees another file system.
    mode = shield.policy.mode
    operation = UndescribedOp("process", API, "changed only in the child")
    decision = Decision("deny", "implicit:undescribable", mode != "monitor", mode)
    shield.report_undescribable(operation, decision, API)
    if decision.blocked:
        raise PolicyViolation(
            decision.rule_id, "process", API, operation.target, "deny", shield.policy_name
        )


def _reap(pid: int) -> None:
    """The child of a start that raises from here: Popen never learns its pid."""
    try:
        os.kill(pid, _SIGKILL)
    except OSError:
        pass  # already gone
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass  # reaped by the app's own SIGCHLD handling


def run_checked(
    wrapped: Callable[..., Any], shield: Any, call: tuple[Any, ...], expected: Expected
) -> Any:
    """Call fork_exec (`wrapped`) with the converted arguments `call`, its `preexec_fn`
    replaced by a `Check` of `expected`, and answer the child if it asks."""
    report_r, report_w = _pipe()
    try:
        verdict_r, verdict_w = _pipe()
    except BaseException:
        _close_quietly(report_r, report_w)
        raise
    check = Check(
        call[PREEXEC_INDEX],
        expected,
        report_w,
        verdict_r,
        (report_r, verdict_w),
        (_pipe_id(report_w), _pipe_id(verdict_r)),
    )
    try:
        pid = wrapped(*call[:PREEXEC_INDEX], check, *call[PREEXEC_INDEX + 1 :])
    except BaseException:
        _close_quietly(report_r, report_w, verdict_r, verdict_w)
        raise
    _close_quietly(report_w, verdict_r)
    try:
        if _read(report_r, 1) == _ASK:
            _judge_again(shield, call, expected)
            try:
                _write(verdict_w, _GO)
            except OSError:
                pass  # the child is gone (its own error reaches subprocess's error pipe)
    except BaseException:
        _close_quietly(report_r, verdict_w)  # a waiting child reads an end of file: refused
        _reap(pid)
        raise
    _close_quietly(report_r, verdict_w)
    return pid
