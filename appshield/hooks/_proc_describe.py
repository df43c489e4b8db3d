"""The arguments of a process start, turned into the `ProcessOp` the kernel will run.

Every route (Popen's audit event, `_posixsubprocess.fork_exec`, `os.posix_spawn`, the exec
family, `os.system`) ends in `describe`, so one start seen by two layers yields two *equal*
operations: that equality is how the layers recognise a start already decided.

- program: found as the kernel and libc will find it. A name without `/` is searched in the
  child's PATH (what `execvp` and subprocess do), a relative path is taken from the child's
  working folder; a program that cannot be found (or is not executable) will not start, so
  there is nothing to decide (`None`).
- executable: the found file with every symlink resolved. A symlink named `ls` that points
  at `touch` is judged as `touch`.
- trusted_location: the resolved file sits in a folder of PATH as it was when the shield
  started, or in a folder this process cannot write. A copy of a program under an allowed
  name in a writable folder (the work folder, `/tmp`) is not trusted, so a base-name rule
  such as `git` does not match it.
- shell: the program is a shell run with `-c` (os.system, os.popen and shell=True arrive here
  as `/bin/sh -c CMD`).
- unshielded: decided by `appshield._activate.child_would_be_unshielded` (a Python child that
  would run without this process's shield; only meaningful when the shield came in through
  the environment, see that function and docs/limits.md).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from appshield.normalize import normalize_path, resolve_path
from appshield.operations import ProcessOp

__all__ = ["SHELLS", "describe", "env_mapping", "exec_path", "is_shell", "text"]

SHELLS = frozenset(
    {"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "yash", "posh", "fish", "csh", "tcsh"}
)
# Shell options that take the next argument as their value.
_SHELL_VALUE_OPTIONS = frozenset({"-o", "+o", "-O", "+O", "--rcfile", "--init-file"})

_trusted_dirs: frozenset[str] | None = None


def text(value: Any) -> str:
    """A path or argument as text: str, bytes and PathLike; an int is a descriptor."""
    if isinstance(value, int):
        return f"/proc/self/fd/{value}"
    value = os.fspath(value)
    return os.fsdecode(value) if isinstance(value, bytes) else value


def argv_text(argv: Any) -> tuple[str, ...]:
    if argv is None:
        return ()
    if isinstance(argv, (str, bytes, os.PathLike)):
        return (text(argv),)
    return tuple(text(a) for a in argv)


def env_mapping(env: Any) -> Mapping[Any, Any] | None:
    """The child's environment as a mapping: fork_exec gets a list of b"KEY=VALUE"."""
    if env is None or isinstance(env, Mapping):
        return env
    pairs: dict[str, str] = {}
    for item in env:
        key, _, value = text(item).partition("=")
        pairs[key] = value
    return pairs


def exec_path(env: Mapping[Any, Any] | None) -> list[str]:
    """PATH as the child will search it (`os.get_exec_path` semantics)."""
    try:
        return [d if d.__class__ is str else text(d) for d in os.get_exec_path(env)]
    except (ValueError, TypeError):
        return os.defpath.split(os.pathsep)


def _runnable(path: str) -> bool:
    return os.access(path, os.X_OK) and os.path.isfile(path)


# found program path -> (device, inode, resolved path). A hit costs one stat, which follows
# symlinks as execve will; a link that now leads elsewhere changes the identity.
_programs: dict[str, tuple[int, int, str]] = {}


def resolve_program_file(found: str) -> str:
    """`found` with symlinks resolved (through the kernel), remembered by file identity."""
    try:
        info = os.stat(found)
    except OSError:
        return resolve_path(found)
    known = _programs.get(found)
    if known is not None and known[0] == info.st_dev and known[1] == info.st_ino:
        return known[2]
    resolved = resolve_path(found)
    if len(_programs) >= 1024:
        _programs.clear()
    _programs[found] = (info.st_dev, info.st_ino, resolved)
    return resolved


def find_program(name: str, search: Iterable[str] | None, cwd: str) -> str | None:
    """The file the kernel will run. search None: no PATH search (posix_spawn, execve)."""
    if search is None or "/" in name:
        candidate = normalize_path(name, cwd=cwd)
        return candidate if _runnable(candidate) else None
    for entry in search:
        # Most entries do not hold the program: test the raw join first, normalise the hit.
        raw = f"{entry}/{name}" if entry.startswith("/") else f"{cwd}/{entry or '.'}/{name}"
        if _runnable(raw):
            return normalize_path(raw)
    return None


def _startup_dirs() -> frozenset[str]:
    global _trusted_dirs
    if _trusted_dirs is None:
        from appshield.runtime import STARTUP_ENVIRON

        found: set[str] = set()
        for entry in STARTUP_ENVIRON.get("PATH", os.defpath).split(os.pathsep):
            if entry.startswith("/"):  # `.` or an empty entry depends on the current folder
                found.add(normalize_path(entry))
                found.add(resolve_path(entry))
        _trusted_dirs = frozenset(found)
    return _trusted_dirs


def is_trusted(resolved: str) -> bool:
    folder = os.path.dirname(resolved) or "/"
    return folder in _startup_dirs() or not os.access(folder, os.W_OK)


def is_shell(resolved: str, argv: Sequence[str]) -> bool:
    """A shell told to run a command string (`sh -c`, `bash -lc`, `dash -e -c`)."""
    names = {os.path.basename(resolved)}
    if argv:
        names.add(os.path.basename(argv[0]))
    if names.isdisjoint(SHELLS):
        return False
    skip = False
    for arg in argv[1:]:
        if skip:
            skip = False
            continue
        if arg in _SHELL_VALUE_OPTIONS:
            skip = True
            continue
        if arg == "--" or not arg.startswith(("-", "+")):
            return False
        if arg.startswith("-") and not arg.startswith("--") and "c" in arg[1:]:
            return True
    return False


_would_be_unshielded: Callable[..., bool] | None = None


def _unshielded(argv: Sequence[str], env: Any, resolved: str, cwd: str) -> bool:
    global _would_be_unshielded
    if _would_be_unshielded is None:
        # bound on first use: appshield._activate imports the runtime, which imports hooks
        from appshield._activate import child_would_be_unshielded

        _would_be_unshielded = child_would_be_unshielded
    return _would_be_unshielded(argv, env_mapping(env), executable=resolved, cwd=cwd)


def child_cwd(cwd: Any) -> str:
    return normalize_path(text(cwd)) if cwd is not None else normalize_path(".")


def describe(
    program: Any,
    argv: Any,
    env: Any,
    cwd: Any = None,
    *,
    search: Iterable[str] | Callable[[], Iterable[str]] | None = None,
) -> ProcessOp | None:
    """The start of `program` with `argv` in `env` (None: this process's environment) from
    folder `cwd` (None: the current one). `search`: PATH entries to search for a bare name
    (or a function returning them, called only for a bare name)."""
    where = child_cwd(cwd)
    name = text(program)
    if callable(search):
        search = search() if "/" not in name else None
    found = find_program(name, search, where)
    if found is None:
        return None
    resolved = resolve_program_file(found)
    args = argv_text(argv) or (name,)
    return ProcessOp(
        executable=resolved,
        argv=args,
        shell=is_shell(resolved, args),
        cwd=where,
        trusted_location=is_trusted(resolved),
        unshielded=_unshielded(args, env, resolved, where),
    )


def shell_command(command: Any) -> ProcessOp | None:
    """`os.system(command)`: /bin/sh -c command, as the C library runs it."""
    return describe("/bin/sh", ("/bin/sh", "-c", text(command)), None)
