"""The arguments of a file access, turned into `FileOp`s.

- path: absolute and normalised (`..` folded, no symlink resolved). A relative path is taken
  from the folder behind `dir_fd` (through /proc/self/fd) or the current folder; a descriptor
  is named by the path the kernel holds for it.
- resolved: symlinks resolved, computed only when `compiled.file_needs_resolved_path(access)`
  says a rule could care (a `realpath` costs several times an `open`). For a path that exists
  the kernel resolves it (an O_PATH descriptor read back through /proc/self/fd, see
  `appshield.normalize.resolve_path`), so `/proc/self/root`, symlinked folders and `..` after a
  symlink land where the kernel lands. Calls that act on a link itself rather than on its
  target (unlink, rmdir, rename, symlink, link's new name, mkdir, mkfifo) resolve only the
  folder, so deleting a symlink that points at a protected file is not taken for deleting
  the file.
- access from open flags: O_WRONLY/O_RDWR/O_CREAT/O_TRUNC/O_APPEND write; anything but
  O_WRONLY also reads (so `r+`, `a+`, `w+` are checked as both).

Callers hand over values already converted once (see appshield/hooks/_convert.py): exact
`str`/`bytes`/`int`. A subclass is read here through its base type all the same, so nothing
it overrides (`__eq__`, `startswith`, `__and__`, `__format__`, ...) runs; anything else (a
`PathLike` nobody converted) raises `Unreadable`, a denial, rather than being converted a
second time here.
"""

from __future__ import annotations

import os

from appshield.hooks import _file_cache, _gate
from appshield.hooks._convert import event_index, event_path
from appshield.hooks._file_cache import LISTING as _LISTING
from appshield.hooks._file_cache import allowed_again as _allowed_again
from appshield.normalize import fd_path, normalize_path, resolve_path
from appshield.operations import FileAccess, FileOp, Operation

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = [
    "DESCRIPTOR_EVENTS",
    "PATH_CHANGE_EVENTS",
    "SQLITE_CONNECT",
    "accesses",
    "change_repeat",
    "descriptor_change",
    "descriptor_repeat",
    "fast_normalize",
    "file_op",
    "listing_repeat",
    "open_ops",
    "plain_connection",
    "resolver_for",
    "sqlite_handle_ours",
    "sqlite_repeat",
]

_WRITE_FLAGS = os.O_CREAT | os.O_TRUNC | os.O_APPEND
_BOTH: tuple[FileAccess, ...] = ("read", "write")
_READ: tuple[FileAccess, ...] = ("read",)
_WRITE: tuple[FileAccess, ...] = ("write",)
_access_cache: dict[int, tuple[FileAccess, ...]] = {}
_readlink = os.readlink
_fsdecode = os.fsdecode

# The audit events of a change through a descriptor that the file hooks judge as one write
# to the descriptor's kernel path (hooks/file: `_single(...)` and `_on_truncate`, through
# `descriptor_change`), whatever the rest of their arguments: the path or descriptor is
# always the event's first argument.
DESCRIPTOR_EVENTS = (
    "os.utime",
    "os.chmod",
    "os.chown",
    "os.truncate",
    "os.setxattr",
    "os.removexattr",
)

# The audit events of a change by path whose allowed repeats are remembered (under the
# event's name as their flags: hooks/_file_cache.py), when the path is a clean absolute one:
# the descriptor events, whose effect lands on the file the path leads to, and `os.mkdir`,
# which fails with EEXIST whenever the remembered folder is still there. Never a deletion
# (`os.remove`, `os.rmdir`): it takes away a name, not a file, and a file of the same
# identity can have another name (a hard link) in a folder the policy protects.
PATH_CHANGE_EVENTS = (*DESCRIPTOR_EVENTS, "os.mkdir")

# The audit event of `sqlite3.connect`, and the flags its allowed repeats are remembered
# under (a plain file name only: `sqlite_repeat`).
SQLITE_CONNECT = "sqlite3.connect"

# The connection class `sqlite3.connect` makes for the default factory (hooks/file/sqlite
# `shielded_factory` puts it here when it makes it): a new handle of exactly that class is
# let through by the audit hook (`sqlite_handle_ours`) without the gate.
plain_connection: list[type] = []

# (compiled policy, {access: needs resolving}) for the policy last seen.
_needs: tuple[Any, dict[str, bool]] = (None, {})


def accesses(flags: int) -> tuple[FileAccess, ...]:
    if type(flags) is not int:
        flags = event_index(flags)  # an int subclass's __and__/__hash__ must not answer
    found = _access_cache.get(flags)
    if found is None:
        mode = flags & os.O_ACCMODE
        writes = mode != os.O_RDONLY or bool(flags & _WRITE_FLAGS)
        reads = mode != os.O_WRONLY
        found = _BOTH if reads and writes else _WRITE if writes else _READ
        if len(_access_cache) < 512:
            _access_cache[flags] = found
    return found


def resolver_for(access: str) -> bool:
    """Whether the active policy needs `FileOp.resolved` for this access (cached per policy)."""
    global _needs
    shield = _gate.shield()
    if shield is None:
        return False
    compiled = shield.compiled
    cached_for, table = _needs
    if cached_for is not compiled:
        table = {}
        _needs = (compiled, table)
    needed = table.get(access)
    if needed is None:
        needed = table[access] = bool(compiled.file_needs_resolved_path(access))
    return needed


def _fd(dir_fd: Any) -> int | None:
    return None if dir_fd is None else event_index(dir_fd)


def fast_normalize(path: Any, dir_fd: int | None = None) -> str:
    """normalize_path, without its work for the common already-clean absolute str."""
    if (
        type(path) is str
        and path[:1] == "/"
        and "/." not in path
        and "//" not in path
        and path[-1:] != "/"
        and "\x00" not in path
    ):
        return path
    path = event_path(path)
    if type(path) is int:
        return fd_path(path) or f"/proc/self/fd/{path}"
    return normalize_path(path, dir_fd=_fd(dir_fd))


def _resolve(path: str, follow: bool) -> str:
    if follow:
        return resolve_path(path)
    folder, name = os.path.split(path)
    if not name or folder == path:
        return resolve_path(path)
    parent = resolve_path(folder)
    return parent + name if parent.endswith("/") else f"{parent}/{name}"


def file_op(
    path: Any, access: FileAccess, *, dir_fd: int | None = None, follow: bool = True
) -> FileOp:
    """One access to `path` (str, bytes or an open descriptor, already converted)."""
    if type(path) is int:
        # An open descriptor: the kernel's path for it (/proc/self/fd) is already resolved,
        # every symlink in it followed, so resolving it again would only repeat the work (a
        # failed O_PATH open and a `realpath` walk for an unlinked file's "(deleted)" name:
        # gunicorn's heartbeat `os.utime(fd)` ran that on every request).
        kernel = fd_path(path)
        if kernel is not None:
            return FileOp(kernel, access, kernel if resolver_for(access) else None)
    normalised = fast_normalize(path, dir_fd)
    resolved = _resolve(normalised, follow) if resolver_for(access) else None
    return FileOp(normalised, access, resolved)


def descriptor_change(
    fd: int, access: FileAccess, api: str, follow: bool = True
) -> tuple[Operation, str] | None:
    """A change through the open descriptor `fd` (an exact int, already converted), for an
    audit handler: None when allowed (remembered then, so that the audit hook lets the next
    one through after reading the kernel's path again: hooks/_file_cache.py), else the
    operation for the gate to decide again, report and refuse (the engine's cache answers
    that second decision)."""
    kernel = fd_path(fd)
    if kernel is None:
        return file_op(fd, access, follow=follow), api  # no path in the kernel: not kept
    op = FileOp(kernel, access, kernel if resolver_for(access) else None)
    # The policy is read before deciding: should a reload land in between, a newer policy's
    # decision is remembered for the older one (whose memory is then dropped unused), never
    # an older policy's for the newer one.
    compiled = _gate.shield().compiled
    found = _gate.screen([(op, api)])
    if found is None:
        _file_cache.remember_descriptor(fd, op, compiled)
        return None
    return found[0], found[1]


def open_ops(
    path: Any, flags: int, *, dir_fd: int | None = None, cwd: str | None = None
) -> list[FileOp]:
    """An open with these flags: one op per access it implies, sharing one resolution."""
    if type(path) is not str:
        path = event_path(path)
    if cwd is not None and dir_fd is None and type(path) is not int:
        normalised = normalize_path(path, cwd=cwd)
    else:
        normalised = fast_normalize(path, dir_fd)
    wanted = accesses(flags)
    resolved = None
    if any(resolver_for(a) for a in wanted):
        resolved = resolve_path(normalised)
    return [FileOp(normalised, a, resolved) for a in wanted]


def descriptor_repeat(args: tuple[Any, ...]) -> bool:
    """The audit hook's check before the gate for the events of `DESCRIPTOR_EVENTS`: True
    only for a change through an exact int descriptor whose kernel path, read now, is the
    one the active policy last allowed a write to through that number. Anything else (a
    path, an int subclass, a descriptor the kernel names otherwise or not at all) is decided
    in full. Runs inside the audit hook, untraced, like the rest of it."""
    fd = args[0] if args else None
    if type(fd) is not int:
        return False
    memory = _file_cache._memory
    active = _gate._shield
    if active is None or memory.owner is not active.compiled:
        return False
    seen = memory.changed.get(fd)
    if seen is None:
        return False
    try:
        kernel = _readlink(seen[0])  # bytes in, bytes out: nothing encoded or decoded
    except (OSError, ValueError):
        return False  # closed (or no /proc): decided in full, and the call fails by itself
    return kernel == seen[1]


def listing_repeat(args: tuple[Any, ...]) -> bool:
    """The audit hook's check before the gate for `os.listdir` and `os.scandir`: True only
    for a listing of an exact str or bytes folder (None, the current one, is `"."`) that
    the active policy allowed before and that still leads to the same folder (remembered
    under `LISTING`: hooks/_file_cache.py). Neither call takes a `dir_fd`, so a relative
    folder may be answered. Anything else, and any listing under per-distribution grants
    (whose decision depends on the caller), is decided in full. Runs inside the audit hook,
    untraced, like the rest of it."""
    memory = _file_cache._memory
    active = _gate._shield
    if active is None or memory.owner is not active.compiled:
        return False  # no policy, a policy never seen here, or grants (`owner` None)
    path = args[0] if args else None
    if path is None:
        path = "."
    kind = type(path)
    if kind is not str and kind is not bytes:
        return False  # a descriptor, a PathLike, a subclass: decided in full
    return _allowed_again(memory, path, _LISTING, True)


def change_repeat(event: str) -> Callable[[tuple[Any, ...]], bool]:
    """The audit hook's check before the gate for `event`, one of `PATH_CHANGE_EVENTS`: a
    change through an exact int descriptor is `descriptor_repeat`'s; one by an exact str or
    bytes path is let through only when the active policy allowed this event on this very
    absolute path before (remembered under the event's name) and the path still leads to
    the same file. A relative path is never remembered for these events (a `dir_fd` may
    anchor it), so it never answers. Anything else is decided in full."""

    def repeat(args: tuple[Any, ...]) -> bool:
        target = args[0] if args else None
        kind = type(target)
        if kind is int:
            return descriptor_repeat(args)
        if kind is not str and kind is not bytes:
            return False  # a PathLike, a subclass: decided in full
        memory = _file_cache._memory
        active = _gate._shield
        if active is None or memory.owner is not active.compiled:
            return False  # no policy, a policy never seen here, or grants (`owner` None)
        return _allowed_again(memory, target, event, False)  # type: ignore[arg-type]

    return repeat


def sqlite_repeat(args: tuple[Any, ...]) -> bool:
    """The audit hook's check before the gate for `sqlite3.connect`: True only for an exact
    str or bytes database name (bytes read as the file system encoding reads it: CPython
    3.10's event carries bytes) whose connect the active policy allowed before, as a plain
    file name (never a `file:` URI, never under grants: hooks/file `_on_sqlite_connect`),
    that still leads to the same file, from the same current folder for a relative name.
    Anything else is decided in full."""
    memory = _file_cache._memory
    active = _gate._shield
    if active is None or memory.owner is not active.compiled:
        return False
    name = args[0] if args else None
    kind = type(name)
    if kind is bytes:
        name = _fsdecode(name)  # type: ignore[arg-type]  # remembered as text: see hooks/file
    elif kind is not str:
        return False
    return _allowed_again(memory, name, SQLITE_CONNECT, True)  # type: ignore[arg-type]


def sqlite_handle_ours(args: tuple[Any, ...]) -> bool:
    """The audit hook's check before the gate for `sqlite3.connect/handle`: True for a
    connection of exactly the class `sqlite3.connect` makes for the default factory (its
    `__init__` installs the authorizer), the one answer the handler's check
    (`check_new_connection`) would give it. Any other class goes to the gate, which accepts
    appshield's other classes and refuses the rest."""
    made = plain_connection
    return bool(made and args) and type(args[0]) is made[0]
