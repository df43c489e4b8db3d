"""The arguments of a process start, turned into the `ProcessOp` the kernel will run: the one
process describer, used by the hooks, `appshield explain` (`appshield._describe.process_op`),
and so by `learn` and the tests.

Every hook route (Popen's audit event, `_posixsubprocess.fork_exec`, `os.posix_spawn`, the
exec family, `os.system`) ends in `describe_start`, so one start seen by two layers yields two
*equal* operations: that equality is how the layers recognise a start already decided. explain
asks the same function, so it answers for the very operation the hooks would decide.

Everything here works on plain values: exact `str`/`bytes` (bytes decoded as the file system
encoding does), an exact `int` descriptor, exact lists, tuples and dicts of those. Reading an
argument object that could lie (a subclass, a `PathLike`, a mapping that is not a dict) is the
hooks' job (`hooks/process/convert.py`), done before they call here; handed anything else, this
module raises TypeError and the gate denies the start. It patches nothing and needs no shield:
its only I/O is finding and resolving the program (and the child check's look at a Python
interpreter, `appshield._proc_children`).

- program: found as the kernel and libc will find it. A name without `/` is searched in the
  child's PATH (what `execvp` and subprocess do), a relative path is taken from the child's
  working folder. A program that cannot be found (or is not executable) will not start: for
  the exec family, which runs at the very moment of the decision, there is nothing to decide
  (`None`); the routes where code can still run between the decision and the exec (Popen's
  `preexec_fn`, a fork before the exec) ask with `missing=True` and get the start of a
  *missing* program (`_missing`), decided like any other. Paths are tested as the kernel
  walks them: `..` is never folded lexically before a symlink is followed (`link/../x` is the
  folder *above the link's target*, and that is where execve goes).
  The search is remembered per (name, PATH, working folder, start-up PATH) and checked again
  on every start with the same system calls a search makes (`_still_found`): only the path
  building and resolving is saved, never a check of the file system. A start that inherits
  this process's environment and folder is remembered whole (`_repeated`), behind the same
  re-proof and with the fields that depend on more than the search asked again.
- executable: the found file with every symlink resolved. A symlink named `ls` that points
  at `touch` is judged as `touch`.
- trusted_location: the resolved file sits in a folder of PATH as it was when the shield
  started (`startup_path`, handed in by the caller), or in a folder this process cannot
  write. A copy of a program under an allowed name in a writable folder (the work folder,
  `/tmp`) is not trusted, so a base-name rule such as `git` does not match it.
- shell: the program is a shell run with `-c`, alone or in an option bundle (`-lc`), or
  busybox running a shell applet that way (`is_shell`); os.system, os.popen and shell=True
  arrive here as `/bin/sh -c CMD`.
- unshielded: decided by `appshield._proc_children.child_would_be_unshielded` (a Python child
  that would run without this process's shield; only meaningful when the shield came in
  through the environment, see that function and docs/limits.md).

`Start.path` is the absolute path of the file that was judged, spelled as the kernel walks it
(no `..` folded): the wrappers hand it to the OS instead of the name they were given, so the
OS runs that very file even if PATH, the current folder or an earlier candidate changes
between the decision and the start.
"""

from __future__ import annotations

import os
import sys

from appshield._proc_children import child_would_be_unshielded
from appshield.normalize import normalize_path, resolve_path
from appshield.operations import ProcessOp

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence
    from typing import Any, NamedTuple, TypeAlias
else:  # typing's own costs ~0.7 M instructions per class at start-up (appshield/_records.py)
    from appshield._records import NamedTuple

__all__ = [
    "SHELLS",
    "UNKNOWN",
    "Env",
    "Plain",
    "Start",
    "absolute_candidates",
    "argv_text",
    "child_cwd",
    "describe",
    "describe_first",
    "describe_start",
    "is_shell",
    "is_trusted",
    "remembered_start",
    "shell_command",
    "trusted_folders",
    "unshielded",
]

Plain = str | bytes
# The child's environment: None (it inherits this process's), a dict of exact str/bytes, or
# fork_exec's exact `b"KEY=VALUE"` items.
Env: TypeAlias = "Mapping[Plain, Plain] | Sequence[bytes] | None"

_BUSYBOX = "busybox"
# Programs that run a command string given with `-c` (busybox: when its applet is a shell;
# `hush` is one of busybox's shells).
SHELLS = frozenset(
    {"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "yash", "posh", "fish", "csh", "tcsh"}
) | {"hush", _BUSYBOX}
# Shell options that take the next argument as their value.
_SHELL_VALUE_OPTIONS = frozenset({"-o", "+o", "-O", "+O", "--rcfile", "--init-file"})

# Trusted folders per start-up PATH value (see `trusted_folders`).
_trusted: dict[str, frozenset[str]] = {}
_modules = sys.modules


def _text(value: Plain | int) -> str:
    """A program or folder as text: an exact str as it is, exact bytes decoded as the file
    system encoding does, an exact int a descriptor (named by its /proc/self/fd link).
    Anything else is not plain data: TypeError (the hooks read hostile values first)."""
    if type(value) is str:
        return value
    if type(value) is bytes:
        return os.fsdecode(value)
    if type(value) is int:
        return f"/proc/self/fd/{value}"
    raise TypeError(f"not a plain value: {type(value).__qualname__}")


def _arg_text(value: Plain) -> str:
    if type(value) is str:
        return value
    if type(value) is bytes:
        return os.fsdecode(value)
    raise TypeError(f"not a plain argument: {type(value).__qualname__}")


def argv_text(argv: Sequence[Plain] | None) -> tuple[str, ...]:
    """argv (an exact list or tuple of exact str/bytes, or None) as a tuple of text."""
    if argv is None:
        return ()
    kind = type(argv)
    if kind is not tuple and kind is not list:
        raise TypeError(f"not a plain argv: {kind.__qualname__}")
    args = tuple(argv)
    for arg in args:  # a loop: cheaper than one C-level pass for the few items argv has
        if type(arg) is not str:
            return tuple(map(_arg_text, args))
    return args  # type: ignore[return-value]  # the common case: already text


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


class _Found(NamedTuple):
    """What a search found."""

    # The candidates tried before it, as bytes, duplicates dropped.
    misses: tuple[bytes, ...]
    # The found file's absolute path as the kernel walks it (no `..` folded), as bytes.
    found: bytes
    # Its `_identity`, or None when it must not be taken as a hit on a later search.
    identity: tuple[int, int, int] | None
    resolved: str
    folder: str  # the resolved path's folder
    on_startup_path: bool  # that folder was on PATH when the shield started
    shell_name: bool  # the resolved base name is a shell's
    # Which PATH entry held it (0 without a search). The field hides tuple.index.
    index: int  # type: ignore[assignment]
    path: str  # `found` as text
    # The candidate as subprocess spells it for fork_exec: `os.path.join(entry, name)`
    # encoded, or the name itself when there is no search.
    launch: bytes


# (program name, PATH entries or None, working folder, start-up PATH) -> what its last search
# found.
_located: dict[tuple[str, tuple[str, ...] | None, str, str], _Found] = {}


def _still_found(found: _Found) -> bool:
    """Would the search that gave `found` give the same file now? Every earlier candidate must
    still not be a runnable file (one appearing in an earlier PATH folder, or made executable
    there, wins from then on), and the found one must still be runnable and the very same file
    (device and inode through every symlink, as execve follows them: a replaced file or a
    re-pointed link, a re-used inode fail). These are the system calls the search itself
    makes; what the cache saves is building and resolving the paths again."""
    # Fields by position (misses, found, identity): a NamedTuple's named read is a
    # descriptor call, and this runs on every repeated start.
    identity = found[2]
    if identity is None:
        return False
    access, x_ok = _access, _X_OK
    for candidate in found[0]:
        if access(candidate, x_ok) and os.path.isfile(candidate):
            return False
    path = found[1]
    try:
        info = _stat(path)
    except OSError:
        return False
    return (
        (info.st_dev, info.st_ino, info.st_ctime_ns) == identity
        and info.st_mode & 0o170000 == 0o100000  # S_ISREG, as os.path.isfile
        and access(path, x_ok)
    )


_access = os.access
_stat = os.stat
_X_OK = os.X_OK
_W_OK = os.W_OK


def _candidates(name: str, search: Sequence[str] | None, base: str) -> Iterable[tuple[str, str]]:
    """(the path the kernel will be asked to run, subprocess's spelling of it) in the order
    they are tried, absolute and unfolded: relative ones joined to `base`, the child's folder
    as the kernel walks it."""
    if search is None or "/" in name:
        yield (name if name[:1] == "/" else f"{base}/{name}"), name
        return
    join = os.path.join
    for entry in search:
        if entry[:1] == "/":
            yield f"{entry}/{name}", join(entry, name)
        else:
            yield f"{base}/{entry or '.'}/{name}", join(entry, name)


def _first_runnable(
    name: str, search: Sequence[str] | None, base: str, misses: list[str]
) -> tuple[int, str, str] | None:
    """(index, path, subprocess's spelling) of the first candidate that can run; the ones
    tried before it go to `misses`."""
    for index, (path, launch) in enumerate(_candidates(name, search, base)):
        # A NUL byte cannot reach execve (the C code refuses the whole call): not a hit.
        if "\x00" not in path and _runnable(path):
            return index, path, launch
        misses.append(path)
    return None


def _search(name: str, search: Sequence[str] | None, base: str, startup_path: str) -> _Found | None:
    misses: list[str] = []
    hit = _first_runnable(name, search, base, misses)
    if hit is None:
        return None
    index, path, launch = hit
    # The file the path leads to, before and after resolving it: the resolved path is
    # remembered with that identity only when both agree (and the resolved path names that
    # same file), so a link re-pointed while it was being resolved cannot leave a name and
    # an identity of two different files in the cache.
    before = _identity(path)
    resolved = resolve_path(path)
    identity = before if before is not None and before == _identity(resolved) else None
    folder = os.path.dirname(resolved) or "/"
    encoded = os.fsencode(path)
    return _Found(
        tuple(dict.fromkeys(os.fsencode(m) for m in misses if "\x00" not in m)),
        encoded,
        identity,
        resolved,
        folder,
        folder in trusted_folders(startup_path),
        os.path.basename(resolved) in SHELLS,
        index,
        path,
        os.fsencode(launch),
    )


def _locate(name: str, search: Sequence[str] | None, base: str, startup_path: str) -> _Found | None:
    """The search for `name` and the program's resolved path, remembered per (name, PATH,
    folder, start-up PATH) and re-validated on every call by `_still_found`. Every key part
    is an exact str (or a tuple of them), so the lookup runs no code of an argument's."""
    entries = search if search is None or type(search) is tuple else tuple(map(_text, search))
    key = (name, entries, base, startup_path)
    found = _located.get(key)
    if found is not None and _still_found(found):
        return found
    found = _search(name, entries, base, startup_path)
    if found is not None:
        if len(_located) >= 256:
            _located.clear()
        _located[key] = found
    return found


def trusted_folders(startup_path: str) -> frozenset[str]:
    """The folders of PATH as it was when the shield started (`startup_path`), as written and
    with symlinks resolved; remembered per value. A relative or empty entry depends on the
    current folder and trusts nothing."""
    found = _trusted.get(startup_path)
    if found is None:
        folders: set[str] = set()
        for entry in startup_path.split(os.pathsep):
            if entry.startswith("/") and "\x00" not in entry:
                folders.add(normalize_path(entry))
                folders.add(resolve_path(entry))
        found = _trusted[startup_path] = frozenset(folders)
    return found


def is_trusted(resolved: str, startup_path: str) -> bool:
    folder = os.path.dirname(resolved) or "/"
    return folder in trusted_folders(startup_path) or not os.access(folder, os.W_OK)


def is_shell(resolved: str, argv: Sequence[str]) -> bool:
    """A shell told to run a command string (`sh -c`, `bash -lc`, `dash -e -c`, `busybox sh -c`).
    argv is text (exact str items, as `argv_text` makes it).

    Either name counts, the resolved file's or argv[0]'s: a shell copied or linked under
    another name is still a shell, and a program named like one is judged as one. busybox
    runs the applet its argv[0] names, or, when that is `busybox` itself, the one its next
    argument names (`busybox sh -c CMD`, even `busybox busybox sh -c CMD`)."""
    names = {os.path.basename(resolved)}
    if argv:
        names.add(os.path.basename(argv[0]))
    if names.isdisjoint(SHELLS):
        return False
    if _BUSYBOX in names:
        applet = _busybox_applet(argv)
        if applet:
            argv = applet  # the shell applet's own argv: its options follow its name
        elif (names - {_BUSYBOX}).isdisjoint(SHELLS):
            return False  # busybox's only name here: its applet is not a shell
    # The options, up to the first operand or `--`: `-c` alone or in a bundle (`-xc`, `-lc`).
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


def _busybox_applet(argv: Sequence[str]) -> Sequence[str]:
    """busybox's argv from the applet it runs on, when that applet is a shell; else empty."""
    applet = argv
    while applet and os.path.basename(applet[0]) == _BUSYBOX:
        applet = applet[1:]
    if applet and os.path.basename(applet[0]) in SHELLS:
        return applet
    return ()


def unshielded(argv: Sequence[str], env: Any, resolved: str, cwd: str | None) -> bool:
    """`ProcessOp.unshielded` for this start. `env`: None, a plain dict or fork_exec's bytes
    items, as the child will get it.

    Only a shield that came in through the environment (the bootstrap, `appshield run`,
    `appshield.auto`) can have children that run without it, and those ways in import
    `appshield.activation` before the shield exists: when it is not imported, no child is
    unshielded. It is looked up, not imported: neither the describer nor the hooks reach up
    into the activation layer (tests/test_layering.py). The check itself is
    `appshield._proc_children.child_would_be_unshielded`, handed the activation."""
    activation = _modules.get("appshield.activation")
    parent = None if activation is None else activation._activation
    if parent is None:
        return False
    return child_would_be_unshielded(argv, env, executable=resolved, cwd=cwd, parent=parent)


def _current_folder() -> str:
    try:
        here = os.getcwd()
    except OSError:
        here = ""
    # The kernel's answer is already absolute and normal; anything else (a deleted folder,
    # "(unreachable)", a name such as "...", the root) goes the long way.
    if here[:1] == "/" and "/." not in here and "//" not in here and here[-1:] != "/":
        return here
    return normalize_path(".")


def child_cwd(cwd: Plain | None) -> str:
    """The child's working folder as reported: absolute and normalised."""
    if cwd is None:
        return _current_folder()
    return normalize_path(_text(cwd))


def _child_folders(cwd: Plain | None) -> tuple[str, str] | None:
    """(the child's working folder as reported, the same folder as the kernel will walk it:
    absolute, `..` not folded). None when the folder cannot be a path (a NUL byte: the C
    code refuses the call)."""
    if cwd is None:
        here = _current_folder()
        return here, here
    given = _text(cwd)
    if "\x00" in given:
        return None
    walked = given if given[:1] == "/" else f"{_current_folder()}/{given}"
    return normalize_path(walked), walked


_new = tuple.__new__


class Start(NamedTuple):
    """A described start: the operation, and what the wrappers hand the OS so that it runs
    exactly what was judged."""

    op: ProcessOp
    # The absolute path of the judged file as the kernel walks it (see the module docstring).
    path: str
    # The child's working folder as the kernel walks it (absolute), None when it inherits
    # this process's.
    folder: str | None
    # Which PATH entry held the program (0 without a search), and subprocess's spelling of
    # that candidate (`os.path.join(entry, name)`, encoded). The field hides tuple.index.
    index: int  # type: ignore[assignment]
    launch: bytes
    encoded: bytes  # `path`, encoded
    # The judged file's device, inode and inode-change time (through every symlink), what a
    # forked child compares before its exec (`_proc_preexec`); `UNKNOWN` when the file could
    # not be pinned down (a link re-pointed while it was resolved). None: the program was
    # not found (the start of a missing program).
    identity: tuple[int, int, int] | None


# Never the identity of a file: the child always asks again.
UNKNOWN = (-1, -1, -1)


def _start(
    found: _Found, name: str, argv: Any, env: Any, where: str, walked: str, cwd: Any
) -> Start:
    (
        _misses,
        encoded,
        identity,
        resolved,
        folder,
        on_startup_path,
        shell_name,
        index,
        path,
        launch,
    ) = found  # one C-level unpacking: the hot path
    args = argv_text(argv) or (name,)
    # Built in C from its fields in order (executable, argv, shell, cwd, trusted_location,
    # unshielded): the NamedTuple's own __new__ is a Python function, a tenth of a Popen
    # description.
    op = _new(
        ProcessOp,
        (
            resolved,
            args,
            # is_shell, skipped when neither name is a shell's (its first test)
            (shell_name or os.path.basename(args[0]) in SHELLS) and is_shell(resolved, args),
            where,
            # is_trusted: the start-up PATH part is fixed, the writable part is asked every time
            on_startup_path or not os.access(folder, os.W_OK),
            unshielded(args, env, resolved, where),
        ),
    )
    child_folder = None if cwd is None else walked
    pinned = UNKNOWN if identity is None else identity
    return _new(Start, (op, path, child_folder, index, launch, encoded, pinned))


def _missing_trusted(resolved: str, trusted: frozenset[str]) -> bool:
    """`is_trusted` for a program that is not there: a folder that does not exist (yet) is
    trusted only when it was on PATH at start-up (`trusted`)."""
    folder = os.path.dirname(resolved) or "/"
    if folder in trusted:
        return True
    return os.path.isdir(folder) and not os.access(folder, os.W_OK)


def _missing(
    paths: Sequence[str],
    name: str,
    argv: Any,
    env: Any,
    where: str,
    walked: str,
    cwd: Any,
    startup_path: str,
) -> Start:
    """The start of a program found at none of `paths` (the candidates, absolute, in the
    order they are tried). Judged as the first candidate, resolved as far as it exists: the
    place the kernel looks first. `trusted_location` holds when every candidate lies in a
    trusted folder, so that a base-name rule (`git`) keeps allowing a program that is simply
    not installed (the app then gets its FileNotFoundError, as without appshield)."""
    resolved = [resolve_path(path) for path in paths]
    executable = resolved[0]
    args = argv_text(argv) or (name,)
    trusted = trusted_folders(startup_path)
    op = ProcessOp(
        executable,
        args,
        is_shell(executable, args),
        where,
        all(_missing_trusted(path, trusted) for path in resolved),
        unshielded(args, env, executable, where),
    )
    child_folder = None if cwd is None else walked
    return Start(op, paths[0], child_folder, 0, os.fsencode(name), os.fsencode(paths[0]), None)


def absolute_candidates(
    programs: Sequence[Plain], cwd: Plain | None = None
) -> tuple[bytes, ...] | None:
    """fork_exec's candidates made absolute in the child's folder (as the kernel walks it), so
    that a child that changes its folder before the exec still tries the very paths that were
    judged. None when one cannot be a path (a NUL byte: the C code refuses the call)."""
    folders = _child_folders(cwd)
    if folders is None:
        return None
    names = tuple(map(_text, programs))
    if any("\x00" in name for name in names):
        return None
    return tuple(os.fsencode(next(iter(_candidates(name, None, folders[1])))[0]) for name in names)


def describe_start(
    program: Plain | int,
    argv: Sequence[Plain] | None,
    env: Env,
    cwd: Plain | None = None,
    *,
    search: Iterable[str] | Callable[[], Iterable[str]] | None = None,
    missing: bool = False,
    startup_path: str,
    reuse: bool = False,
) -> Start | None:
    """The start of `program` with `argv` in `env` (None: this process's environment) from
    folder `cwd` (None: the current one). `search`: PATH entries to search for a bare name
    (or a function returning them, called only for a bare name). `startup_path`: PATH as it
    was when the shield started, whose folders hold trusted programs. None when the program
    cannot start (a NUL byte in a path) and, unless `missing`, when it is not found or not
    executable; with `missing`, such a start is described by `_missing`.

    Each call describes afresh: a new operation object every time, as the shadow decider
    and the recorder expect (they know a second decision of one attempt by its identity).
    `reuse`: the caller may be handed the very `Start` a repeated start was described to
    before (`_repeated`), for a decision nothing watches by identity."""
    if cwd is None and env is None and type(program) is str and "\x00" not in program:
        # The same start again (`_repeated`), or the first of its kind, told from the rest.
        if "/" in program:
            search = None
        elif callable(search):
            search = search()
        if search is None or type(search) is tuple:
            start = _repeated(program, argv, search, startup_path, reuse)
            if start is not None:
                return start
    if cwd is None:  # the common case, without a helper call
        where = walked = _current_folder()
    else:
        folders = _child_folders(cwd)
        if folders is None:
            return None
        where, walked = folders
    name = program if type(program) is str else _text(program)
    if "\x00" in name:
        return None
    if "/" in name:
        search = None
    elif callable(search):
        search = search()
    found = _locate(name, search, walked, startup_path)  # type: ignore[arg-type]
    if found is not None:
        return _start(found, name, argv, env, where, walked, cwd)
    if not missing:
        return None
    # A candidate with a NUL byte (from a PATH entry) is one execve never tries.
    paths = [path for path, _ in _candidates(name, search, walked) if "\x00" not in path]  # type: ignore[arg-type]
    return _missing(paths, name, argv, env, where, walked, cwd, startup_path) if paths else None


# (program, argv as text, working folder) -> (PATH entries, start-up PATH, what the search
# found, the start described from them): the last ordinary start of each (`_repeated`).
_described: dict[tuple[str, tuple[str, ...], str], tuple[Any, str, _Found, Start]] = {}


def remembered_start(
    program: str, argv: tuple[str, ...], entries: Any, startup_path: str
) -> Start | None:
    """The `Start` `_repeated` would hand back with `reuse` for this very start, when it holds
    one: None otherwise (and nothing is searched, described or stored: the caller then asks
    `describe_start`). The audit hook's check before the gate for `subprocess.Popen` calls it
    once per start, so it is `_repeated`'s hit alone, positional and without the checks its
    caller has made: `program` an exact str, `argv` a tuple of exact str (both checked there,
    item by item, in the same pass that builds the tuple). The re-proof is `_repeated`'s own
    (`_still_true`); the handed-out `Start` is the remembered object itself, for a decision
    nothing watches by identity."""
    try:
        here = _getcwd()
    except OSError:
        return None
    hit = _described.get((program, argv, here))
    if hit is None or hit[0] is not entries or hit[1] is not startup_path:
        return None
    start = hit[3]
    return start if _still_true(hit[2], start[0], here) else None


def _still_true(found: _Found, op: Any, here: str) -> bool:
    """Whether a remembered start is, provably, what describing it again now gives: the PATH
    search re-proved with its own system calls (`_still_found`), and the two fields of the
    operation that do not follow from the key and the found file asked again:
    `trusted_location` (a folder this process cannot write) and `unshielded` (which reads
    the environment). Positional reads (a named one is a descriptor call, on every
    repeated start): `found` (.., on_startup_path at 5, folder at 4), `op` (trusted_location
    at 4, unshielded at 5, argv at 1, executable at 0)."""
    # `unshielded` without its call when no shield came in through the environment (no
    # activation: no child can be unshielded).
    activation = _modules.get("appshield.activation")
    return (
        _still_found(found)
        and (found[5] or not _access(found[4], _W_OK)) == op[4]
        and (
            not op[5]
            if activation is None or activation._activation is None
            else unshielded(op[1], None, op[0], here) == op[5]
        )
    )


_getcwd = os.getcwd


def _repeated(
    program: str, argv: Any, entries: Any, startup_path: str, reuse: bool
) -> Start | None:
    """`describe_start` for a start that inherits this process's environment and working
    folder, of an exact str program with a tuple of exact str arguments that is found: the
    most common start there is (`subprocess.run(["ls", "-l"])`). None when it cannot answer:
    `describe_start` then takes the long way.

    The start described last from the same program, arguments, working folder, PATH entries
    (the very same object: `hooks/process/convert.exec_path` keeps one tuple per PATH value,
    so a changed PATH is another object) and start-up PATH is handed back again when it is,
    provably, what describing it now gives: the PATH search is re-proved with its own system
    calls (`_still_found`: no earlier candidate became runnable, the found file is the very
    same regular executable file), and the two fields of the operation that do not follow
    from those inputs and that file are asked again: `trusted_location`'s "a folder this
    process cannot write", and `unshielded`, which reads the environment. Every other field
    is a function of the key and the found file. What is saved is building the operation and
    the start, never a system call of the search. Every key part is an exact str or a tuple
    of them: the lookup runs no code of an argument's. Unless `reuse`, a remembered start is
    handed out as a copy (a new operation object: see `describe_start`)."""
    if type(argv) is not tuple:
        return None
    for arg in argv:  # a loop: cheaper than one C-level pass for the few items argv has
        if type(arg) is not str:
            return None
    try:
        here = os.getcwd()
    except OSError:
        return None
    key = (program, argv, here)
    hit = _described.get(key)
    # (A folder in a key passed the test below when it was stored: the same text passes it.)
    if (
        hit is not None
        and hit[0] is entries
        and hit[1] is startup_path
        and _still_true(hit[2], hit[3][0], here)
    ):
        start = hit[3]
        if reuse:
            return start
        return _new(Start, (_new(ProcessOp, start[0]), *start[1:]))
    # Only a working folder `_current_folder` takes as it is (the kernel's normal answer).
    if here[:1] != "/" or "/." in here or "//" in here or here[-1:] == "/" or "\x00" in program:
        return None
    located = _locate(program, entries, here, startup_path)
    if located is None:
        return None
    start = _start(located, program, argv, None, here, here, None)
    if located.identity is not None:  # one the search can prove again
        if len(_described) >= 256:
            _described.clear()
        _described[key] = (entries, startup_path, located, start)
    return start


def describe_first(
    programs: Sequence[Plain],
    argv: Sequence[Plain] | None,
    env: Env,
    cwd: Plain | None = None,
    *,
    missing: bool = False,
    startup_path: str,
) -> Start | None:
    """fork_exec's start: its child tries `programs` in order (no PATH search of its own) and
    runs the first that execve accepts; the first that can run is judged. None when one holds
    a NUL byte (the C code then refuses the whole call), and when none can run unless
    `missing` (then: the start of a missing program, judged as the first candidate)."""
    folders = _child_folders(cwd)
    if folders is None:
        return None
    names = tuple(map(_text, programs))
    if any("\x00" in name for name in names):
        return None
    where, walked = folders
    for name in names:
        found = _locate(name, None, walked, startup_path)
        if found is not None:
            return _start(found, name, argv, env, where, walked, cwd)
    if not missing or not names:
        return None
    paths = [next(iter(_candidates(name, None, walked)))[0] for name in names]
    return _missing(paths, names[0], argv, env, where, walked, cwd, startup_path)


def describe(
    program: Plain | int,
    argv: Sequence[Plain] | None,
    env: Env,
    cwd: Plain | None = None,
    *,
    search: Iterable[str] | Callable[[], Iterable[str]] | None = None,
    startup_path: str,
) -> ProcessOp | None:
    """`describe_start`'s operation."""
    start = describe_start(program, argv, env, cwd, search=search, startup_path=startup_path)
    return None if start is None else start.op


def shell_command(command: Plain, *, startup_path: str) -> ProcessOp | None:
    """`os.system(command)`: /bin/sh -c command, as the C library runs it. `command` is the
    converted command (exact str or bytes)."""
    argv = ("/bin/sh", "-c", _arg_text(command))
    return describe("/bin/sh", argv, None, startup_path=startup_path)
