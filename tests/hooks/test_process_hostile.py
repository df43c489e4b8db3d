"""Hostile arguments to every process route: appshield must fail closed, and read each
argument once, with CPython's semantics.

Every argument position of every way to start a program (the program, `executable=`, an argv
item, `cwd=`, a PATH value in `env=`, a posix_spawn `file_actions` path, os.system's command)
gets hostile stand-ins for its plain value:

- `PathLike` objects whose `__fspath__` answers an allowed decoy to appshield and the denied
  target to anyone else, answers the decoy on its first call only, or raises an `Exception`
  or a `BaseException` only for appshield;
- `str`/`bytes` subclasses whose methods (`encode`, `decode`, `__fspath__`, `__eq__`,
  `__hash__`, `__contains__`, `startswith`, `rfind`, `split`, `__getitem__`, ...) lie: with
  the decoy as their data and the target for everyone but appshield (so that Python code
  such as subprocess's `os.fsencode` or os._execvpe's `path.dirname` passes the target on),
  or with the target as their data and the decoy for appshield; or raise only for appshield;
- the plain target, under a `sys.settrace` tracer that raises in appshield's frames, and
  called a few frames below the recursion limit.

"For appshield" is told from the caller's frame (its `f_code.co_filename` under appshield's
package folder), as an attacker would. The targets: `/usr/bin/touch MARK` for program
positions (denied by rule `no-touch`), `mkdir CANARY` for argv positions (denied by rule
`no-canary-args`, a command line naming CANARY), an open of CANARY for a file action (rule
`no-canary-files`); the decoys start `/usr/bin/true`, or `mkdir` of a harmless name.

Each case is judged from the outside world: the MARK or CANARY file must not exist after the
attempt in enforce; in monitor, a start that happened must be in the APPSHIELD_LOG lines
written during that case, and a stand-in's exception that reached the caller must be there
as `implicit:undescribable`. A control run without appshield shows that the attacks work.
All cases of one route and mode run in one fresh interpreter (this file is also the child
script: `python test_process_hostile.py MODE WORK ROUTE`). Honest PathLike and subclass
arguments run the program exactly as without the shield (same exit status, same output).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# -- the stand-ins (built in the child) -----------------------------------------------------

# appshield's package folder, handed over by the test (the child of a control run does not
# import appshield at all).
SHIELD_DIR = os.environ.get("HOSTILE_SHIELD_DIR", "/appshield/")


def _from_shield(depth: int = 2) -> bool:
    """Is the code that called the dunder calling this appshield's?"""
    return sys._getframe(depth).f_code.co_filename.startswith(SHIELD_DIR)


class Boom(RuntimeError):
    """An ordinary exception, raised only for appshield."""


class Escape(BaseException):
    """Not an Exception: what a KeyboardInterrupt from a signal handler looks like."""


class LyingPath:
    """`__fspath__` answers `decoy` to appshield, `target` to anyone else."""

    def __init__(self, decoy: Any, target: Any) -> None:
        self.decoy, self.target = decoy, target

    def __fspath__(self) -> Any:
        return self.decoy if _from_shield() else self.target


class FlipPath:
    """`__fspath__` answers `decoy` on its first call, `target` on every later one: a reader
    that converts twice (once to decide, once to act) is fooled whoever calls."""

    def __init__(self, decoy: Any, target: Any) -> None:
        self.decoy, self.target, self.calls = decoy, target, 0

    def __fspath__(self) -> Any:
        self.calls += 1
        return self.decoy if self.calls == 1 else self.target


class RaisingPath:
    """`__fspath__` raises for appshield, answers `target` to anyone else."""

    def __init__(self, error: type[BaseException], target: Any) -> None:
        self.error, self.target = error, target

    def __fspath__(self) -> Any:
        if _from_shield():
            raise self.error("hostile __fspath__")
        return self.target


# The methods a str/bytes stand-in overrides: everything code reading a path or an argument
# might call on it.
_METHODS = (
    "__contains__", "__eq__", "__ne__", "__hash__", "__getitem__", "__len__", "__iter__",
    "__add__", "__radd__", "__mod__", "__format__", "__str__", "__bytes__", "__fspath__",
    "__lt__", "__le__", "__gt__", "__ge__", "__mul__",
    "encode", "decode", "startswith", "endswith", "find", "rfind", "index", "rindex",
    "split", "rsplit", "partition", "rpartition", "strip", "lstrip", "rstrip", "replace",
    "lower", "upper", "join", "count", "splitlines", "isascii", "removeprefix", "removesuffix",
)  # fmt: skip


def _stand_in_class(base: type, error: type[BaseException] | None) -> type:
    """A `base` (str or bytes) subclass whose methods act on `for_shield` when appshield calls
    them (or raise `error`), and on `for_others` otherwise. `__fspath__` answers the view
    itself; the object's own data is what C code reads."""

    def method(name: str) -> Callable[..., Any]:
        def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            shield = _from_shield()
            if shield and error is not None:
                raise error(f"hostile {name}")
            view = self.for_shield if shield else self.for_others
            if name == "__fspath__":
                return view
            if name == "__str__" and base is bytes:
                return repr(view)
            found = getattr(base, name, None)
            if found is None:  # __fspath__/__bytes__ on the other base
                return view
            return found(view, *args, **kwargs)

        return call

    namespace: dict[str, Any] = {name: method(name) for name in _METHODS}

    def new(cls: type, data: Any, for_shield: Any, for_others: Any) -> Any:
        made = base.__new__(cls, data)
        made.for_shield, made.for_others = for_shield, for_others
        return made

    namespace["__new__"] = new
    suffix = "raises" if error is not None else "lies"
    return type(f"Hostile{base.__name__.title()}That{suffix.title()}", (base,), namespace)


LyingStr = _stand_in_class(str, None)
LyingBytes = _stand_in_class(bytes, None)
RaisingStr = _stand_in_class(str, Boom)
RaisingBytes = _stand_in_class(bytes, Boom)
EscapingStr = _stand_in_class(str, Escape)
EscapingBytes = _stand_in_class(bytes, Escape)

_b = os.fsencode


def _lying(kind: type, data: str, decoy: str, target: str) -> Any:
    if issubclass(kind, bytes):
        return kind(_b(data), _b(decoy), _b(target))
    return kind(data, decoy, target)


# name -> (decoy, target) -> the stand-in. `None`: the plain target, under a condition.
KINDS: dict[str, Callable[[str, str], Any]] = {
    "pathlike-lies": lambda d, t: LyingPath(d, t),
    "pathlike-lies-bytes": lambda d, t: LyingPath(_b(d), _b(t)),
    "pathlike-flips": lambda d, t: FlipPath(d, t),
    "pathlike-raises": lambda d, t: RaisingPath(Boom, t),
    "pathlike-raises-base": lambda d, t: RaisingPath(Escape, t),
    # data: the decoy; everyone but appshield is told the target
    "str-lies-to-others": lambda d, t: _lying(LyingStr, d, d, t),
    "bytes-lies-to-others": lambda d, t: _lying(LyingBytes, d, d, t),
    # data: the target; appshield is told the decoy
    "str-lies-to-shield": lambda d, t: _lying(LyingStr, t, d, t),
    "bytes-lies-to-shield": lambda d, t: _lying(LyingBytes, t, d, t),
    "str-raises": lambda d, t: _lying(RaisingStr, t, t, t),
    "bytes-raises": lambda d, t: _lying(RaisingBytes, t, t, t),
    "str-raises-base": lambda d, t: _lying(EscapingStr, t, t, t),
    "bytes-raises-base": lambda d, t: _lying(EscapingBytes, t, t, t),
    "plain-under-raising-tracer": lambda d, t: t,
}
RECURSION_SLACK = (1, 2, 3, 5, 8, 13, 21, 30)
for _slack in RECURSION_SLACK:
    KINDS[f"plain-{_slack}-frames-below-the-limit"] = lambda d, t: t
BYTES_KINDS = tuple(k for k in KINDS if k.startswith("bytes-"))
# Kinds whose target reaches the OS whoever converts it: without the shield these always
# work (a kind whose data is the decoy only works where Python code converts it).
ALWAYS_WORK = ("pathlike-lies", "str-lies-to-shield", "str-raises", "str-raises-base")
BYTES_ALWAYS_WORK = ("bytes-lies-to-shield", "bytes-raises", "bytes-raises-base")


# -- the positions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Where:
    """One case's files and programs (absolute paths, as text)."""

    work: str
    mark: str  # made by `touch` when a program position's target runs
    canary: str  # made by `mkdir` / an open when an argv or file position's target runs
    harmless: str  # the decoy's argument
    allow_dir: str  # holds `prog` -> true
    deny_dir: str  # holds `prog` -> touch
    true: str
    touch: str
    mkdir: str


Maker = Callable[[str, str], Any]
Call = Callable[[Where, Maker], Any]


@dataclass(frozen=True)
class Position:
    route: str
    name: str
    call: Call
    evidence: str  # "mark" or "canary"
    kinds: tuple[str, ...] = tuple(k for k in KINDS if "frames-below" not in k)
    # Kinds the control run must show working (the attack is real).
    proves: tuple[str, ...] = ALWAYS_WORK + BYTES_ALWAYS_WORK
    # The position takes bytes only (fork_exec's executable_list): plain targets are encoded.
    wants_bytes: bool = False

    @property
    def key(self) -> str:
        return f"{self.route}:{self.name}"


def _wait(pid: int) -> int:
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def _in_child(call: Callable[[], Any]) -> int:
    """Run `call` (an exec) in a forked child that always leaves through os._exit."""
    pid = os.fork()
    if pid == 0:
        try:
            call()
        finally:
            os._exit(1)
    return _wait(pid)


async def _exec(*args: Any, **kwargs: Any) -> int:
    process = await asyncio.create_subprocess_exec(*args, **kwargs)
    return await process.wait()


def _spawnv_passfds(path: Any, argv: list[Any]) -> int:
    import multiprocessing.util

    return _wait(multiprocessing.util.spawnv_passfds(path, argv, ()))


def _pty_spawn(argv: list[Any]) -> int:
    import pty

    return pty.spawn(argv)


def _unwrapped(function: Any) -> Any:
    """The original behind appshield's wrapper (the function itself without the shield)."""
    return getattr(function, "__wrapped__", function)


def _without_fork_exec_wrapper(call: Callable[[], Any]) -> Any:
    """`call()` with subprocess calling the original fork_exec, as code that took the
    wrapper off would: then the Popen event is the only check left for fork_exec's start."""
    import _posixsubprocess

    saved = [(m, n, getattr(m, n)) for m in (subprocess, _posixsubprocess) for n in
             ("_fork_exec", "fork_exec") if hasattr(m, n)]  # fmt: skip
    for module, name, function in saved:
        setattr(module, name, _unwrapped(function))
    try:
        return call()
    finally:
        for module, name, function in saved:
            setattr(module, name, function)


def _open_action(path: Any) -> list[tuple[Any, ...]]:
    return [(os.POSIX_SPAWN_OPEN, 3, path, os.O_WRONLY | os.O_CREAT, 0o644)]


def _positions() -> list[Position]:
    run, P = subprocess.run, Position
    return [
        # subprocess.Popen: its audit event, then fork_exec (or posix_spawn, close_fds=False)
        P("popen", "program", lambda w, h: run([h(w.true, w.touch), w.mark]), "mark"),
        P(
            "popen",
            "executable",
            lambda w, h: run(["prog", w.mark], executable=h(w.true, w.touch)),
            "mark",
        ),
        P("popen", "argv-item", lambda w, h: run([w.mkdir, h(w.harmless, w.canary)]), "canary"),
        P(
            "popen",
            "cwd",
            lambda w, h: run(["./prog", w.mark], cwd=h(w.allow_dir, w.deny_dir)),
            "mark",
        ),
        P(
            "popen",
            "env-PATH",
            lambda w, h: run(["prog", w.mark], env={"PATH": h(w.allow_dir, w.deny_dir)}),
            "mark",
            proves=("str-lies-to-shield", "bytes-lies-to-shield"),
        ),
        P(
            "popen-posix-spawn",
            "program",
            lambda w, h: run([h(w.true, w.touch), w.mark], close_fds=False),
            "mark",
        ),
        P(
            "popen-posix-spawn",
            "argv-item",
            lambda w, h: run([w.mkdir, h(w.harmless, w.canary)], close_fds=False),
            "canary",
        ),
        # asyncio subprocesses (Popen underneath)
        P(
            "asyncio",
            "program",
            lambda w, h: asyncio.run(_exec(h(w.true, w.touch), w.mark)),
            "mark",
        ),
        P(
            "asyncio",
            "argv-item",
            lambda w, h: asyncio.run(_exec(w.mkdir, h(w.harmless, w.canary))),
            "canary",
        ),
        P(
            "asyncio",
            "cwd",
            lambda w, h: asyncio.run(_exec("./prog", w.mark, cwd=h(w.allow_dir, w.deny_dir))),
            "mark",
        ),
        # _posixsubprocess.fork_exec, through multiprocessing (its executable_list: bytes)
        P(
            "fork_exec",
            "program",
            lambda w, h: _spawnv_passfds(h(w.true, w.touch), [b"prog", w.mark]),
            "mark",
            kinds=(*BYTES_KINDS, "plain-under-raising-tracer"),
            proves=BYTES_ALWAYS_WORK,
            wants_bytes=True,
        ),
        P(
            "fork_exec",
            "argv-item",
            lambda w, h: _spawnv_passfds(_b(w.mkdir), [b"mkdir", h(w.harmless, w.canary)]),
            "canary",
        ),
        # os.posix_spawn[p]
        P(
            "posix_spawn",
            "program",
            lambda w, h: _wait(os.posix_spawn(h(w.true, w.touch), ["prog", w.mark], os.environ)),
            "mark",
        ),
        P(
            "posix_spawn",
            "argv-item",
            lambda w, h: _wait(
                os.posix_spawn(w.mkdir, ["mkdir", h(w.harmless, w.canary)], os.environ)
            ),
            "canary",
        ),
        P(
            "posix_spawn",
            "file-action-path",
            lambda w, h: _wait(
                os.posix_spawn(
                    w.true,
                    ["true"],
                    os.environ,
                    file_actions=_open_action(h(w.harmless, w.canary)),
                )
            ),
            "canary",
        ),
        P(
            "posix_spawnp",
            "program",
            lambda w, h: _wait(os.posix_spawnp(h(w.true, w.touch), ["prog", w.mark], os.environ)),
            "mark",
        ),
        P(
            "posix_spawnp",
            "argv-item",
            lambda w, h: _wait(
                os.posix_spawnp("mkdir", ["mkdir", h(w.harmless, w.canary)], os.environ)
            ),
            "canary",
        ),
        # os.spawnv* (fork, then exec in the child)
        P(
            "spawnv",
            "program",
            lambda w, h: os.spawnv(os.P_WAIT, h(w.true, w.touch), ["prog", w.mark]),
            "mark",
        ),
        P(
            "spawnv",
            "argv-item",
            lambda w, h: os.spawnv(os.P_WAIT, w.mkdir, ["mkdir", h(w.harmless, w.canary)]),
            "canary",
        ),
        P(
            "spawnv",
            "spawnve-program",
            lambda w, h: os.spawnve(
                os.P_WAIT, h(w.true, w.touch), ["prog", w.mark], dict(os.environ)
            ),
            "mark",
        ),
        P(
            "spawnv",
            "spawnvpe-env-PATH",
            lambda w, h: os.spawnvpe(
                os.P_WAIT, "prog", ["prog", w.mark], {"PATH": h(w.allow_dir, w.deny_dir)}
            ),
            "mark",
            proves=("str-lies-to-shield",),
        ),
        # os.exec* (in a forked child)
        P(
            "exec",
            "execv-program",
            lambda w, h: _in_child(lambda: os.execv(h(w.true, w.touch), ["prog", w.mark])),
            "mark",
        ),
        P(
            "exec",
            "execv-argv-item",
            lambda w, h: _in_child(lambda: os.execv(w.mkdir, ["mkdir", h(w.harmless, w.canary)])),
            "canary",
        ),
        P(
            "exec",
            "execve-program",
            lambda w, h: _in_child(
                lambda: os.execve(h(w.true, w.touch), ["prog", w.mark], dict(os.environ))
            ),
            "mark",
        ),
        P(
            "exec",
            "execvpe-env-PATH",
            lambda w, h: _in_child(
                lambda: os.execvpe("prog", ["prog", w.mark], {"PATH": h(w.allow_dir, w.deny_dir)})
            ),
            "mark",
            proves=("str-lies-to-shield",),
        ),
        P(
            "exec",
            "execlp-program",
            lambda w, h: _in_child(lambda: os.execlp(h(w.true, w.touch), "prog", w.mark)),
            "mark",
        ),
        # os.system: the command, judged as /bin/sh -c
        P(
            "system",
            "command",
            lambda w, h: os.system(h(f"true {w.harmless}", f"mkdir {w.canary}")),
            "canary",
        ),
        # pty.spawn: its event in the parent, os.execlp in the forked child
        # The wrappers taken off: what is left are the audit events
        P(
            "tampered",
            "popen-program",
            lambda w, h: _without_fork_exec_wrapper(lambda: run([h(w.true, w.touch), w.mark])),
            "mark",
        ),
        P(
            "tampered",
            "popen-argv-item",
            lambda w, h: _without_fork_exec_wrapper(
                lambda: run([w.mkdir, h(w.harmless, w.canary)])
            ),
            "canary",
        ),
        P(
            "tampered",
            "popen-cwd",
            lambda w, h: _without_fork_exec_wrapper(
                lambda: run(["./prog", w.mark], cwd=h(w.allow_dir, w.deny_dir))
            ),
            "mark",
        ),
        P(
            "tampered",
            "posix_spawn-program",
            lambda w, h: _wait(
                _unwrapped(os.posix_spawn)(h(w.true, w.touch), ["prog", w.mark], os.environ)
            ),
            "mark",
        ),
        P(
            "tampered",
            "posix_spawn-argv-item",
            lambda w, h: _wait(
                _unwrapped(os.posix_spawn)(w.mkdir, ["mkdir", h(w.harmless, w.canary)], {})
            ),
            "canary",
        ),
        P(
            "tampered",
            "execv-program",
            lambda w, h: _in_child(
                lambda: _unwrapped(os.execv)(h(w.true, w.touch), ["prog", w.mark])
            ),
            "mark",
        ),
        P(
            "tampered",
            "execv-argv-item",
            lambda w, h: _in_child(
                lambda: _unwrapped(os.execv)(w.mkdir, ["mkdir", h(w.harmless, w.canary)])
            ),
            "canary",
        ),
        P("pty", "program", lambda w, h: _pty_spawn([h(w.true, w.touch), w.mark]), "mark"),
        P(
            "pty",
            "argv-item",
            lambda w, h: _pty_spawn([w.mkdir, h(w.harmless, w.canary)]),
            "canary",
        ),
    ]


POSITIONS = _positions()
ROUTES = sorted({p.route for p in POSITIONS})
# The recursion-limit cases run on one position per route.
_DEPTH_KINDS = tuple(k for k in KINDS if "frames-below" in k)
_DEPTH_POSITIONS = {p.route: p.key for p in reversed(POSITIONS)}


def cases(route: str) -> list[tuple[str, Position, str]]:
    """(case id, position, kind) of every case of a route."""
    found = []
    for position in POSITIONS:
        if position.route != route:
            continue
        kinds = position.kinds
        if _DEPTH_POSITIONS[route] == position.key:
            kinds = kinds + _DEPTH_KINDS
        found.extend((f"{position.key}:{kind}", position, kind) for kind in kinds)
    return found


# -- the child ---------------------------------------------------------------------------------


def _raising_tracer(frame: Any, event: str, arg: Any) -> Any:
    if frame.f_code.co_filename.startswith(SHIELD_DIR):
        raise Boom("tracer")
    return _raising_tracer


def _depth() -> int:
    frame: Any = sys._getframe(1)
    depth = 0
    while frame is not None:
        depth += 1
        frame = frame.f_back
    return depth


def _below_the_limit(slack: int, call: Callable[[], Any]) -> Any:
    target = sys.getrecursionlimit() - slack

    def down() -> Any:
        if _depth() >= target:
            return call()
        return down()

    return down()


def _attempt(position: Position, kind: str, where: Where) -> Any:
    make = KINDS[kind]
    if kind.startswith("plain-") and position.wants_bytes:
        make = lambda decoy, target: _b(target)  # noqa: E731

    def call() -> Any:
        return position.call(where, make)

    if kind == "plain-under-raising-tracer":
        sys.settrace(_raising_tracer)
        try:
            return call()
        finally:
            sys.settrace(None)
    if "frames-below" in kind:
        return _below_the_limit(int(kind.split("-")[1]), call)
    return call()


def _where(work: str, index: int) -> Where:
    return Where(
        work,
        f"{work}/MARK-{index}",
        f"{work}/CANARY-{index}",
        f"{work}/harmless-{index}",
        f"{work}/allow",
        f"{work}/deny",
        *(os.path.realpath(shutil.which(n) or f"/usr/bin/{n}") for n in ("true", "touch", "mkdir")),
    )


def _log_lines(path: str) -> int:
    try:
        with open(path, "rb") as log:
            return log.read().count(b"\n")
    except FileNotFoundError:
        return 0


def child_main(mode: str, work: str, route: str) -> None:
    parent = os.getpid()
    log = os.environ["APPSHIELD_LOG"]
    if mode != "control":
        import appshield

        appshield.install(os.environ["HOSTILE_POLICY"], mode=mode, locked=True)
    out = os.fdopen(os.dup(1), "w", buffering=1)  # pty.spawn copies the child's output to 1
    for index, (case_id, position, kind) in enumerate(cases(route)):
        before = _log_lines(log)
        outcome = "returned"
        try:
            _attempt(position, kind, _where(work, index))
        except BaseException as exc:  # every outcome is recorded
            outcome = type(exc).__name__
        finally:
            if os.getpid() != parent:  # a forked child that raised instead of exec'ing
                os._exit(3)
        record = {"id": case_id, "outcome": outcome, "log": [before, _log_lines(log)]}
        out.write("RESULT " + json.dumps(record) + "\n")


# -- the tests (outside) ------------------------------------------------------------------------

POLICY = """\
version: 1
name: hostile-process
mode: enforce
defaults: {{process: allow, file: allow, network: allow, import: allow}}
rules:
  - id: no-touch
    category: process
    action: deny
    match: {{executable: [touch, /usr/bin/touch, /bin/touch]}}
  - id: no-canary-args
    category: process
    action: deny
    match: {{command_line: "*CANARY*"}}
  - id: no-canary-files
    category: file
    action: deny
    match: {{path: "{work}/CANARY-*", access: [write]}}
"""


@dataclass
class Outcome:
    case_id: str
    position: Position
    kind: str
    raised: str
    happened: bool
    reports: list[dict[str, Any]]


def _shield_dir() -> str:
    import appshield

    return os.path.dirname(os.path.realpath(appshield.__file__)) + "/"


def _setup(tmp_path: Path) -> tuple[Path, Path]:
    work = Path(os.path.realpath(tmp_path)) / "work"
    for name, target in (("allow", "true"), ("deny", "touch")):
        (work / name).mkdir(parents=True)
        (work / name / "prog").symlink_to(os.path.realpath(shutil.which(target) or target))
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.format(work=work))
    return work, policy


def _child_env(policy: Path, log: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("APPSHIELD_", "OTEL_", "PYTEST_", "COV_"))
    }
    env.update(
        HOSTILE_POLICY=str(policy),
        HOSTILE_SHIELD_DIR=_shield_dir(),
        APPSHIELD_LOG=str(log),
        # Identical violations (same rule, API, target and code line) are folded for 10 s by
        # default; every case here must show its own report. (0 reads as "the default".)
        APPSHIELD_AGGREGATION_INTERVAL="1e-9",
        PYTHONDONTWRITEBYTECODE="1",
        PATH=os.environ.get("PATH", os.defpath),
        **extra,
    )
    return env


def run_route(route: str, mode: str, tmp_path: Path) -> list[Outcome]:
    work, policy = _setup(tmp_path)
    log = tmp_path / "violations.jsonl"
    done = subprocess.run(
        [sys.executable, __file__, mode, str(work), route],
        cwd=work,
        env=_child_env(policy, log),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    records = [
        json.loads(line.removeprefix("RESULT "))
        for line in done.stdout.splitlines()
        if line.startswith("RESULT ")
    ]
    expected = cases(route)
    assert len(records) == len(expected), f"the child stopped early:\n{done.stderr[-3000:]}"
    lines = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    outcomes = []
    for index, (record, (case_id, position, kind)) in enumerate(
        zip(records, expected, strict=True)
    ):
        assert record["id"] == case_id
        where = _where(str(work), index)
        evidence = where.mark if position.evidence == "mark" else where.canary
        first, last = record["log"]
        # The lines written during the case, and any later line whose target ends with the
        # case's own file: a report whose sink failed (at the recursion limit) is written
        # with the next report.
        reports = lines[first:last] + [r for r in lines[last:] if r["target"].endswith(evidence)]
        outcomes.append(
            Outcome(case_id, position, kind, record["outcome"], os.path.exists(evidence), reports)
        )
    return outcomes


# -- honest arguments -------------------------------------------------------------------------


class HonestPath:
    def __init__(self, path: Any) -> None:
        self.path = path

    def __fspath__(self) -> Any:
        return self.path


class HonestStr(str):
    __slots__ = ()


class HonestBytes(bytes):
    __slots__ = ()


def _output_of(spawn: Callable[[list[tuple[Any, ...]]], int], out: str) -> tuple[int, str]:
    """(exit status, what the program wrote) for a posix_spawn-style call whose stdout is a
    file action opening `out`."""
    action = [
        (os.POSIX_SPAWN_OPEN, 1, HonestPath(out), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    ]
    status = spawn(action)
    return status, Path(out).read_text()


def _captured(done: subprocess.CompletedProcess[bytes]) -> tuple[int, str, str]:
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def _honest_cases(w: Where) -> dict[str, Callable[[], Any]]:
    echo = os.path.realpath(shutil.which("echo") or "/bin/echo")
    made = f"{w.work}/made"
    out = f"{w.work}/out"
    path_env = {"PATH": HonestStr(os.environ["PATH"])}
    cap = {"capture_output": True}
    run = subprocess.run

    async def async_echo() -> tuple[int, bytes]:
        process = await asyncio.create_subprocess_exec(
            HonestPath(echo), HonestStr("a"), Path("b"), stdout=subprocess.PIPE
        )
        data, _ = await process.communicate()
        return process.returncode or 0, data

    def made_by(call: Callable[[str], Any]) -> tuple[Any, bool]:
        shutil.rmtree(made, ignore_errors=True)
        result = call(made)
        return result, os.path.isdir(made)

    return {
        "popen-pathlike-argv": lambda: _captured(
            run([HonestPath(echo), HonestStr("a"), HonestBytes(b"b"), Path("c")], **cap)
        ),
        "popen-executable-path": lambda: _captured(
            run(["name", "hi"], executable=Path(echo), **cap)
        ),
        "popen-cwd-path": lambda: _captured(run(["pwd"], cwd=Path(w.allow_dir), **cap)),
        "popen-cwd-str-subclass": lambda: _captured(
            run(["./prog"], cwd=HonestStr(w.allow_dir), **cap)
        ),
        "popen-env-str-subclass": lambda: _captured(
            run(["echo", HonestStr("x")], env=path_env, **cap)
        ),
        "popen-env-pathlike": lambda: _captured(
            run(["env"], env={**path_env, HonestStr("A"): HonestPath("1")}, **cap)
        ),
        "popen-posix-spawn-route": lambda: _captured(
            run([Path(echo), HonestStr("x")], close_fds=False, **cap)
        ),
        "popen-shell": lambda: _captured(run(HonestStr("echo $((6*7))"), shell=True, **cap)),
        "popen-missing-program": lambda: _error(lambda: run([Path(f"{w.work}/nowhere")])),
        "asyncio-pathlike": lambda: asyncio.run(async_echo()),
        "fork_exec-bytes-subclass": lambda: made_by(
            lambda d: _spawnv_passfds(HonestBytes(_b(w.mkdir)), [Path(w.mkdir), HonestPath(d)])
        ),
        "posix_spawn-pathlike": lambda: _output_of(
            lambda a: _wait(
                os.posix_spawn(
                    HonestPath(echo), [HonestStr("echo"), Path("x")], os.environ, file_actions=a
                )
            ),
            out,
        ),
        "posix_spawn-env-pathlike": lambda: _output_of(
            lambda a: _wait(
                os.posix_spawn("/usr/bin/env", ["env"], {"A": HonestPath("1")}, file_actions=a)
            ),
            out,
        ),
        "posix_spawnp-str-subclass": lambda: _output_of(
            lambda a: _wait(
                os.posix_spawnp(HonestStr("echo"), ["echo", "y"], os.environ, file_actions=a)
            ),
            out,
        ),
        "spawnv-pathlike": lambda: made_by(
            lambda d: os.spawnv(os.P_WAIT, Path(w.mkdir), [HonestStr("mkdir"), Path(d)])
        ),
        "spawnvpe-str-subclass-env": lambda: made_by(
            lambda d: os.spawnvpe(os.P_WAIT, HonestStr("mkdir"), ["mkdir", d], path_env)
        ),
        "execv-pathlike-in-child": lambda: made_by(
            lambda d: _in_child(lambda: os.execv(Path(w.mkdir), ["mkdir", HonestPath(d)]))
        ),
        "execvpe-str-subclass-in-child": lambda: made_by(
            lambda d: _in_child(lambda: os.execvpe(HonestStr("mkdir"), ["mkdir", d], path_env))
        ),
        "system-str-subclass": lambda: made_by(lambda d: os.system(HonestStr(f"mkdir {d}"))),
        "pty-pathlike": lambda: made_by(lambda d: _pty_spawn([Path(w.mkdir), HonestPath(d)])),
    }


def _error(call: Callable[[], Any]) -> tuple[str, Any]:
    try:
        call()
    except Exception as exc:  # the error itself is the result
        return type(exc).__name__, getattr(exc, "errno", None)
    return "no error", None


def honest_main(mode: str, work: str) -> None:
    if mode != "control":
        import appshield

        appshield.install(os.environ["HOSTILE_POLICY"], mode=mode, locked=True)
    out = os.fdopen(os.dup(1), "w", buffering=1)
    for name, call in _honest_cases(_where(work, 0)).items():
        try:
            result: Any = call()
        except BaseException as exc:  # recorded, compared with the control
            result = ["raised", type(exc).__name__, str(exc)]
        text = json.dumps(result, default=repr).replace(work, "{WORK}")
        out.write(f"RESULT {json.dumps({'id': name, 'result': json.loads(text)})}\n")


if __name__ == "__main__":
    if sys.argv[3] == "honest":
        honest_main(sys.argv[1], sys.argv[2])
    else:
        child_main(sys.argv[1], sys.argv[2], sys.argv[3])
    sys.exit(0)


# Imported here, after the child's entry point: the child never loads pytest.
import pytest  # noqa: E402

ALLOW_POLICY = """\
version: 1
name: honest
mode: enforce
defaults: {process: allow, file: allow, network: allow, import: allow}
rules: []
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str, str], list[Outcome]]]:
    """Each (route, mode) batch runs once, in its own fresh interpreter, when first asked."""
    done: dict[tuple[str, str], list[Outcome]] = {}

    def get(route: str, mode: str) -> list[Outcome]:
        if (route, mode) not in done:
            done[route, mode] = run_route(route, mode, tmp_path_factory.mktemp(f"{route}-{mode}"))
        return done[route, mode]

    yield get


def _describe(outcomes: list[Outcome]) -> str:
    return "\n".join(f"  {o.case_id}: raised {o.raised}, reports {o.reports}" for o in outcomes)


def test_every_route_and_position_is_covered() -> None:
    assert set(ROUTES) == {
        "asyncio", "exec", "fork_exec", "popen", "popen-posix-spawn", "posix_spawn",
        "posix_spawnp", "pty", "spawnv", "system", "tampered",
    }  # fmt: skip
    names = {p.key for p in POSITIONS}
    for needed in ("popen:program", "popen:executable", "popen:argv-item", "popen:cwd",
                   "popen:env-PATH", "posix_spawn:file-action-path", "fork_exec:program",
                   "fork_exec:argv-item", "exec:execv-argv-item", "system:command"):  # fmt: skip
        assert needed in names
    total = sum(len(cases(route)) for route in ROUTES)
    assert total > 300


@pytest.mark.parametrize("route", ROUTES)
def test_without_the_shield_every_attack_works(
    runs: Callable[[str, str], list[Outcome]], route: str
) -> None:
    outcomes = runs(route, "control")
    failed = [o for o in outcomes if o.kind in o.position.proves and not o.happened]
    assert not failed, "these attacks do not even work without appshield:\n" + _describe(failed)
    for position in {o.position.key for o in outcomes}:
        assert any(o.happened for o in outcomes if o.position.key == position), position


@pytest.mark.parametrize("route", ROUTES)
def test_enforce_lets_nothing_through(
    runs: Callable[[str, str], list[Outcome]], route: str
) -> None:
    outcomes = runs(route, "enforce")
    escaped = [o for o in outcomes if o.happened]
    assert not escaped, "started although denied:\n" + _describe(escaped)


@pytest.mark.parametrize("route", ROUTES)
def test_monitor_reports_what_it_lets_through(
    runs: Callable[[str, str], list[Outcome]], route: str
) -> None:
    outcomes = runs(route, "monitor")
    rules = {"no-touch", "no-canary-args", "no-canary-files", "implicit:undescribable"}
    unreported = [
        o for o in outcomes if o.happened and not any(r["rule"] in rules for r in o.reports)
    ]
    assert not unreported, "started without a report:\n" + _describe(unreported)
    # A stand-in's own exception reached the caller: appshield failed closed on it, and says so.
    refused = [
        o
        for o in outcomes
        if o.raised in ("Boom", "Escape") and o.kind != "plain-under-raising-tracer"
    ]
    silent = [
        o for o in refused if not any(r["rule"] == "implicit:undescribable" for r in o.reports)
    ]
    assert not silent, "failed closed without a report:\n" + _describe(silent)
    assert all(
        r["blocked"] is False
        for o in outcomes
        for r in o.reports
        if r["rule"] != "implicit:undescribable"
    )


def _honest_run(tmp_path: Path, mode: str) -> dict[str, Any]:
    work, _ = _setup(tmp_path)
    policy = tmp_path / "allow.yaml"
    policy.write_text(ALLOW_POLICY)
    done = subprocess.run(
        [sys.executable, __file__, mode, str(work), "honest"],
        cwd=work,
        env=_child_env(policy, tmp_path / "violations.jsonl"),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    found = {}
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            record = json.loads(line.removeprefix("RESULT "))
            found[record["id"]] = record["result"]
    assert len(found) == len(_honest_cases(_where(str(work), 0))), done.stderr[-3000:]
    assert not (tmp_path / "violations.jsonl").exists()
    return found


@pytest.fixture(scope="module")
def honest(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any]]:
    return (
        _honest_run(tmp_path_factory.mktemp("honest-control"), "control"),
        _honest_run(tmp_path_factory.mktemp("honest-shielded"), "enforce"),
    )


_HONEST = sorted(_honest_cases(_where("/w", 0)))


@pytest.mark.parametrize("name", _HONEST)
def test_honest_arguments_behave_as_without_the_shield(
    honest: tuple[dict[str, Any], dict[str, Any]], name: str
) -> None:
    bare, shielded = honest
    assert bare[name] == shielded[name]
    assert bare[name] != ["raised"] and "raised" not in str(bare[name])[:10]
