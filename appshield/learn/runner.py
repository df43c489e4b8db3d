"""Start a command under the learning shield and collect what it did.

The command runs as a child of `appshield learn` (not `exec`: the observations are read and
the policy written after it ends) in an environment where

    PYTHONPATH        = <the activation bootstrap folder> + the existing PYTHONPATH
    APPSHIELD_POLICY  = <folder>/learning-policy.yaml (`recorder.LEARNING_POLICY`)
    APPSHIELD_MODE    = monitor
    APPSHIELD_LEARN   = <folder>

so every Python process in the tree starts the shield through the sitecustomize bootstrap,
and the shield records to `<folder>/ops-<pid>.jsonl` instead of reporting.

The command stays in this process's process group (a terminal's Ctrl-C reaches it as before,
and it can read the terminal). SIGTERM and SIGINT sent to `appshield learn` itself are
forwarded to it and bound the wait for it (see `record`), so `timeout`, `docker stop` and
supervisors stop the workload and still get a policy.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from appshield.learn.recorder import LEARNING_POLICY
from appshield.learn.records import Observation, read_records

__all__ = [
    "DEFAULT_STOP_TIMEOUT",
    "LEARN_POLICY_NAME",
    "Recording",
    "learning_environment",
    "record",
    "signal_name",
]

LEARN_POLICY_NAME = "learning-policy.yaml"


@dataclass
class Recording:
    returncode: int
    observations: list[Observation]
    stopped_by: int | None = None  # the SIGTERM or SIGINT `appshield learn` got, if any
    killed: bool = False  # the command outlived the stop timeout (or a second signal)


def _bootstrap_dir() -> str:
    from appshield.activation import BOOTSTRAP_DIR

    return BOOTSTRAP_DIR


def learning_environment(folder: str, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment that makes every Python process record into `folder`."""
    env = dict(os.environ if base is None else base)
    for name in ("APPSHIELD_DISABLE", "APPSHIELD_LOG", "APPSHIELD_RELOAD", "APPSHIELD_RECORD"):
        env.pop(name, None)
    policy = os.path.join(folder, LEARN_POLICY_NAME)
    if not os.path.exists(policy):
        with open(policy, "w", encoding="utf-8") as handle:
            handle.write(LEARNING_POLICY)
    existing = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = _bootstrap_dir() + (os.pathsep + existing if existing else "")
    env["APPSHIELD_POLICY"] = policy
    env["APPSHIELD_MODE"] = "monitor"
    env["APPSHIELD_LEARN"] = os.path.abspath(folder)
    return env


DEFAULT_STOP_TIMEOUT = 8.0
"""Seconds `record` gives the command to end after forwarding a stop signal, before it kills
the command and every process below it. Under `docker stop` (10 s by default) this leaves
time to write the policy."""

_REPEAT_WINDOW = 1.0  # a second signal this soon is the same stop (`timeout` sends it twice)
_FORWARDED = (signal.SIGTERM, signal.SIGINT)


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _descendants(pid: int) -> list[int]:
    """The processes below `pid`, deepest last (Linux `/proc`; elsewhere none are known)."""
    parents: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces and parentheses, so split after it
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 1 and fields[1].isdigit():
            parents.setdefault(int(fields[1]), []).append(int(entry))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), ()):
            if child not in found:
                found.append(child)
                todo.append(child)
    return found


def _ended(pid: int) -> bool:
    """Whether `pid` has ended (a zombie nobody reaps, as under a container's init, has)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
        return stat[stat.rfind(b")") + 2 :].startswith(b"Z")
    except FileNotFoundError:
        return True
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        pass
    return False


def _signal_all(pids: Sequence[int], signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except OSError:
            pass


def _keyboard_reached_child() -> bool:
    """Whether a SIGINT is most likely Ctrl-C at a terminal where `appshield learn` (and the
    command, in the same process group) is the foreground job: the terminal then sent SIGINT
    to the whole group, the command included, and forwarding it would deliver it twice."""
    for fd in (0, 1, 2):
        try:
            if os.isatty(fd):
                return os.tcgetpgrp(fd) == os.getpgrp()
        except OSError:
            continue
    return False


class _Stopper:
    """The signal handlers of `record`: the first SIGTERM or SIGINT is forwarded to the
    command and starts the bounded wait; a second one (after `_REPEAT_WINDOW`) kills.

    From the first signal on, the processes below the command are noted (found before the
    command ends: orphans are re-parented and could not be found after). Those still running
    once the command has ended (a worker its master did not stop, the server child of a
    reloader that died of the signal) get SIGTERM, within the same bound, then SIGKILL."""

    def __init__(self, timeout: float) -> None:
        self.child: subprocess.Popen[bytes] | None = None  # set once started
        self.timeout = timeout
        self.signum: int | None = None
        self.first_at = 0.0
        self.deadline: float | None = None
        self.killed = False
        self.tree: list[int] = []

    def handle(self, signum: int, frame: object) -> None:
        now = time.monotonic()
        if self.signum is None:
            self.signum, self.first_at = signum, now
            self.deadline = now + self.timeout
            sys.stderr.write(
                f"appshield learn: {signal_name(signum)}: stopping the command (waiting up to"
                f" {self.timeout:g} s), then writing the policy from what it did so far\n"
            )
            self.note_tree()
            if not (signum == signal.SIGINT and _keyboard_reached_child()):
                self.forward(signum)
        elif now - self.first_at >= _REPEAT_WINDOW:
            self.kill(f"{signal_name(signum)} again")

    def note_tree(self) -> None:
        if self.child is not None and self.child.returncode is None:
            for pid in _descendants(self.child.pid):
                if pid not in self.tree:
                    self.tree.append(pid)

    def forward(self, signum: int) -> None:
        if self.child is not None and self.child.returncode is None:
            try:
                self.child.send_signal(signum)
            except OSError:
                pass

    def kill(self, why: str) -> None:
        if self.killed or self.child is None:
            return
        self.killed = True
        sys.stderr.write(f"appshield learn: {why}: killing the command and its processes\n")
        self.note_tree()
        if self.child.returncode is None:
            self.child.kill()
        _signal_all(self.tree, signal.SIGKILL)

    def started(self, child: subprocess.Popen[bytes]) -> None:
        self.child = child
        if self.signum is not None:  # a signal came while the command was being started
            self.note_tree()
            self.forward(self.signum)

    def _remaining(self) -> float | None:
        """Seconds left before the kill; kills (and returns None) once the bound is passed."""
        if self.deadline is None:
            return None
        remaining = self.deadline - time.monotonic()
        if remaining > 0:
            return remaining
        self.kill(f"still running {self.timeout:g} s after the stop signal")
        self.deadline = None  # SIGKILL cannot be refused: wait for it without bound
        return None

    def wait(self) -> int:
        assert self.child is not None
        while True:
            remaining = self._remaining()
            step = 0.2 if remaining is None else max(0.01, min(0.2, remaining))
            try:
                returncode = self.child.wait(timeout=step)
                break
            except subprocess.TimeoutExpired:
                if self.signum is not None:
                    self.note_tree()
        if self.signum is not None:
            self._end_leftovers()
        return returncode

    def _end_leftovers(self) -> None:
        left = [pid for pid in self.tree if not _ended(pid)]
        if not left:
            return
        if not self.killed:
            _signal_all(left, signal.SIGTERM)
        while left:
            remaining = self._remaining()
            if remaining is None and self.killed:
                _signal_all(left, signal.SIGKILL)
                remaining = 1.0  # SIGKILL: bounded, but give the kernel a moment
                deadline = time.monotonic() + remaining
                while left and time.monotonic() < deadline:
                    time.sleep(0.02)
                    left = [pid for pid in left if not _ended(pid)]
                return
            time.sleep(0.05)
            left = [pid for pid in left if not _ended(pid)]


def record(
    command: Sequence[str],
    folder: str,
    *,
    cwd: str | None = None,
    stop_timeout: float = DEFAULT_STOP_TIMEOUT,
) -> Recording:
    """Run `command` to completion with recording on; its exit code and what it did.

    A SIGTERM or SIGINT sent to this process while the command runs is forwarded to the
    command (its direct child: a server's master stops its own workers), except a Ctrl-C
    that the terminal already sent to the command; the command then has `stop_timeout`
    seconds to end before it and every process below it are killed (at once on a second
    signal). What it did up to then is read all the same; `Recording.stopped_by` names the
    signal, and `Recording.killed` says whether it had to be killed."""
    env = learning_environment(folder)
    stopper = _Stopper(stop_timeout)
    previous = {signum: signal.getsignal(signum) for signum in _FORWARDED}
    for signum in _FORWARDED:  # before the start: a stop signal never finds the default
        signal.signal(signum, stopper.handle)
    try:
        stopper.started(subprocess.Popen(list(command), env=env, cwd=cwd))
        returncode = stopper.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
    return Recording(returncode, read_records(folder), stopper.signum, stopper.killed)
