"""Interception of the process category: every way Python starts a program.

Where each start is seen, and why there:

- `subprocess.Popen` (and all built on it: run, call, check_output, getoutput, os.popen,
  asyncio's subprocess_exec/subprocess_shell): the audit event `subprocess.Popen`. subprocess
  raises it itself, after `executable=`, `shell=True` (`/bin/sh -c CMD`), bytes and PathLike
  argv have been folded into the final (executable, args, cwd, env) and before anything forks.
  A wrapt layer on `Popen.__init__` or `_execute_child` would see no more than that, and the
  event also survives `reload(subprocess)`, `from subprocess import Popen` captured before
  install and `__wrapped__`. The program is looked up in the *child's* PATH, as subprocess does.
- `_posixsubprocess.fork_exec`: no audit event on any supported Python (3.10-3.13), so it
  is patched wherever it is bound: the module attribute (which `multiprocessing` calls for
  spawn and forkserver, and which a reloaded subprocess binds again) and `subprocess._fork_exec`.
- `os.posix_spawn` / `posix_spawnp` (and their `posix` twins, which a reloaded `os` takes
  over): wrapped, because the audit event carries neither `file_actions` (whose opens are
  file operations, decided here as such) nor whether PATH is searched. The event
  `os.posix_spawn` is the backstop for the process part.
- `os.system` (and `posix.system`, captured aliases): the audit event, judged as `/bin/sh -c`.
- `os.exec*` (all variants, `posix.execv[e]`): the audit event `os.exec`, raised for each
  candidate the PATH search tries; candidates that do not exist cannot start and are skipped.
- `os.spawn*`: wrapped (the `l` variants call the `v` variants through the module), so the
  start is refused in the caller rather than as exit status 127 from the forked child; the
  child's `os.exec` event is the backstop (after `reload(os)`).
- `pty.spawn`: its audit event `pty.spawn`, in the parent, before it forks.
- `os.fork` alone starts no program: not a process operation.

One start seen by two layers is decided once: the first layer that decides a start remembers
the operation (`_Started`), and a later layer that describes an *equal* operation lets it
through without a second decision or report. The mark is set only when the start was not
refused, is consumed once, and for fork-based routes (`os.spawn*`, `pty.spawn`) is only honoured
in the forked child. For Popen the later layer does not even describe the start again when it
is handed the very argv list object the event carried (subprocess passes it on unchanged):
that keeps `subprocess.run` within a few percent of bare Python.

`unshielded` (a Python child that would run without this process's shield) is decided by
`appshield._activate.child_would_be_unshielded`: it applies only when this process got its
shield through the environment (`appshield run`, the sitecustomize bootstrap); a shield
installed from code (`appshield.install()`) does not travel to children, so then it is False
and interpreters are governed by ordinary process rules. See docs/limits.md.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from typing import Any

from appshield.hooks import _gate
from appshield.hooks._patching import PatchPoint
from appshield.hooks._proc_describe import (
    describe,
    env_mapping,
    exec_path,
    shell_command,
    text,
)
from appshield.hooks._proc_screen import active, first_violation, screen
from appshield.hooks._state import thread_state
from appshield.operations import Operation, ProcessOp

__all__ = ["AUDIT_HANDLERS", "PATCHES"]

_state = thread_state
Described = tuple[Operation, str]


class _Started(threading.local):
    # (operation, pid that set it, honoured only in a forked child?, the argv object the
    # deciding layer saw)
    mark: tuple[ProcessOp, int, bool, Any] | None = None


_started = _Started()


def _mark(op: ProcessOp, *, for_child: bool = False, source: Any = None) -> None:
    _started.mark = (op, os.getpid(), for_child, source)


def _same_popen_start(argv: Any) -> bool:
    """subprocess hands the very argv list it raised `subprocess.Popen` with to fork_exec or
    posix_spawn, with the program and PATH candidates derived from the same arguments: that
    start was just decided, so it needs no second description (the common, cheap case)."""
    mark = _started.mark
    if mark is None or mark[3] is None or mark[3] is not argv or mark[1] != os.getpid():
        return False
    _started.mark = None
    return True


def _already_decided(op: ProcessOp) -> bool:
    mark = _started.mark
    if mark is None or mark[0] != op or (os.getpid() != mark[1]) != mark[2]:
        return False
    _started.mark = None
    return True


def _decided_start(
    op: ProcessOp | None, api: str, *, for_child: bool = False, source: Any = None
) -> Described | None:
    """For an audit event raised before a later layer sees the same start: decide now, mark
    the start unless it is refused, and hand a violation to the audit hook to report."""
    _started.mark = None
    if op is None:
        return None
    found = screen([(op, api)])
    if found is None or not found[2].blocked:
        _mark(op, for_child=for_child, source=source)
    return None if found is None else (op, api)


# -- audit events ---------------------------------------------------------------------------


def _on_popen(args: tuple[Any, ...]) -> Described | None:
    executable, argv, cwd, env = args[:4]
    # The child's PATH: this environment's (the common case, remembered per PATH value), else
    # the given env's; only needed for a bare name.
    search = exec_path if env is None else lambda: exec_path(env_mapping(env))
    op = describe(executable, argv, env, cwd, search=search)
    return _decided_start(op, "subprocess.Popen", source=argv)


def _on_system(args: tuple[Any, ...]) -> Described | None:
    op = shell_command(args[0])
    return None if op is None else (op, "os.system")


def _on_exec(args: tuple[Any, ...]) -> Described | None:
    path, argv, env = args[:3]
    op = describe(path, argv, env)
    if op is None or _already_decided(op):
        return None
    return op, "os.exec"


def _on_posix_spawn(args: tuple[Any, ...]) -> Described | None:
    # Reached only when the wrapper did not run (a captured alias, __wrapped__): whether PATH
    # is searched is unknown then, so both readings of a bare name are judged.
    path, argv, env = args[:3]
    ops = [describe(path, argv, env)]
    if "/" not in text(path):
        ops.append(describe(path, argv, env, search=exec_path(None)))
    found = [op for op in ops if op is not None]
    if any(_already_decided(op) for op in found):
        return None
    return first_violation((op, "os.posix_spawn") for op in found)


def _on_pty_spawn(args: tuple[Any, ...]) -> Described | None:
    argv = args[0]
    argv = (argv,) if isinstance(argv, (str, bytes)) else tuple(argv)
    op = describe(argv[0], argv, None, search=exec_path(None))
    return _decided_start(op, "pty.spawn", for_child=True)


AUDIT_HANDLERS: Mapping[str, Callable[[tuple[Any, ...]], Any]] = {
    "subprocess.Popen": _on_popen,
    "os.system": _on_system,
    "os.exec": _on_exec,
    "os.posix_spawn": _on_posix_spawn,
    "pty.spawn": _on_pty_spawn,
}


# -- wrappers -------------------------------------------------------------------------------


def _describe_fork_exec(args: tuple[Any, ...]) -> ProcessOp | None:
    # fork_exec(args, executable_list, close_fds, pass_fds, cwd, env, ...): positional-only
    # on every version; the first six never moved. The child runs the first candidate of
    # executable_list that execve accepts.
    argv, candidates, cwd, env = args[0], args[1], args[4], args[5]
    for candidate in candidates:
        op = describe(candidate, argv, env, cwd)
        if op is not None:
            return op
    return None


def _prepare_fork_exec(args: tuple[Any, ...]) -> tuple[list[Described], tuple[Any, ...]]:
    op = _describe_fork_exec(args)
    if op is None or _already_decided(op):
        return [], args
    return [(op, "_posixsubprocess.fork_exec")], args


def _wrap_fork_exec(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    shield = active()
    if shield is not None and not (args and _same_popen_start(args[0])):
        args = _gate.judge_call(
            shield, "process", "_posixsubprocess.fork_exec", _prepare_fork_exec, args
        )
    return wrapped(*args, **kwargs)


def _spawn_file_ops(actions: Any, cwd: str) -> list[Described]:
    from appshield.hooks._file_describe import open_ops

    described: list[Described] = []
    for action in actions or ():
        if action and action[0] == os.POSIX_SPAWN_OPEN:
            _tag, _fd, path, flags, _mode = action
            described.extend((op, "os.posix_spawn") for op in open_ops(path, flags, cwd=cwd))
    return described


def _describe_posix_spawn(
    args: tuple[Any, ...], kwargs: Mapping[str, Any], search: bool
) -> list[Described]:
    path, argv, env = args[:3]
    described: list[Described] = []
    op = describe(path, argv, env, search=exec_path(None) if search else None)
    if op is not None and not _already_decided(op):
        described.append((op, "os.posix_spawnp" if search else "os.posix_spawn"))
    described.extend(_spawn_file_ops(kwargs.get("file_actions"), os.getcwd()))
    return described


def _posix_spawn_wrapper(search: bool) -> Callable[..., Any]:
    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        shield = active()
        if shield is None or len(args) < 3:
            return wrapped(*args, **kwargs)
        actions = kwargs.get("file_actions")
        if actions is not None and not isinstance(actions, (list, tuple)):
            # An iterator can be read once: read it here and hand the same items on.
            try:
                kwargs = {**kwargs, "file_actions": list(actions)}
            except Exception:
                return wrapped(*args, **kwargs)
        def prepare() -> tuple[list[Described], None]:
            if _same_popen_start(args[1]):
                return _spawn_file_ops(kwargs.get("file_actions"), os.getcwd()), None
            return _describe_posix_spawn(args, kwargs, search), None

        api = "os.posix_spawnp" if search else "os.posix_spawn"
        _gate.judge_call(shield, "process", api, prepare)
        _state.expect = ("os.posix_spawn", args[0])
        try:
            return wrapped(*args, **kwargs)
        finally:
            _state.expect = None

    return wrapper


def _arg(args: tuple[Any, ...], kwargs: Mapping[str, Any], index: int, name: str) -> Any:
    return args[index] if len(args) > index else kwargs.get(name)


def _describe_spawnv(
    args: tuple[Any, ...], kwargs: Mapping[str, Any], with_env: bool, search: bool
) -> ProcessOp | None:
    file, argv = _arg(args, kwargs, 1, "file"), _arg(args, kwargs, 2, "args")
    env = _arg(args, kwargs, 3, "env") if with_env else None
    return describe(file, argv, env, search=exec_path(env) if search else None)


def _spawnv_wrapper(with_env: bool, search: bool) -> Callable[..., Any]:
    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        shield = active()
        if shield is None:
            return wrapped(*args, **kwargs)
        def prepare() -> tuple[list[Described], ProcessOp | None]:
            op = _describe_spawnv(args, kwargs, with_env, search)
            return ([] if op is None else [(op, "os.spawn")]), op

        op = _gate.judge_call(shield, "process", "os.spawn", prepare)
        if op is None:
            return wrapped(*args, **kwargs)
        _mark(op, for_child=True)  # the forked child's exec event is this same start
        try:
            return wrapped(*args, **kwargs)
        finally:
            _started.mark = None

    return wrapper


PATCHES: tuple[PatchPoint, ...] = (
    PatchPoint("_posixsubprocess", "fork_exec", _wrap_fork_exec, "process"),
    PatchPoint("subprocess", "_fork_exec", _wrap_fork_exec, "process", optional=True),
    PatchPoint("os", "posix_spawn", _posix_spawn_wrapper(False), "process", optional=True),
    PatchPoint("os", "posix_spawnp", _posix_spawn_wrapper(True), "process", optional=True),
    PatchPoint("posix", "posix_spawn", _posix_spawn_wrapper(False), "process", optional=True),
    PatchPoint("posix", "posix_spawnp", _posix_spawn_wrapper(True), "process", optional=True),
    PatchPoint("os", "spawnv", _spawnv_wrapper(False, False), "process", optional=True),
    PatchPoint("os", "spawnve", _spawnv_wrapper(True, False), "process", optional=True),
    PatchPoint("os", "spawnvp", _spawnv_wrapper(False, True), "process", optional=True),
    PatchPoint("os", "spawnvpe", _spawnv_wrapper(True, True), "process", optional=True),
)
