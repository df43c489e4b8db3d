"""The arguments of a process start, turned into the `ProcessOp` the kernel will run.

Every route (Popen's audit event, `_posixsubprocess.fork_exec`, `os.posix_spawn`, the exec
family, `os.system`) ends in `describe`, so one start seen by two layers yields two *equal*
operations: that equality is how the layers recognise a start already decided.

- program: found as the kernel and libc will find it. A name without `/` is searched in the
  child's PATH (what `execvp` and subprocess do), a relative path is taken from the child's
  working folder; a program that cannot be found (or is not executable) will not start, so
  there is nothing to decide (`None`).
  The search is remembered per (name, PATH, working folder) and checked again on every start
  with the same system calls a search makes (`_still_found`): only the path building,
  normalising and resolving is saved, never a check of the file system.
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
    if argv.__class__ is list or argv.__class__ is tuple:
        args = tuple(argv)
        for arg in args:
            if arg.__class__ is not str:
                break
        else:
            return args  # the common case: already text
        return tuple(text(a) for a in args)
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


# (PATH as os.environ holds it, its entries): the split of the last value seen.
_environ_path: tuple[object, tuple[str, ...]] = (object(), ())


def _inherited_exec_path() -> tuple[str, ...] | None:
    """`os.get_exec_path()` for a child that inherits this environment, without its warnings
    filter and exception round trip (a third of a Popen description): os.environ keeps its
    values as bytes in `_data`, and the same PATH gives the same entries. None when
    os.environ is not the standard mapping (then the caller asks os.get_exec_path)."""
    global _environ_path
    environ = os.environ
    if environ.__class__ is not os._Environ:
        return None
    data = getattr(environ, "_data", None)
    if data is None:
        return None
    value = data.get(b"PATH")
    seen, entries = _environ_path
    if value is not seen and value != seen:
        path = os.fsdecode(value) if value is not None else os.defpath
        entries = tuple(path.split(os.pathsep))
        _environ_path = (value, entries)
    return entries


def exec_path(env: Mapping[Any, Any] | None = None) -> Sequence[str]:
    """PATH as the child will search it (`os.get_exec_path` semantics)."""
    if env is None:
        entries = _inherited_exec_path()
        if entries is not None:
            return entries
    try:
        return [d if d.__class__ is str else text(d) for d in os.get_exec_path(env)]
    except (ValueError, TypeError):
        return os.defpath.split(os.pathsep)


def _runnable(path: str) -> bool:
    return os.access(path, os.X_OK) and os.path.isfile(path)


def _identity(path: str | bytes) -> tuple[int, int, int] | None:
    """The file `path` leads to (every symlink followed, as execve follows them): device,
    inode and inode-change time, so that a re-used inode number is a different file."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino, info.st_ctime_ns


def find_program(
    name: str, search: Iterable[str] | None, cwd: str, misses: list[str] | None = None
) -> str | None:
    """The file the kernel will run. search None: no PATH search (posix_spawn, execve).
    `misses`, when given, receives the candidates tried before it, in order."""
    if search is None or "/" in name:
        candidate = normalize_path(name, cwd=cwd)
        return candidate if _runnable(candidate) else None
    for entry in search:
        # Most entries do not hold the program: test the raw join first, normalise the hit.
        raw = f"{entry}/{name}" if entry.startswith("/") else f"{cwd}/{entry or '.'}/{name}"
        if _runnable(raw):
            return normalize_path(raw)
        if misses is not None:
            misses.append(raw)
    return None


# What a search found: (the candidates tried before it, as bytes, duplicates dropped; the
# found file, as bytes; its `_identity`, or None when it must not be taken as a hit; its
# resolved path; the resolved path's folder; whether that folder was on PATH at start-up;
# whether its base name is a shell's).
_Found = tuple[tuple[bytes, ...], bytes, tuple[int, int, int] | None, str, str, bool, bool]
# (program name, PATH entries or None, working folder) -> what its last search found.
_located: dict[tuple[str, tuple[str, ...] | None, str], _Found] = {}


def _still_found(found: _Found) -> bool:
    """Would the search that gave `found` give the same file now? Every earlier candidate must
    still not be a runnable file (one appearing in an earlier PATH folder, or made executable
    there, wins from then on), and the found one must still be runnable and the very same file
    (device and inode through every symlink, as execve follows them: a replaced file or a
    re-pointed link, a re-used inode fail). These are the system calls the search itself
    makes; what the cache saves is building, normalising and resolving the paths again."""
    if found[2] is None:
        return False
    access, x_ok = os.access, os.X_OK
    for candidate in found[0]:
        if access(candidate, x_ok) and os.path.isfile(candidate):
            return False
    try:
        info = os.stat(found[1])
    except OSError:
        return False
    return (
        (info.st_dev, info.st_ino, info.st_ctime_ns) == found[2]
        and info.st_mode & 0o170000 == 0o100000  # S_ISREG, as os.path.isfile
        and access(found[1], x_ok)
    )


def _search(name: str, search: Sequence[str] | None, cwd: str) -> _Found | None:
    misses: list[str] = []
    path = find_program(name, search, cwd, misses)
    if path is None:
        return None
    # The file the path leads to, before and after resolving it: the resolved path is
    # remembered with that identity only when both agree (and the resolved path names that
    # same file), so a link re-pointed while it was being resolved cannot leave a name and
    # an identity of two different files in the cache.
    before = _identity(path)
    resolved = resolve_path(path)
    identity = before if before is not None and before == _identity(resolved) else None
    folder = os.path.dirname(resolved) or "/"
    return (
        tuple(dict.fromkeys(os.fsencode(m) for m in misses)),
        os.fsencode(path),
        identity,
        resolved,
        folder,
        folder in _startup_dirs(),
        os.path.basename(resolved) in SHELLS,
    )


def _locate(name: str, search: Sequence[str] | None, cwd: str) -> _Found | None:
    """`find_program` and the program's resolved path, remembered per (name, PATH, folder)
    and re-validated on every call by `_still_found`."""
    key = (name, search if search is None or search.__class__ is tuple else tuple(search), cwd)
    if name.__class__ is not str:  # a str subclass could lie in __hash__/__eq__: no memory
        return _search(name, key[1], cwd)
    found = _located.get(key)
    if found is not None and _still_found(found):
        return found
    found = _search(name, key[1], cwd)
    if found is not None:
        if len(_located) >= 256:
            _located.clear()
        _located[key] = found
    return found


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
    # env as given: converting fork_exec's list is left to the rare case that reads it
    return _would_be_unshielded(argv, env, executable=resolved, cwd=cwd)


def child_cwd(cwd: Any) -> str:
    if cwd is not None:
        return normalize_path(text(cwd))
    try:
        here = os.getcwd()
    except OSError:
        here = ""
    # The kernel's answer is already absolute and normal; anything else (a deleted folder,
    # "(unreachable)", a name such as "...", the root) goes the long way.
    if here[:1] == "/" and "/." not in here and "//" not in here and here[-1:] != "/":
        return here
    return normalize_path(".")


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
    name = program if program.__class__ is str else text(program)
    if "/" in name:
        search = None
    elif callable(search):
        search = search()
    found = _locate(name, search, where)  # type: ignore[arg-type]
    if found is None:
        return None
    resolved, folder = found[3], found[4]
    args = argv_text(argv) or (name,)
    # Positional, in field order (executable, argv, shell, cwd, trusted_location, unshielded):
    # half the cost of keywords on this path.
    return ProcessOp(
        resolved,
        args,
        # is_shell, skipped when neither name is a shell's (its first test)
        (found[6] or os.path.basename(args[0]) in SHELLS) and is_shell(resolved, args),
        where,
        # is_trusted: the start-up PATH part is fixed, the writable part is asked every time
        found[5] or not os.access(folder, os.W_OK),
        _unshielded(args, env, resolved, where),
    )


def shell_command(command: Any) -> ProcessOp | None:
    """`os.system(command)`: /bin/sh -c command, as the C library runs it."""
    return describe("/bin/sh", ("/bin/sh", "-c", text(command)), None)
