"""Interception of the process category: every way Python starts a program.

Where each start is seen, and why there:

- `subprocess.Popen` (and all built on it: run, call, check_output, getoutput, os.popen,
  asyncio's subprocess_exec/subprocess_shell): the audit event `subprocess.Popen`. subprocess
  raises it itself, after `executable=`, `shell=True` (`/bin/sh -c CMD`) and argv have been
  folded into the final (executable, args, cwd, env) and before anything forks. The event
  carries the caller's *original* objects, and subprocess converts them afterwards (the
  executable and the environment with Python-level `os.fsencode`, where a str subclass's own
  `encode` runs; argv items in C, where a `PathLike`'s `__fspath__` runs again). So the event's
  reading is final only when every input was of an exact type; otherwise fork_exec or
  posix_spawn decide again on what they are handed (see `_PopenStart`). The program is looked
  up in the *child's* PATH, as subprocess does.
- `_posixsubprocess.fork_exec`: no audit event on any supported Python (3.10-3.13), so it
  is patched wherever it is bound: the module attribute (which `multiprocessing` calls for
  spawn and forkserver, and which a reloaded subprocess binds again) and `subprocess._fork_exec`.
  With a `preexec_fn` (which runs in the child after the decision and before the exec), the
  child checks that the program is still the one judged and the parent decides again when it
  is not (`_proc_preexec`). A program that cannot be found is judged too (see
  `appshield._proc_describe`).
- `os.posix_spawn` / `posix_spawnp` (and their `posix` twins, which a reloaded `os` takes
  over): wrapped, because the audit event carries neither `file_actions` (whose opens are
  file operations, decided here as such) nor whether PATH is searched. The event
  `os.posix_spawn` is the backstop for the process part.
- `os.execv` / `os.execve` (and `posix.*`; the other exec functions call these, and so does
  the child of `os.spawn*` and `pty.spawn`): wrapped, so that `PathLike` arguments are
  converted once and judged; the audit event `os.exec` (raised for each candidate a PATH
  search tries) is the backstop, and reads only what the C code already converted (a
  `PathLike` argv item reaching it through a captured alias is refused: reading it again
  would run its `__fspath__` a second time).
- `os.system` (and `posix.system`, captured aliases): the audit event, judged as `/bin/sh -c`.
- `os.spawn*`: wrapped (the `l` variants call the `v` variants through the module), so the
  start is refused in the caller rather than as exit status 127 from the forked child; the
  child's exec is the backstop (after `reload(os)`).
- `pty.spawn`: its audit event `pty.spawn`, in the parent, before it forks; the child's exec
  decides again on what it converts.
- `os.fork` alone starts no program: not a process operation.

Every wrapper converts each argument exactly once with the C function's semantics
(`_proc_convert`), decides on the converted values inside `_gate.judge_call` (which fails
closed) and calls the original with them. Where it found the program, it hands the OS the
judged file's absolute path (`Start.path`) rather than the name: the OS then runs the very
file that was judged, whatever PATH, the current folder or an earlier PATH candidate do
meanwhile (fork_exec's child would otherwise go on to the next candidate when the judged one
fails to execute).

One start seen by two layers is decided once: the first layer that decides a start remembers
the operation (`_Started`), and a later layer that describes an *equal* operation lets it
through without a second decision or report. The mark is set only when the start was not
refused, is consumed once, is tied to the policy it was decided under, and for fork-based
routes (`os.spawn*`, `pty.spawn`) is only honoured in the forked child. For Popen the later
layer does not even describe the start again when the event read only exact types and the
later call is that very start: the same argv item objects (by identity), the candidate or
program the event judged, the same cwd object, and the same `unshielded` answer for the
environment the child gets. That check reads exact types only and runs no code of any
argument, so when no tracer or profiler is set on the thread it runs without the gate
(`_judged_fork_exec`, `_judged_posix_spawn`): that keeps `subprocess.run` close to bare
Python. Any other call, or one a tracer could watch, is decided through the gate.

A wrapper that lets the call's own audit event through (`thread_state.expect`) names the
path object it hands the C function: a fresh private str/bytes/int subclass instance made for
this call (`_proc_convert.token`), which no other code holds.

`unshielded` (a Python child that would run without this process's shield) is decided by
`appshield._proc_children.child_would_be_unshielded`: it applies only when this process got its
shield through the environment (`appshield run`, the sitecustomize bootstrap); a shield
installed from code (`appshield.install()`) does not travel to children, so then it is False
and interpreters are governed by ordinary process rules. See docs/limits.md.
"""

from __future__ import annotations

import _thread
import operator
import os
import sys
from types import ModuleType

from appshield._threadstate import still_running, thread_state
from appshield.hooks import _deferred, _gate
from appshield.hooks._convert import Unreadable, fspath_once
from appshield.hooks._gate import first_violation
from appshield.hooks._gate import for_wrapper as active
from appshield.operations import Operation, ProcessOp
from appshield.patching import FunctionWrapper, HookFamily, PatchPoint, compiled_hook_module
from appshield.settings import STARTUP

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any, NamedTuple

    from appshield._proc_describe import (
        absolute_candidates,
        describe_first,
        describe_start,
        remembered_start,
        shell_command,
        unshielded,
    )
    from appshield.hooks.process.convert import (
        Plain,
        argv_once,
        bytes_items_once,
        env_once,
        event_argv,
        event_env,
        exec_path,
        fork_exec_argv_once,
        inherited_exec_path,
        path_once,
        plain_spawn_options,
        preview_argv,
        preview_env,
        preview_path,
        spawn_options_once,
        text,
        token,
    )
    from appshield.hooks.process.preexec import Expected, run_checked
else:
    from appshield._records import NamedTuple  # typing's costs ~0.7 M per class at start-up

    # The describer, the argument readers and the preexec check: one part, loaded by the
    # first program start (hooks/_deferred.py); until then these names are stand-ins.
    # Every wrapper reaches them through the gate first (a handler or `prepare`), so a part
    # that cannot be loaded is a refused start. `_judged_fork_exec`/`_judged_posix_spawn`
    # run outside the gate only after a Popen event's handler loaded the part.
    _deferred.defer(
        globals(),
        _deferred.Part(
            "process",
            (
                "appshield._proc_describe",
                "appshield.hooks.process.convert",
                "appshield.hooks.process.preexec",
            ),
            ("appshield._proc_children", "appshield._inherit", "appshield.normalize", "_socket"),
        ),
        {
            "appshield._proc_describe": (
                "absolute_candidates",
                "describe_first",
                "describe_start",
                "remembered_start",
                "shell_command",
                "unshielded",
            ),
            "appshield.hooks.process.convert": (
                "argv_once",
                "bytes_items_once",
                "env_once",
                "event_argv",
                "event_env",
                "exec_path",
                "fork_exec_argv_once",
                "inherited_exec_path",
                "path_once",
                "plain_spawn_options",
                "preview_argv",
                "preview_env",
                "preview_path",
                "spawn_options_once",
                "text",
                "token",
            ),
            "appshield.hooks.process.preexec": ("run_checked",),
        },
    )

# fork_exec's `preexec_fn`: positional-only everywhere, the 21st argument on 3.10 and the 22nd
# from 3.11 (`pgid_to_set` came in before it). Here, not in the deferred preexec part: the
# fork_exec wrapper reads it on every call.
PREEXEC_INDEX = 20 if sys.version_info < (3, 11) else 21

__all__ = ["AUDIT_HANDLERS", "FAMILY", "PATCHES"]

# PATH when appshield started: the describer trusts the programs in its folders.
STARTUP_PATH = STARTUP.path

_state = thread_state
Described = tuple[Operation, str]
_same = operator.is_
_OPEN = getattr(os, "POSIX_SPAWN_OPEN", None)
_EXACT_TEXT = frozenset({str, bytes})
_EXACT_BYTES = frozenset({bytes})


class _PopenStart(NamedTuple):
    """A `subprocess.Popen` event read entirely from exact types, and what the call that
    follows it (fork_exec, or posix_spawn) must be handed for the event's decision to be
    that call's decision."""

    program: Plain  # the executable object subprocess holds (posix_spawn gets this very one)
    argv: tuple[Plain, ...]  # the argv item objects (the later call gets these very ones)
    cwd: Plain | None  # the cwd object
    # The PATH entry that held the program (0 without a search). The field hides tuple.index.
    index: int  # type: ignore[assignment]
    launch: bytes  # fork_exec's candidate at `index`, as subprocess spells it
    path: bytes  # the judged file, absolute: what the OS is handed
    folder: str | None  # the child's folder, absolute, when cwd was given
    identity: tuple[int, int, int]  # the judged file's (`Start.identity`)


class _Mark(NamedTuple):
    op: ProcessOp
    pid: int  # the process that decided it
    for_child: bool  # honoured only in a forked child of that process
    compiled: Any  # the policy it was decided under
    popen: _PopenStart | None


class _Started(_thread._local):
    mark: _Mark | None = None


_started = _Started()


_new = tuple.__new__  # builds a NamedTuple in C (its own __new__ is a Python function)


def _compiled() -> Any:
    shield = _gate.shield()
    return None if shield is None else shield.compiled


def _mark(op: ProcessOp, for_child: bool = False, popen: _PopenStart | None = None) -> None:
    _started.mark = _new(_Mark, (op, os.getpid(), for_child, _compiled(), popen))


def _already_decided(op: ProcessOp) -> bool:
    """Was this very start (an equal operation: plain str and bool fields, compared in C) just
    decided, under the current policy, by an earlier layer? Consumes the mark."""
    mark = _started.mark
    if (
        mark is None
        or (os.getpid() != mark.pid) != mark.for_child
        or mark.compiled is not _compiled()
        or mark.op != op
    ):
        return False
    _started.mark = None
    return True


def _judged_popen(
    argv: tuple[Plain, ...] | None, cwd: Any, env: Any, compiled: Any
) -> _PopenStart | None:
    """The Popen event's reading, when this call carries the very argv items and cwd the event
    read (compared by identity: no code of theirs runs) and the environment it is handed gives
    the same `unshielded` answer. The caller checks the program and consumes the mark."""
    mark = _started.mark
    if mark is None or mark.popen is None or mark.pid != os.getpid():
        return None
    popen = mark.popen
    if (
        argv is None
        or cwd is not popen.cwd
        or len(argv) != len(popen.argv)
        or not all(map(_same, argv, popen.argv))
        or mark.compiled is not compiled
    ):
        return None
    op = mark.op
    if unshielded(op.argv, env, op.executable, op.cwd) != op.unshielded:
        return None
    return popen


def _decided_start(
    op: ProcessOp, api: str, for_child: bool = False, popen: _PopenStart | None = None
) -> Described | None:
    """For an audit event raised before a later layer sees the same start: decide now, mark
    the start unless it is refused, and hand a violation to the gate to report."""
    # `screen([(op, api)])` and `_mark`, inline: this runs on every subprocess start.
    active = _gate._shield
    decision = None if active is None else active.decide(op, api)
    if decision is None or not decision.blocked:
        _started.mark = _new(
            _Mark, (op, os.getpid(), for_child, None if active is None else active.compiled, popen)
        )
    return None if decision is None or decision.action == "allow" else (op, api)


# -- audit events ---------------------------------------------------------------------------


def _is_appshield(namespace: Any) -> bool:
    name = namespace.get("__name__") if type(namespace) is dict else None
    return type(name) is str and name.startswith("appshield.")


def _fork_exec_in_place() -> bool:
    """Will the code that raised this `subprocess.Popen` event reach fork_exec through
    `_wrap_fork_exec`? Looked up in the raising frame's own globals (`_fork_exec` from 3.11,
    `_posixsubprocess.fork_exec` before), so a private copy of subprocess is judged by what it
    calls. posix_spawn needs no such check: its audit event reads what C converted."""
    frame = sys._getframe(1)
    while frame is not None and _is_appshield(frame.f_globals):
        frame = frame.f_back  # type: ignore[assignment]
    if frame is None or type(frame.f_globals) is not dict:
        return False
    namespace = frame.f_globals
    found = namespace.get("_fork_exec")
    if found is None:
        module = namespace.get("_posixsubprocess")
        if type(module) is not ModuleType:
            return False
        found = module.__dict__.get("fork_exec")
    # wrapt has no type information: FunctionWrapper is a plain `type` here.
    return type(found) is FunctionWrapper and found._self_wrapper is _FORK_EXEC_WRAPPER  # type: ignore[attr-defined]


def _all_str(items: list[Any]) -> bool:
    for item in items:  # a loop: cheaper than one C-level pass for the few items argv has
        if type(item) is not str:
            return False
    return True


def _on_popen(args: tuple[Any, ...]) -> Described | None:
    executable, argv, cwd, env = args[:4]
    _started.mark = None
    program: Plain  # both branches assign these; declared for the second one
    child_env: dict[Plain, Plain] | None
    if (
        type(executable) is str
        and type(argv) is list
        and cwd is None
        and env is None
        and _all_str(argv)
    ):
        # The common case (`subprocess.run(["ls", "-l"])`), read without the readers. The
        # child's PATH is this environment's, read only for a bare name (as subprocess reads
        # it): split once per PATH value, always the same tuple for the same value, which
        # lets the describer's memory of repeated starts know it (`describe_start`).
        items = tuple(argv)
        start = describe_start(
            executable, items, None, None, search=exec_path, missing=True, startup_path=STARTUP_PATH
        )
        if start is None:
            return None
        op, _path, child_folder, index, launch, encoded, identity = start
        popen = None
        if identity is not None:  # a missing program is described again by fork_exec
            popen = _new(
                _PopenStart,
                (executable, items, None, index, launch, encoded, child_folder, identity),
            )
        return _decided_start(op, "subprocess.Popen", False, popen)
    else:
        program, exact = preview_path(executable)
        items, exact_items = preview_argv(argv)
        folder, exact_folder = (None, True) if cwd is None else preview_path(cwd)
        child_env, exact_env = preview_env(env)
        exact = exact and exact_items and exact_folder and exact_env
    if not exact and not _fork_exec_in_place():
        # The reading above called code of the caller's objects; it stands only because the
        # fork_exec wrapper decides again on what it converts. Without it, nothing would.
        raise Unreadable("a subprocess argument of another type than str or bytes, and no wrapper")
    # The child's PATH: this environment's (the common case, remembered per PATH value), else
    # the given env's; only needed for a bare name.
    # (mypy before 2.0 cannot infer a lambda in a conditional expression.)
    search = exec_path if child_env is None else (lambda: exec_path(child_env))  # type: ignore[misc, unused-ignore]
    start = describe_start(
        program, items, child_env, folder, search=search, missing=True, startup_path=STARTUP_PATH
    )
    if start is None:
        return None
    op, _path, child_folder, index, launch, encoded, identity = start
    popen = None
    if exact and identity is not None:  # a missing program is described again by fork_exec
        popen = _new(
            _PopenStart, (program, items, cwd, index, launch, encoded, child_folder, identity)
        )
    return _decided_start(op, "subprocess.Popen", False, popen)


# (a policy, its compiled policy): the last policy `_own_compiled` was asked about.
_compiled_of: tuple[Any, Any] = (None, None)


def _own_compiled(policy: Any) -> Any:
    """`policy.compiled`, a property, asked once per policy object: a policy compiles once
    and keeps that compiled policy for good (`Policy.compiled`), so the remembered answer is
    the property's own."""
    global _compiled_of
    known = _compiled_of
    if known[0] is not policy:
        known = _compiled_of = (policy, policy.compiled)
    return known[1]


def _popen_allowed(args: tuple[Any, ...]) -> bool:
    """The audit hook's check before the gate for `subprocess.Popen` (`_on_popen`'s common
    case): True only for a start of an exact str program with a list of exact str arguments,
    this process's environment and working folder, found, that the active policy allows now;
    the start is then marked for the fork_exec or posix_spawn call that follows, exactly as
    `_on_popen` marks it. Anything else, and any doubt, is False: the gate then describes and
    decides in full (and reports what must be reported).

    It runs no code of any argument's (exact types only, compared and hashed in C), and only
    when no tracer or profiler could watch or rewrite it, as the gate would have hidden them.
    An exception on the way (the recursion limit, say) is False too: the gate's path retries
    with headroom and fails closed. The description is the describer's (`describe_start`,
    with its memory of repeated starts, re-proved each time); the decision is the shield's,
    asked every time: nothing here remembers an allowed decision.

    The audit hook asks this before it reads the thread's flags, so a start made inside
    appshield's own work (`busy`) is left alone here, as the hook then leaves it: marking it
    would hand the fork_exec wrapper a decision it does not make in that work.

    Where the compiled audit hook is installed, its `popen_allowed` (appshield/_c_audit_hook.c)
    answers this check's commonest case first, the same way, and marks the start in C for
    fork_exec's C front (`_fork_exec_patch`) or, through `_compiled_mark`, the posix_spawn
    wrapper; what it does not answer comes here."""
    busy = _state.busy
    if busy and still_running(busy):
        return False
    active = _gate._shield
    if (
        _gettrace() is not None
        or _getprofile() is not None
        or len(args) != 4
        or active is None
        # The describer still a stand-in (hooks/_deferred.py): its first load happens
        # inside the gate, where a load that fails is a refusal, never here.
        or describe_start.__module__ != "appshield._proc_describe"
    ):
        return False
    # The policy's own decider, nothing around it: a shadow candidate, a recorder or grants
    # (which see callers) are decided through the gate, which decides once. (`_compiled_of`
    # read once: a pair another thread replaces meanwhile is never mixed.)
    policy, known = active.policy, _compiled_of
    if active.compiled is not (known[1] if known[0] is policy else _own_compiled(policy)):
        return False
    executable, argv, cwd, env = args
    if type(executable) is not str or type(argv) is not list or cwd is not None or env is not None:
        return False
    items = tuple(argv)
    for item in items:  # a loop: cheaper than one C-level pass for the few items argv has
        if type(item) is not str:
            return False
    try:
        # A start remembered from before, re-proved (`remembered_start`); else described,
        # and remembered for the next time. (No PATH entries from os.environ as it is
        # (not the standard mapping): `exec_path` reads them, in `describe_start`.)
        entries = inherited_exec_path()
        start = (
            entries is not None and remembered_start(executable, items, entries, STARTUP_PATH)
        ) or describe_start(
            executable, items, None, None, search=exec_path, startup_path=STARTUP_PATH, reuse=True
        )
        if start is None:
            return False  # not found: `_on_popen` describes the start of a missing program
        op, _path, child_folder, index, launch, encoded, identity = start
        if identity is None or active.decide(op, _POPEN).action != "allow":
            return False
        popen = _new(
            _PopenStart, (executable, items, None, index, launch, encoded, child_folder, identity)
        )
        _started.mark = _new(_Mark, (op, os.getpid(), False, active.compiled, popen))
    except Exception:
        return False
    return True


_POPEN = "subprocess.Popen"


def _on_system(args: tuple[Any, ...]) -> Described | None:
    op = shell_command(text(args[0]), startup_path=STARTUP_PATH)
    return None if op is None else (op, "os.system")


def _on_exec(args: tuple[Any, ...]) -> Described | None:
    # Reached when the exec wrapper did not run (a captured alias, __wrapped__, posix after a
    # reload of os), or in a child for a start its parent decided.
    path, argv, env = args[:3]
    start = describe_start(text(path), event_argv(argv), event_env(env), startup_path=STARTUP_PATH)
    if start is None or _already_decided(start.op):
        return None
    return start.op, "os.exec"


def _on_posix_spawn(args: tuple[Any, ...]) -> Described | None:
    # Reached only when the wrapper did not run (a captured alias, __wrapped__): whether PATH
    # is searched is unknown then, so both readings of a bare name are judged.
    path, argv, env = args[:3]
    name, items, child_env = text(path), event_argv(argv), event_env(env)
    starts = [describe_start(name, items, child_env, startup_path=STARTUP_PATH)]
    if "/" not in name:
        search = exec_path(None)
        starts.append(
            describe_start(name, items, child_env, search=search, startup_path=STARTUP_PATH)
        )
    found = [start.op for start in starts if start is not None]
    if any(_already_decided(op) for op in found):
        return None
    return first_violation((op, "os.posix_spawn") for op in found)


def _on_pty_spawn(args: tuple[Any, ...]) -> Described | None:
    argv = args[0]
    _started.mark = None
    # pty.spawn wraps only an exact str in a tuple; the child runs os.execlp(argv[0], *argv)
    # and decides again on what it converts there.
    items = (argv,) if type(argv) is str else preview_argv(argv)[0]
    if not items:
        return None
    start = describe_start(
        items[0], items, None, search=exec_path(None), missing=True, startup_path=STARTUP_PATH
    )
    if start is None:
        return None
    return _decided_start(start.op, "pty.spawn", True)


AUDIT_HANDLERS: Mapping[str, Callable[[tuple[Any, ...]], Any]] = {
    "subprocess.Popen": _on_popen,
    "os.system": _on_system,
    "os.exec": _on_exec,
    "os.posix_spawn": _on_posix_spawn,
    "pty.spawn": _on_pty_spawn,
}


# -- wrappers -------------------------------------------------------------------------------


def _bind(
    args: tuple[Any, ...], kwargs: Mapping[str, Any], names: tuple[str, ...]
) -> tuple[Any, ...] | None:
    """The arguments bound to `names` as a Python function with exactly these parameters
    binds them; None when it would refuse them (the original then raises, starting nothing)."""
    if len(args) > len(names):
        return None
    rest = names[len(args) :]
    if len(kwargs) != len(rest) or not all(name in kwargs for name in rest):
        return None
    return (*args, *(kwargs[name] for name in rest))


def _fork_exec_call(
    args: tuple[Any, ...], compiled: Any
) -> tuple[list[Described], tuple[Any, ...], Expected]:
    """(what to decide, the converted arguments, what the child must still find)."""
    # fork_exec(args, executable_list, close_fds, pass_fds, cwd, env, ...): positional-only
    # on every version; the first six never moved. Converted in the C function's order.
    if len(args) < 6:
        return [], args, ()  # the C function refuses the call before it starts anything
    argv, candidates, cwd, env = args[0], args[1], args[4], args[5]
    if not (
        # subprocess's own call: nothing to convert (one C-level pass over each sequence)
        type(candidates) is tuple
        and type(argv) is list
        and env is None
        and (cwd is None or type(cwd) is str)
        and set(map(type, candidates)) <= _EXACT_BYTES
        and set(map(type, argv)) <= _EXACT_TEXT
    ):
        candidates = bytes_items_once(candidates)
        argv = fork_exec_argv_once(argv)
        env = None if env is None else bytes_items_once(env)
        cwd = None if cwd is None else fspath_once(cwd)
    else:
        argv = tuple(argv)
    close_fds, pass_fds, rest = args[2], args[3], args[6:]
    popen = _judged_popen(argv, cwd, env, compiled)
    if (
        popen is not None
        and popen.index < len(candidates)
        and candidates[popen.index] == popen.launch
    ):
        _started.mark = None  # the start the Popen event just decided
        converted = (argv, (popen.path,), close_fds, pass_fds, popen.folder, env, *rest)
        return [], converted, ((popen.path, popen.identity),)
    # The child runs the first candidate execve accepts: the first that can run is judged,
    # and the child is handed that one only. When none can run, the start of the missing
    # program is judged, and the child gets every candidate made absolute.
    start = describe_first(candidates, argv, env, cwd, missing=True, startup_path=STARTUP_PATH)
    if start is None:
        return [], (argv, candidates, close_fds, pass_fds, cwd, env, *rest), ()
    if start.identity is None:
        paths = absolute_candidates(candidates, cwd) or ()
        converted = (argv, paths, close_fds, pass_fds, cwd, env, *rest)
        expected: Expected = tuple((path, None) for path in paths)
    else:
        converted = (argv, (start.encoded,), close_fds, pass_fds, start.folder, env, *rest)
        expected = ((start.encoded, start.identity),)
    if _already_decided(start.op):
        return [], converted, expected
    return [(start.op, "_posixsubprocess.fork_exec")], converted, expected


def _prepare_fork_exec(
    args: tuple[Any, ...], compiled: Any
) -> tuple[list[Described], tuple[Any, ...]]:
    described, converted, _expected = _fork_exec_call(args, compiled)
    return described, converted


def _prepare_checked_fork_exec(
    args: tuple[Any, ...], compiled: Any
) -> tuple[list[Described], tuple[tuple[Any, ...], Expected]]:
    described, converted, expected = _fork_exec_call(args, compiled)
    return described, (converted, expected)


def _judged_fork_exec(args: tuple[Any, ...], compiled: Any) -> tuple[Any, ...] | None:
    """subprocess's own fork_exec call for the start its Popen event just judged from exact
    types, in the common form (argv the same list of the very item objects, the judged
    candidate where the event found it, the same cwd object, no env list): the arguments to
    hand the C function, with the judged file as the only candidate. None otherwise. Reads
    only exact lists, tuples, str and bytes, and compares by identity: no code of any
    argument runs, so it needs no gate (see `_wrap_fork_exec`)."""
    mark = _started.mark
    if mark is None or len(args) < 6:
        return None
    op, pid, _for_child, marked_under, popen = mark  # one C-level unpacking: the hot path
    if popen is None:
        return None
    _program, judged_argv, judged_cwd, index, launch, path, folder, _identity = popen
    argv, candidates = args[0], args[1]
    if (
        type(argv) is not list
        or type(candidates) is not tuple
        or args[5] is not None
        or args[4] is not judged_cwd
        or marked_under is not compiled
        or pid != os.getpid()
        or len(candidates) <= index
    ):
        return None
    items = tuple(argv)
    candidate = candidates[index]
    if (
        len(items) != len(judged_argv)
        # The one item of most argvs compared inline: `all(map(...))` builds a map object.
        or not (
            items[0] is judged_argv[0] if len(items) == 1 else all(map(_same, items, judged_argv))
        )
        or type(candidate) is not bytes
        or candidate != launch
    ):
        return None
    # The environment the child inherits may have changed since the event: `unshielded`
    # (argv, executable, cwd) asked again, without its call when no shield came in through
    # the environment (then it is False whatever the environment holds).
    activation = _modules.get("appshield.activation")
    if (
        op[5]
        if activation is None or activation._activation is None
        else unshielded(op[1], None, op[0], op[3]) != op[5]
    ):
        return None
    _started.mark = None
    # A concatenation of two tuples: building one with `*args[6:]` goes through a list.
    return (items, (path,), args[2], args[3], folder, None) + args[6:]  # noqa: RUF005


_gettrace = sys.gettrace
_getprofile = sys.getprofile
_modules = sys.modules


def _wrap_fork_exec(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    # `active()`, its call made only when this thread is inside appshield's own work.
    shield = active() if _state.busy else _gate._shield
    if shield is None or kwargs:  # fork_exec takes no keywords: the C function refuses them
        return wrapped(*args, **kwargs)
    if len(args) > PREEXEC_INDEX and args[PREEXEC_INDEX] is not None:
        return _fork_exec_checked(wrapped, shield, tuple(args))
    # One expression, and no local holding the converted arguments: a tracer sees this frame
    # (though not the gate's) and could rebind a local before the call, and fork_exec has no
    # audit event to catch that; the callable and its arguments sit on the value stack.
    # subprocess's call for a start its event just judged skips the gate (a tenth of a
    # `subprocess.run`) when no tracer or profiler could watch or rewrite that check.
    # (mypy 2.x solves judge_call's result type from the `or`'s left side, and so sees
    # `False | None` in it: the `and` chain is falsy there, judge_call runs instead.)
    return wrapped(
        *(  # type: ignore[misc, unused-ignore]
            (
                _gettrace() is None
                and _getprofile() is None
                and _judged_fork_exec(args, shield.compiled)
            )
            or _gate.judge_call(
                shield,
                "process",
                "_posixsubprocess.fork_exec",
                _prepare_fork_exec,
                tuple(args),
                shield.compiled,
            )
        )
    )


def _fork_exec_checked(wrapped: Any, shield: Any, args: tuple[Any, ...]) -> Any:
    """fork_exec with a `preexec_fn`: it runs in the child after the decision and before the
    exec, so the child checks that the program is still the one judged (`_proc_preexec`).
    Always through the gate: the judged file's identity comes with the decision."""
    call, expected = _gate.judge_call(
        shield,
        "process",
        "_posixsubprocess.fork_exec",
        _prepare_checked_fork_exec,
        args,
        shield.compiled,
    )
    if not expected:  # nothing the child could run (a NUL byte, no candidate)
        return wrapped(*call)
    return run_checked(wrapped, shield, call, expected)


def _absolute(path: Plain) -> Plain:
    """A relative path made absolute in the current folder (unfolded, as the kernel walks
    it), so that the child opens the file that was judged even if the folder changes."""
    if type(path) is bytes:
        return path if path[:1] == b"/" else os.fsencode(os.getcwd()) + b"/" + path
    # A str here (bytes returned above), which mypy does not narrow from `type(...) is not`.
    return path if path[:1] == "/" else f"{os.getcwd()}/{path}"  # type: ignore[str-bytes-safe]


def _spawn_file_ops(actions: tuple[tuple[Any, ...], ...] | None) -> list[Described]:
    """The opens of posix_spawn's (converted) file actions, as file operations."""
    described: list[Described] = []
    for action in actions or ():
        if action[0] == _OPEN:
            # imported here: the file hooks' describer is needed only by an open action
            from appshield.hooks.file.describe import open_ops

            described.extend((op, "os.posix_spawn") for op in open_ops(action[2], action[3]))
    return described


def _child_env(env: Any) -> tuple[Any, Any]:
    """(the environment to describe the start with, the one to hand the C function) for an
    `env` argument: `os.environ` itself is the child's inheriting this environment, as with
    env=None (described so, and handed on as it is); anything else converted once."""
    if env is os.environ:
        return None, env
    converted = env_once(env)
    return converted, converted


def _judged_posix_spawn(
    args: tuple[Any, ...], options: Mapping[str, Any], compiled: Any
) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
    """subprocess's own posix_spawn call for the start its Popen event just judged from exact
    types (the very program and argv item objects, this environment, its own close/dup2
    actions): (the arguments, the options) to hand the C function; None otherwise. Exact
    types and identity only, so no gate is needed (see `_wrap_fork_exec`)."""
    # The compiled hook's mark first: it holds one only when it answered this thread's last
    # `subprocess.Popen` event itself (a start the Python hook judged clears it).
    mark = _compiled_mark() or _started.mark
    if mark is None or len(args) != 3:
        return None
    op, pid, _for_child, marked_under, popen = mark  # one C-level unpacking: the hot path
    if popen is None:
        return None
    program, judged_argv, judged_cwd, index, _launch, path, _folder, _identity = popen
    given, argv, env = args
    if (
        given is not program
        or type(argv) is not list
        or (env is not os.environ and env is not None)
        or judged_cwd is not None
        or index != 0
        or marked_under is not compiled
        or pid != os.getpid()
    ):
        return None
    items = tuple(argv)
    if len(items) != len(judged_argv) or not all(map(_same, items, judged_argv)):
        return None
    plain_options = plain_spawn_options(options)
    if plain_options is None:
        return None
    if unshielded(op[1], None, op[0], op[3]) != op[5]:  # argv, executable, cwd, unshielded
        return None  # the environment the child inherits changed since the event
    _started.mark = None
    return (token(path), items, env), plain_options


def _posix_spawn_wrapper(search: bool) -> Callable[..., Any]:
    api = "os.posix_spawnp" if search else "os.posix_spawn"
    function = api.removeprefix("os.")

    def prepare(
        args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> tuple[list[Described], tuple[tuple[Any, ...], dict[str, Any]] | None]:
        if len(args) != 3:
            return [], None  # path, argv and env are positional-only: the C function refuses
        path = path_once(args[0])
        argv = argv_once(args[1], function)
        child_env, env = _child_env(args[2])
        options = spawn_options_once(kwargs, _absolute)
        described: list[Described] = []
        start = describe_start(
            path,
            argv,
            child_env,
            search=exec_path(None) if search else None,
            missing=True,
            startup_path=STARTUP_PATH,
        )
        # A missing program is handed on as it was named: the call fails as it would have.
        call_path = path if start is None or start.identity is None else start.path
        if start is not None and not _already_decided(start.op):
            described.append((start.op, api))
        described.extend(_spawn_file_ops(options.get("file_actions")))
        return described, ((token(call_path), argv, env), options)

    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        shield = active()
        if shield is None:
            return wrapped(*args, **kwargs)
        call = None
        if not search and _gettrace() is None and _getprofile() is None:
            call = _judged_posix_spawn(args, kwargs, shield.compiled)
        if call is None:
            call = _gate.judge_call(shield, "process", api, prepare, tuple(args), kwargs)
            if call is None:
                return wrapped(*args, **kwargs)
        call_args, options = call
        _state.expect = ("os.posix_spawn", call_args[0])
        try:
            return wrapped(*call_args, **options)
        finally:
            _state.expect = None

    return wrapper


def _exec_wrapper(with_env: bool) -> Callable[..., Any]:
    function = "execve" if with_env else "execv"

    def prepare(
        args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> tuple[list[Described], tuple[Any, ...] | None]:
        if with_env:
            bound = _bind(args, kwargs, ("path", "argv", "env"))
        else:
            bound = None if kwargs or len(args) != 2 else args  # execv is positional-only
        if bound is None:
            return [], None
        path = path_once(bound[0], allow_fd=with_env)  # execve runs an open descriptor too
        argv = argv_once(bound[1], function)
        child_env, env = _child_env(bound[2]) if with_env else (None, None)
        start = describe_start(path, argv, child_env, startup_path=STARTUP_PATH)
        call_path = path if start is None or type(path) is int else start.path
        call = (token(call_path), argv, env) if with_env else (token(call_path), argv)
        if start is None or _already_decided(start.op):
            return [], call
        return [(start.op, "os.exec")], call

    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        shield = active()
        if shield is None:
            return wrapped(*args, **kwargs)
        call = _gate.judge_call(shield, "process", "os.exec", prepare, tuple(args), kwargs)
        if call is None:
            return wrapped(*args, **kwargs)
        _state.expect = ("os.exec", call[0])
        try:
            return wrapped(*call)
        finally:
            _state.expect = None

    return wrapper


def _spawnv_wrapper(with_env: bool, search: bool) -> Callable[..., Any]:
    names = ("mode", "file", "args", "env") if with_env else ("mode", "file", "args")

    def prepare(
        args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> tuple[list[Described], tuple[tuple[Any, ...], ProcessOp | None] | None]:
        bound = _bind(args, kwargs, names)
        if bound is None:
            return [], None
        # The forked child runs execv/execve(file, args[, env]) (execvp/execvpe with search):
        # converted here as those convert them, once, and handed over converted.
        path = path_once(bound[1], allow_fd=with_env and not search)
        argv = argv_once(bound[2], "execv")
        child_env, env = _child_env(bound[3]) if with_env else (None, None)
        search_path = exec_path(child_env) if search else None
        start = describe_start(
            path, argv, child_env, search=search_path, missing=True, startup_path=STARTUP_PATH
        )
        found = start is not None and start.identity is not None
        call_path = start.path if found and type(path) is not int else path  # type: ignore[union-attr]
        call = (bound[0], call_path, argv, *((env,) if with_env else ()))
        if start is None:
            return [], (call, None)
        return [(start.op, "os.spawn")], (call, start.op)

    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        shield = active()
        if shield is None:
            return wrapped(*args, **kwargs)
        prepared = _gate.judge_call(shield, "process", "os.spawn", prepare, tuple(args), kwargs)
        if prepared is None:
            return wrapped(*args, **kwargs)
        call, op = prepared
        if op is None:
            return wrapped(*call)
        _mark(op, for_child=True)  # the forked child's exec is this same start
        try:
            return wrapped(*call)
        finally:
            _started.mark = None

    return wrapper


def _compiled_mark() -> _Mark | None:
    """The start the compiled audit hook judged on this thread and marked for fork_exec's C
    front (`popen_allowed`), taken over as this module's own mark: subprocess hands some
    starts to posix_spawn instead (3.13 does for a program named with a path), whose
    wrapper reads `_Mark`. None without one, or where the compiled hook was not built."""
    taken = _taken_spawn_mark()
    if taken is None:
        return None
    op, pid, compiled, program, items, index, launch, path, folder, identity = taken
    popen = _new(_PopenStart, (program, items, None, index, launch, path, folder, identity))
    mark: _Mark = _new(_Mark, (op, pid, False, compiled, popen))
    return mark


def _no_spawn_mark() -> None:
    return None


def _fork_exec_patch() -> Any:
    """The wrapper patched onto fork_exec: `_wrap_fork_exec`, or where the compiled audit
    hook was built, its C front (`spawn_repeat`), which hands the start that hook judged
    itself (`popen_allowed` in appshield/_c_audit_hook.c, this module's `_popen_allowed` in
    C) the judged file, with `_judged_fork_exec`'s tests, and calls `_wrap_fork_exec` for
    everything else. The front answers nothing until the compiled hook is installed with
    this module's parts (never under `APPSHIELD_PURE_PYTHON=1`)."""
    compiled = compiled_hook_module()
    return _wrap_fork_exec if compiled is None else compiled.spawn_repeat(_wrap_fork_exec)


# The one wrapper object both fork_exec patch points get (`_fork_exec_in_place` asks for it).
_FORK_EXEC_WRAPPER = _fork_exec_patch()

# The compiled hook's `taken_spawn_mark`; where it was not built, no start is marked in C.
_taken_spawn_mark: Callable[[], Any] = getattr(
    compiled_hook_module(), "taken_spawn_mark", _no_spawn_mark
)


PATCHES: tuple[PatchPoint, ...] = (
    PatchPoint("_posixsubprocess", "fork_exec", _FORK_EXEC_WRAPPER, "process"),
    PatchPoint("subprocess", "_fork_exec", _FORK_EXEC_WRAPPER, "process", optional=True),
    PatchPoint("os", "posix_spawn", _posix_spawn_wrapper(False), "process", optional=True),
    PatchPoint("os", "posix_spawnp", _posix_spawn_wrapper(True), "process", optional=True),
    PatchPoint("posix", "posix_spawn", _posix_spawn_wrapper(False), "process", optional=True),
    PatchPoint("posix", "posix_spawnp", _posix_spawn_wrapper(True), "process", optional=True),
    PatchPoint("os", "execv", _exec_wrapper(False), "process", optional=True),
    PatchPoint("os", "execve", _exec_wrapper(True), "process", optional=True),
    PatchPoint("posix", "execv", _exec_wrapper(False), "process", optional=True),
    PatchPoint("posix", "execve", _exec_wrapper(True), "process", optional=True),
    PatchPoint("os", "spawnv", _spawnv_wrapper(False, False), "process", optional=True),
    PatchPoint("os", "spawnve", _spawnv_wrapper(True, False), "process", optional=True),
    PatchPoint("os", "spawnvp", _spawnv_wrapper(False, True), "process", optional=True),
    PatchPoint("os", "spawnvpe", _spawnv_wrapper(True, True), "process", optional=True),
)


def compiled_hook_parts() -> dict[str, Any]:
    """What the compiled audit hook reads to answer `_popen_allowed`'s commonest case and
    `_judged_fork_exec` itself (appshield/_c_audit_hook.c `popen_allowed`; appshield/runtime.py
    hands it over): this module's globals (`_compiled_of`, `STARTUP_PATH`, and the deferred
    part's `remembered_start` and `inherited_exec_path`, through whose globals it finds the
    describer's memory and the PATH split last), os's (`environ`), the `sys.modules` the
    describer looks for the activation in, the classes it compares, and where fork_exec takes
    `preexec_fn`."""
    from appshield.decision import Decision

    return {
        "process_globals": globals(),
        "os_globals": vars(os),
        "modules": _modules,
        "environ_type": os._Environ,
        "decision_type": Decision,
        "preexec_index": PREEXEC_INDEX,
    }


# Checked by the audit hook before the gate (see `_popen_allowed`).
FAST_PATHS: Mapping[str, Callable[[tuple[Any, ...]], bool]] = {"subprocess.Popen": _popen_allowed}

FAMILY = HookFamily("process", PATCHES, AUDIT_HANDLERS, FAST_PATHS)
