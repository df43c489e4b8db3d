"""Interception of the file category: reads, writes and deletes, by every route.

Where each access is seen, and why there:

- Opening a file: the audit event `open` (path, mode, flags). CPython raises it before the
  system call for *every* route: `builtins.open`, `io.open`, `_io.open`, `io.FileIO`,
  `_io.FileIO`, `os.open`/`posix.open`, `io.open_code`, pathlib, `codecs.open`, tempfile,
  shutil's copies, and the modules that captured `open` at import time (tokenize, tarfile,
  linecache, fileinput, gzip, bz2, lzma, zipfile). Raising from the hook aborts the open, so no
  byte of a denied file is returned. It is also the only route that can meet the performance
  target: a wrapt wrapper on `builtins.open` costs about 1 us a call on its own (an `open()` +
  `close()` is 6-10 us, the target is 1.15x), the audit hook about 0.4 us, and the event fires
  anyway, so a wrapper would only add cost and a second decision to avoid. So `open` is decided
  in the audit hook, and wrapt is used only where the event lacks information or carries an
  object C has not converted yet:
  - `os.open(..., dir_fd=)` (and `posix.open`): the event carries the relative path without
    its `dir_fd`; the wrapper names the file through /proc/self/fd and marks the event as
    already decided;
  - `os.mkfifo` and `os.mknod` (and the `posix` twins): they raise no event at all;
  - `sqlite3.connect` and `shutil.rmtree`: their events carry the caller's *original*
    argument (a `PathLike` that C or shutil converts after the event), so the wrappers
    convert it once and hand the converted value on; the event then reads exactly that;
  - `os.posix_spawn[p]`'s `file_actions` (in `hooks.process`).
- The other `os` calls raise events that carry `dir_fd` (`os.remove`, `os.rmdir`,
  `os.rename` for rename and replace, `os.link`, `os.symlink`, `os.mkdir`, `os.truncate`,
  `os.chmod`, `os.chown`, `os.utime`, `os.setxattr`, `os.removexattr`, `os.listdir`,
  `os.scandir`) and fire for `posix.*` and captured aliases too, so they are decided there.
  shutil's copy and move, `os.makedirs`, `os.removedirs`, tempfile and glob are built on these
  and need nothing of their own; `shutil.rmtree` is also checked as a whole up front, so a
  denied tree is refused before anything in it is deleted.
- The hot path: an allowed open of a clean absolute path is remembered per compiled policy
  (`_file_cache`), and the audit hook itself lets a repeat through at its very top, before
  the per-thread bookkeeping and this handler: one dict lookup, plus one `stat` (to prove
  the path still leads to the same file) when the policy needs symlinks resolved. Measured
  with benchmarks/run.py and benchmarks/bench_hooks.py.
- `sqlite3.connect`: its event (SQLite opens the file in C, with no `open` event). It reads and
  may create and write, so both are checked. The name is read as SQLite reads it (a URI's
  last repeated option wins). SQLite also opens files by itself, for `ATTACH` and
  `VACUUM INTO`: every connection gets an authorizer at `sqlite3.connect/handle` that judges
  those targets (hooks/file/sqlite has the details and what it cannot cover).

Reading arguments (appshield/hooks/_convert.py has the why): the `os` events carry the path
CPython already converted (an exact `str`/`bytes`, the `str`/`bytes` subclass instance that
`__fspath__` returned, or the descriptor object `__index__` was called on), so handlers read
them with `event_path`/`event_index`: through the base type's C methods, never through
anything the object overrides; what cannot be read that way raises `Unreadable`, and the gate
denies. Wrappers convert each argument once (`fspath_once`, `index_once`) and call the original
with the converted values. Keyword names are read as exact `str` too: a `str` subclass key
with a lying `__eq__` would hide `dir_fd=` from `kwargs.get` while C's argument parser, which
compares the characters, still finds it.

Access: open flags give read and/or write; listing a folder reads it; remove, unlink, rmdir,
rmtree and the source of a rename delete; the target of a rename, link or symlink, mkdir,
mkfifo, truncate, chmod/chown/utime and xattr changes write. A hard link exposes its source
under a new name, so its source must also be readable and writable by the policy.

The import system's own reads of module files (and its `__pycache__` writes and folder
listings) belong to the import category: they are skipped while `thread_state.importing` is
set and the call comes from `<frozen importlib._bootstrap_external>`.
"""

from __future__ import annotations

import _thread
import errno
import os
import sys
from types import FrameType

from appshield._threadstate import thread_state
from appshield.hooks import _deferred, _file_cache, _gate
from appshield.hooks._convert import Unreadable, event_index, event_path, fspath_once, index_once
from appshield.hooks._file_cache import LISTING
from appshield.hooks._file_cache import lookup as _cache_lookup
from appshield.hooks._file_cache import remember as _cache_remember

# Loaded at start-up, not a deferred part: loading any part reads its module files, which are
# file operations once code has undone the import hooks, and describing them needs this.
from appshield.hooks.file.describe import (
    PATH_CHANGE_EVENTS,
    SQLITE_CONNECT,
    change_repeat,
    descriptor_change,
    file_op,
    listing_repeat,
    open_ops,
    sqlite_handle_ours,
    sqlite_repeat,
)
from appshield.normalize import fd_path
from appshield.operations import Operation
from appshield.patching import HookFamily, PatchPoint

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

    from appshield.hooks.file import sqlite as _sqlite
else:
    # The SQLite hook (URI reading, the authorizer, the extension switch): loaded by the first
    # `sqlite3.connect` or SQLite audit event (hooks/_deferred.py), from inside the gate.
    _sqlite = _deferred.defer_module(
        globals(),
        "_sqlite",
        _deferred.Part("sqlite", ("appshield.hooks.file.sqlite",), ("_weakrefset",)),
        "appshield.hooks.file.sqlite",
    )

__all__ = ["AUDIT_HANDLERS", "FAMILY", "PATCHES", "compiled_hook_parts"]

_state = thread_state
Described = tuple[Operation, str]
_str_copy = str.__getitem__
_dict_get = dict.get
_dict_items = dict.items
_ALL = slice(None)


# -- the import system's own file work ------------------------------------------------------


# importlib's path machinery, known by its module globals. Frames are recognised by
# `f_globals`, never `f_code`: every `f_code` read raises the audit event
# `object.__getattr__`, one more call of every audit hook per frame walked (about a fifth of
# what the shield adds to a first import).
_IMPORTLIB_GLOBALS = sys.modules["_frozen_importlib_external"].__dict__


def _import_work_open(args: tuple[Any, ...]) -> bool:
    """The audit hook's check before the gate for an `open` its own fast path did not let
    through: True for the import system's own file work (reading a module's source or cached
    bytecode, writing that cache), which `_on_open` lets through as well, without the gate's
    bookkeeping (about 10,000 instructions an open, four opens a first import). Only exact
    str or bytes paths; anything else goes to the handler."""
    files = _state.importing
    if type(files) is not tuple:
        return False  # no loader is reading a module on this thread
    path = args[0]
    kind = type(path)
    if kind is not str and kind is not bytes:
        return False
    return _import_file_work(path, files)


def _import_work_rename(args: tuple[Any, ...]) -> bool:
    """As `_import_work_open`, for `os.rename`: the atomic write of the bytecode cache file
    of the module being read (`_on_rename` lets exactly that through). Only the event as
    CPython raises it: exact str or bytes names, exact int folder descriptors."""
    files = _state.importing
    if type(files) is not tuple or len(args) != 4:
        return False
    src, dst, src_fd, dst_fd = args
    if type(src_fd) is not int or type(dst_fd) is not int:
        return False
    for name in (src, dst):
        kind = type(name)
        if kind is not str and kind is not bytes:
            return False
    return _import_cache_rename(files, src, dst)


def _as_text(path: str | bytes) -> str:
    """An exact str or bytes path as text (bytes decoded as the file system encoding does)."""
    return path if type(path) is str else os.fsdecode(path)


def _in_cache(files: tuple[str, str], path: str | bytes) -> bool:
    """`path` (exact str or bytes) names a file of the bytecode cache of the module being
    read: its name starts with the start `files` gives (the cache file, or the temporary
    file of its atomic write)."""
    return _as_text(path).startswith(files[1])


def _import_cache_rename(files: tuple[str, str], src: str | bytes, dst: str | bytes) -> bool:
    """The atomic write's rename of the module's bytecode cache, made by importlib."""
    return _in_cache(files, src) and _in_cache(files, dst) and _from_import_machinery()


def _import_cache_change(files: tuple[str, str], path: str | bytes, api: str) -> bool:
    """A change importlib makes while a loader reads a module, for that module's bytecode
    cache: a folder on the way to it made (`set_data` makes the missing ones: the
    `__pycache__` folder, or the tree under `PYTHONPYCACHEPREFIX`), or a file of it removed
    (the atomic write's clean-up). Any other change, even by importlib's own code (a loader
    subclass can have `set_data` make folders anywhere), is checked."""
    if api == "os.remove":
        ours = _in_cache(files, path)
    elif api == "os.mkdir":
        # a folder the cache lies under
        ours = files[1].startswith(_as_text(path).rstrip("/") + "/")
    else:
        return False
    return ours and _from_import_machinery()


def _from_import_machinery() -> bool:
    """The Python caller (past appshield's own frames) is importlib's path machinery."""
    frame: FrameType | None = sys._getframe(2)
    for _ in range(8):  # the handler, the gate (two frames), the audit hook, a margin
        if frame is None:
            return False
        namespace = frame.f_globals
        if namespace is _IMPORTLIB_GLOBALS:
            return True
        # Read through dict and compared as an exact str: code run with a dict subclass as
        # its globals (exec) must not pass itself off as one of appshield's frames.
        name = _dict_get(namespace, "__name__")
        if not (type(name) is str and name.startswith("appshield.")):
            return False
        frame = frame.f_back
    return False


def _import_file_work(path: str | bytes, files: tuple[str, str]) -> bool:
    """`path` (already read: exact str or bytes) is the import system's own file work: a
    file of the module a loader is reading (`files`, the thread's `importing` mark: the
    module file judged and the start of its bytecode cache's names), opened by importlib's
    own code."""
    text = path if type(path) is str else os.fsdecode(path)  # `_as_text`, inline: hot
    if not (text == files[0] or text.startswith(files[1])):
        return False
    return _from_import_machinery()


# -- audit events ---------------------------------------------------------------------------


def _dir_fd(args: tuple[Any, ...], index: int) -> int | None:
    """The `dir_fd` an event carries at `index`, as an exact int; None for the current folder
    (events spell it None, -1 or AT_FDCWD)."""
    if len(args) <= index:
        return None
    value = args[index]
    if value is None:
        return None
    fd = event_index(value)
    return fd if fd >= 0 else None


def _relative(path: str | bytes) -> bool:
    return path[:1] != ("/" if type(path) is str else b"/")


def _on_open(args: tuple[Any, ...]) -> Described | None:
    # A remembered allowed open never gets here: the audit hook lets it through first (see
    # hooks/_audit_hook.py and _file_cache). The lookup below starts a fresh memory when the
    # policy changed since the last open.
    original, mode, raw_flags = args
    # The converted path (exact, or read through str/bytes). An `io.FileIO(obj)` event
    # carries the caller's object itself, which C converted by calling its __fspath__: a
    # second call could answer differently, so event_path refuses it (Unreadable: denied).
    path = event_path(original)
    flags = event_index(raw_flags)
    if type(path) is int:
        return None  # an already-open descriptor: its open was decided
    # mypy narrows `type(path) is int` in its true branch only: from here on `path` is an
    # exact str or bytes, which the ignores below state.
    files = _state.importing
    if type(files) is tuple and _import_file_work(path, files):  # type: ignore[arg-type]
        return None
    compiled = _gate.shield().compiled
    # open() and io.FileIO give their mode; os.open gives None, and may be relative to a
    # dir_fd its event does not carry: only the others may be answered by a remembered
    # relative path (hooks/_file_cache.py).
    without_dir_fd = mode is not None
    if _cache_lookup(path, flags, compiled, without_dir_fd):  # type: ignore[arg-type]
        return None
    # an os.open: its dir_fd is not in the event
    if mode is None and _relative(path):  # type: ignore[arg-type]
        token = _wrapped.plain_os_open
        if token is None or original is not token:
            return _unknown_dir_fd(path, flags)  # type: ignore[arg-type]
        _wrapped.plain_os_open = None  # consumed: os.open's wrapper, relative to the cwd
    return _remembered_when_allowed(
        [(op, "open") for op in open_ops(path, flags)], path, flags, without_dir_fd
    )


def _remembered_when_allowed(
    described: list[Described], key: Any, flags: int | str, without_dir_fd: bool = False
) -> Described | None:
    """Decide `described` (the operations of one call); when every one is allowed, remember
    the call under (`key`, `flags`) for the audit hook's check before the gate
    (hooks/_file_cache.py) and return None, else the violation for the gate to decide
    again (the engine's cache answers), report and refuse."""
    # The policy is read before deciding: should a reload land in between, a newer policy's
    # decision is remembered for the older one (whose memory is then dropped unused), never
    # an older policy's for the newer one.
    compiled = _gate.shield().compiled
    found = _gate.screen(described)
    if found is None:
        ops: list[Any] = [op for op, _ in described]  # file operations, every one
        _cache_remember(key, flags, ops, compiled, without_dir_fd)
        return None
    return found[0], found[1]


# posix.listdir as it was at import, for listing /proc/self/fd as appshield's own call.
_raw_listdir = __import__("posix").listdir
_PROC_FD = "/proc/self/fd"


def _open_folders() -> list[int]:
    """Descriptors of this process that name folders: what a `dir_fd` could be."""
    # appshield's own listing: its `os.listdir` event carries a bytes made here for this one
    # call (os.fsencode builds a new object each time), which the audit hook lets through by
    # identity. Nothing else running on this thread meanwhile can hold that object.
    token = os.fsencode(_PROC_FD)
    names = _gate.own_call("os.listdir", token, _raw_listdir, token)
    found = []
    for name in names:
        fd = int(name)
        target = fd_path(fd)
        if target is not None and os.path.isdir(target):
            found.append(fd)
    return found


def _anchors(path: str | bytes | int, dir_fd: int | None, *names: Any) -> list[int | None]:
    """The folder a relative `path` is taken from: [dir_fd] (None: the current folder).

    A `dir_fd` that names no folder makes the call fail, with EBADF (not open) or ENOTDIR (a
    pipe, a socket). That error is raised here, before the call, with the file names the
    call would have put in it (`names`): letting the call go ahead to fail by itself would
    let another thread open a folder under that number in between, unjudged."""
    if dir_fd is None or type(path) is int or not _relative(path):  # type: ignore[arg-type]
        return [dir_fd]
    if fd_path(dir_fd) is None:
        try:
            os.fstat(dir_fd)
        except OSError as exc:
            code = exc.errno or errno.EBADF
        else:
            code = errno.ENOTDIR
        raise OSError(code, os.strerror(code), *names)
    return [dir_fd]


def _one_or_first(described: list[Described]) -> Described | None:
    if len(described) == 1:
        return described[0]  # decided by the gate
    return _gate.first_violation(described)


def _unknown_dir_fd(path: str | bytes, flags: int) -> Described | None:
    """An os.open of a relative path that bypassed the wrapper (a captured or `__wrapped__`
    original, a fresh `posix` module): its dir_fd may be any open folder, so the path is
    judged against the current folder and against every one of them."""
    described = [(op, "os.open") for op in open_ops(path, flags)]
    for fd in _open_folders():
        described.extend((op, "os.open") for op in open_ops(path, flags, dir_fd=fd))
    return _gate.first_violation(described)


def _listing(value: Any, api: str) -> Described | None:
    # A listing allowed before, of the same folder, never gets here: the audit hook lets it
    # through first (`listing_repeat`; hooks/_file_cache.py).
    path = "." if value is None else event_path(value)
    if _state.importing and _from_import_machinery():
        return None  # FileFinder filling its cache
    # No listing takes a dir_fd: a relative name is taken from the current folder.
    return _remembered_when_allowed([(file_op(path, "read"), api)], path, LISTING, True)


def _on_listdir(args: tuple[Any, ...]) -> Described | None:
    return _listing(args[0], "os.listdir")


def _on_scandir(args: tuple[Any, ...]) -> Described | None:
    return _listing(args[0], "os.scandir")


def _accesses(
    path: str | bytes | int,
    dir_fd: int | None,
    accesses: tuple[Any, ...],
    api: str,
    follow: bool,
    names: tuple[Any, ...] = (),
) -> list[Described]:
    """One access per entry of `accesses` to `path` (taken from `dir_fd`); `names`: the file
    names of the call's own error, should `dir_fd` name no folder (see _anchors)."""
    anchor = _anchors(path, dir_fd, *names)[0]
    return [(file_op(path, access, dir_fd=anchor, follow=follow), api) for access in accesses]


def _single(access: Any, api: str, fd_index: int, follow: bool) -> Callable[..., Any]:
    # Remembered under the event's name, for a clean absolute path only (the event may carry
    # a dir_fd): the audit hook lets a repeat through (`change_repeat`). Never a deletion.
    remembered = api in PATH_CHANGE_EVENTS

    def handler(args: tuple[Any, ...]) -> Described | None:
        path = event_path(args[0])
        dir_fd = _dir_fd(args, fd_index)
        files = _state.importing
        if (
            type(files) is tuple
            and type(path) is not int
            and dir_fd is None
            and _import_cache_change(files, path, api)  # type: ignore[arg-type]
        ):
            return None  # the bytecode cache's folders, its temporary file removed
        if type(path) is int:
            return descriptor_change(path, access, api, follow)  # remembered when allowed
        described = _accesses(path, dir_fd, (access,), api, follow, (args[0],))
        if remembered:
            return _remembered_when_allowed(described, path, api)
        return _one_or_first(described)

    return handler


def _on_rename(args: tuple[Any, ...]) -> Described | None:
    src, dst = event_path(args[0]), event_path(args[1])
    src_fd, dst_fd = _dir_fd(args, 2), _dir_fd(args, 3)
    files = _state.importing
    if (
        type(files) is tuple
        and type(src) is not int
        and type(dst) is not int
        and src_fd is None
        and dst_fd is None
        and _import_cache_rename(files, src, dst)  # type: ignore[arg-type]
    ):
        return None  # the atomic write of the module's bytecode cache file
    names = (args[0], None, args[1])
    return _gate.first_violation(
        _accesses(src, src_fd, ("delete",), "os.rename", False, names)
        + _accesses(dst, dst_fd, ("write",), "os.rename", False, names)
    )


def _on_link(args: tuple[Any, ...]) -> Described | None:
    src, dst = event_path(args[0]), event_path(args[1])
    src_fd, dst_fd = _dir_fd(args, 2), _dir_fd(args, 3)
    names = (args[0], None, args[1])
    return _gate.first_violation(
        _accesses(dst, dst_fd, ("write",), "os.link", False, names)
        + _accesses(src, src_fd, ("read", "write"), "os.link", True, names)
    )


def _on_symlink(args: tuple[Any, ...]) -> Described | None:
    # The link's text (args[0]) is not a file access: only the new name is written.
    dst = event_path(args[1])
    names = (args[0], None, args[1])
    return _one_or_first(_accesses(dst, _dir_fd(args, 2), ("write",), "os.symlink", False, names))


def _on_truncate(args: tuple[Any, ...]) -> Described | None:
    path = event_path(args[0])
    if type(path) is int:
        return descriptor_change(path, "write", "os.truncate")  # os.ftruncate
    return _remembered_when_allowed([(file_op(path, "write"), "os.truncate")], path, "os.truncate")


def _sqlite_name(value: Any) -> str:
    """A database name as the event carries it. Only text: on 3.11+ the event comes *before*
    C converts the argument, so anything but str/bytes (read through the base type) is an
    object whose conversion has not happened yet, and reading it here would be a second,
    possibly different, conversion. The wrapper on `sqlite3.connect` converts first; what
    reaches the event unconverted (a captured alias, `sqlite3.Connection(obj)`) is refused:
    `Unreadable` is a TypeError, which C raises for a name it cannot read as well."""
    kind = type(value)
    if kind is str:
        return value  # type: ignore[no-any-return]
    if kind is bytes:
        return os.fsdecode(value)
    if issubclass(kind, str):
        return _str_copy(value, _ALL)
    if issubclass(kind, bytes):
        return os.fsdecode(bytes.__getitem__(value, _ALL))
    raise Unreadable(f"a database name of type {kind.__qualname__} cannot be read safely")


def _on_sqlite_connect(args: tuple[Any, ...]) -> Described | None:
    # Read as SQLite reads it (hooks/file/sqlite): the last repeated URI option wins. uri=True is
    # not in the event: a `file:` name is judged under both readings.
    name = _sqlite_name(args[0])
    paths = _sqlite.sqlite_paths(name)
    described = _sqlite.described_paths(paths, "sqlite3.connect")
    if len(paths) != 1 or name.startswith("file:"):
        return _gate.first_violation(described)  # a URI (two readings) or a memory database
    # A plain file name: an allowed connect is remembered (hooks/_file_cache.py) as an open
    # is, absolute or clean relative (`sqlite3.connect` takes no dir_fd), and the audit hook
    # lets the next one through while the name leads to the same file (`sqlite_repeat`).
    # Remembered under the name as text: CPython 3.10's event carries the name as bytes
    # (converted for the event), 3.11's as the str the wrapper converted; one key for both
    # (`sqlite_repeat` decodes a bytes name the same way).
    return _remembered_when_allowed(described, name, SQLITE_CONNECT, True)


def _on_sqlite_handle(args: tuple[Any, ...]) -> None:
    # Only the connection classes `sqlite3.connect` makes install the authorizer that judges
    # ATTACH and VACUUM INTO targets; any other connection is refused here (hooks/file/sqlite).
    _sqlite.check_new_connection(args[0])
    return None


def _on_enable_load_extension(args: tuple[Any, ...]) -> None:
    # Through the module global, not the function itself: the SQLite part loads on first use.
    _sqlite.on_enable_load_extension(args)


def _on_rmtree(args: tuple[Any, ...]) -> Described | None:
    # Raised by shutil with the caller's own objects (the wrapper below hands it converted
    # ones): a PathLike or an __index__ object reached through an unwrapped alias is
    # Unreadable, and refused.
    path = event_path(args[0])
    return _one_or_first(
        _accesses(path, _dir_fd(args, 1), ("delete",), "shutil.rmtree", False, (args[0],))
    )


AUDIT_HANDLERS: Mapping[str, Callable[[tuple[Any, ...]], Any]] = {
    "open": _on_open,
    "os.listdir": _on_listdir,
    "os.scandir": _on_scandir,
    "os.remove": _single("delete", "os.remove", 1, False),
    "os.rmdir": _single("delete", "os.rmdir", 1, False),
    "os.mkdir": _single("write", "os.mkdir", 2, False),
    "os.chmod": _single("write", "os.chmod", 2, True),
    "os.chown": _single("write", "os.chown", 3, True),
    "os.utime": _single("write", "os.utime", 3, True),
    "os.setxattr": _single("write", "os.setxattr", 99, True),
    "os.removexattr": _single("write", "os.removexattr", 99, True),
    "os.truncate": _on_truncate,
    "os.rename": _on_rename,
    "os.link": _on_link,
    "os.symlink": _on_symlink,
    "shutil.rmtree": _on_rmtree,
    "sqlite3.connect": _on_sqlite_connect,
    "sqlite3.connect/handle": _on_sqlite_handle,
    "sqlite3.enable_load_extension": _on_enable_load_extension,
}


# -- wrappers: where the event lacks what the decision needs --------------------------------

# Where an argument was found: its index in the positional arguments, or its keyword name.
Where = int | str


def _keywords(kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """The call's keyword arguments under exact `str` names. Python accepts `str` subclass
    keys in `**kwargs`; C's argument parser matches them by their characters, so they are
    read the same way here (their `__eq__`/`__hash__` never run). Two keys that are the same
    name (a lying `__eq__` kept both in one dict) are refused, as Python refuses a keyword
    given twice."""
    if not kwargs:
        return {}
    exact: dict[str, Any] = {}
    for key, value in _dict_items(kwargs):
        exact[key if type(key) is str else _str_copy(key, _ALL)] = value
    if len(exact) != len(kwargs):
        raise TypeError("a keyword argument is given more than once")
    return exact


def _find(args: tuple[Any, ...], keywords: dict[str, Any], index: int, name: str) -> Where | None:
    """Where the parameter `name` (positional `index`) is in this call; None when missing."""
    if index < len(args):
        return index
    if name in keywords:
        return name
    return None


def _value(args: tuple[Any, ...], keywords: dict[str, Any], where: Where) -> Any:
    return args[where] if type(where) is int else keywords[where]  # type: ignore[index]


def _put(
    args: tuple[Any, ...], keywords: dict[str, Any], where: Where, value: Any
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The call's arguments with `value` in place of the argument at `where`."""
    if type(where) is int:
        return (*args[:where], value, *args[where + 1 :]), keywords
    return args, {**keywords, where: value}  # type: ignore[dict-item]


def _fresh(path: str | bytes) -> str | bytes | None:
    """An equal copy of an exact str/bytes path that no other code holds (made here), to be
    the object an identity token names; None when CPython shares every object of that value
    (the empty and one-character str and bytes are singletons): no token can be made then."""
    if len(path) < 2:
        return None
    # Both halves are of `path`'s own type, which a union cannot say.
    return path[:-1] + path[-1:]  # type: ignore[operator]


class _Wrapped(_thread._local):
    # The exact object os.open's wrapper passes, without dir_fd, for a relative path: the
    # `open` event carrying *that object* is relative to the current folder. Any other
    # relative open event may come from an original os.open reached around the wrapper (a
    # captured alias, a signal handler's call inside this window), whose dir_fd the event
    # does not show: it is judged against every open folder.
    plain_os_open: Any = None


_wrapped = _Wrapped()


class _OsOpenCall:
    """os.open's arguments after conversion, for the wrapper to call the original with."""

    __slots__ = ("args", "dir_fd", "keywords", "path", "token")

    def __init__(
        self,
        args: tuple[Any, ...],
        keywords: dict[str, Any],
        path: str | bytes | None = None,
        token: str | bytes | None = None,
        dir_fd: int | None = None,
    ) -> None:
        self.args, self.keywords = args, keywords
        self.path, self.token, self.dir_fd = path, token, dir_fd


def _prepare_os_open(
    args: tuple[Any, ...], kwargs: dict[str, Any] | None
) -> tuple[list[Described], _OsOpenCall]:
    # os.open(path, flags, mode=0o777, *, dir_fd=None), converted as posix.open converts, in
    # its order: path through os.fspath, flags and dir_fd through __index__. `mode` is read
    # by C alone (once), and never by appshield.
    keywords = _keywords(kwargs)
    path_at, flags_at = _find(args, keywords, 0, "path"), _find(args, keywords, 1, "flags")
    if path_at is None or flags_at is None:
        # The original raises TypeError (a required argument is missing) before it converts
        # any argument: nothing happens, nothing to judge.
        return [], _OsOpenCall(args, keywords)
    path = fspath_once(_value(args, keywords, path_at))
    flags = index_once(_value(args, keywords, flags_at))
    raw_dir_fd = keywords.get("dir_fd")
    dir_fd = None if raw_dir_fd is None else index_once(raw_dir_fd)
    token = _fresh(path)
    passed = path if token is None else token
    args, keywords = _put(args, keywords, path_at, passed)
    args, keywords = _put(args, keywords, flags_at, flags)
    if dir_fd is not None:
        keywords["dir_fd"] = dir_fd
        _anchors(path, dir_fd, passed)  # raises the call's own error for a bad dir_fd
    call = _OsOpenCall(args, keywords, path, token, dir_fd)
    if dir_fd is None:
        return [], call  # decided by its `open` event, which carries all of it
    return [(op, "os.open") for op in open_ops(path, flags, dir_fd=dir_fd)], call


def _wrap_os_open(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    shield = _gate.for_wrapper()
    if shield is None:
        return wrapped(*args, **kwargs)
    if not kwargs and args and type(args[0]) is str and args[0][:1] == "/":
        # The common case: an absolute exact str, no dir_fd. Its `open` event has all the
        # decision needs, and carries what C converted (flags included).
        return wrapped(*args)
    call = _gate.judge_call(shield, "file", "os.open", _prepare_os_open, args, kwargs)
    if call.path is None or call.token is None:
        # Missing arguments (the original raises), or a path too short for a token of its
        # own: its `open` event is judged without one (a relative path then against the
        # current folder and every open folder).
        return wrapped(*call.args, **call.keywords)
    if call.dir_fd is None:
        if not _relative(call.path):
            return wrapped(*call.args, **call.keywords)
        previous = _wrapped.plain_os_open
        _wrapped.plain_os_open = call.token
        try:
            return wrapped(*call.args, **call.keywords)
        finally:
            _wrapped.plain_os_open = previous
    # Decided here: the `open` event of exactly the object passed is this call's.
    previous_expect = _state.expect
    _state.expect = ("open", call.token)
    try:
        return wrapped(*call.args, **call.keywords)
    finally:
        _state.expect = previous_expect


def _prepare_node(
    args: tuple[Any, ...], kwargs: dict[str, Any] | None, api: str
) -> tuple[list[Described], tuple[tuple[Any, ...], dict[str, Any]]]:
    # mkfifo(path, mode=0o666, *, dir_fd=None) and mknod(path, mode=0o600, device=0, *,
    # dir_fd=None): they raise no audit event, so this is the only check. `mode` and
    # `device` are read by C alone.
    keywords = _keywords(kwargs)
    path_at = _find(args, keywords, 0, "path")
    if path_at is None:
        return [], (args, keywords)  # the original raises TypeError before converting
    path = fspath_once(_value(args, keywords, path_at))
    raw_dir_fd = keywords.get("dir_fd")
    dir_fd = None if raw_dir_fd is None else index_once(raw_dir_fd)
    args, keywords = _put(args, keywords, path_at, path)
    if dir_fd is not None:
        keywords["dir_fd"] = dir_fd
    return _accesses(path, dir_fd, ("write",), api, False), (args, keywords)


def _node_wrapper(api: str) -> Callable[..., Any]:
    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        shield = _gate.for_wrapper()
        if shield is None:
            return wrapped(*args, **kwargs)
        args, kwargs = _gate.judge_call(shield, "file", api, _prepare_node, args, kwargs, api)
        return wrapped(*args, **kwargs)

    return wrapper


def _prepare_converted(
    args: tuple[Any, ...], kwargs: dict[str, Any] | None, index: int, name: str
) -> tuple[list[Described], tuple[tuple[Any, ...], dict[str, Any]]]:
    """Convert one path argument (and a `dir_fd` keyword) once, deciding nothing: the call's
    own audit event decides, on exactly the converted values handed to the original."""
    keywords = _keywords(kwargs)
    where = _find(args, keywords, index, name)
    if where is not None:
        args, keywords = _put(args, keywords, where, fspath_once(_value(args, keywords, where)))
    raw_dir_fd = keywords.get("dir_fd")
    if raw_dir_fd is not None:
        keywords["dir_fd"] = index_once(raw_dir_fd)
    return [], (args, keywords)


def _converting_wrapper(api: str, name: str) -> Callable[..., Any]:
    """For calls whose audit event carries the caller's original argument: `sqlite3.connect`
    (on 3.11+ the event comes before C converts `database`; on 3.10 C converts it twice, once
    for the event and once to open the file) and `shutil.rmtree` (shutil raises the event,
    then converts `path` again at each os call). Converted once here, the event and the
    code after it see the same exact value."""

    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        shield = _gate.for_wrapper()
        if shield is None:
            return wrapped(*args, **kwargs)
        args, kwargs = _gate.judge_call(
            shield, "file", api, _prepare_converted, args, kwargs, 0, name
        )
        return wrapped(*args, **kwargs)

    return wrapper


def _prepare_sqlite_connect(
    args: tuple[Any, ...], kwargs: dict[str, Any] | None
) -> tuple[list[Described], tuple[tuple[Any, ...], dict[str, Any]]]:
    """`database` converted once (the event decides on it), and `factory` (positional 5)
    replaced by its subclass whose `set_authorizer` chains the app's authorizer after
    appshield's (hooks/file/sqlite)."""
    described, (args, keywords) = _prepare_converted(args, kwargs, 0, "database")
    where = _find(args, keywords, 5, "factory")
    sqlite3 = _gate.own_import("sqlite3")
    factory = sqlite3.Connection if where is None else _value(args, keywords, where)
    shielded = _sqlite.shielded_factory(factory)
    if shielded is not factory:
        args, keywords = _put(args, keywords, "factory" if where is None else where, shielded)
    return described, (args, keywords)


def _wrap_sqlite_connect(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    shield = _gate.for_wrapper()
    if shield is None:
        return wrapped(*args, **kwargs)
    args, kwargs = _gate.judge_call(
        shield, "file", "sqlite3.connect", _prepare_sqlite_connect, args, kwargs
    )
    return wrapped(*args, **kwargs)


_wrap_rmtree = _converting_wrapper("shutil.rmtree", "path")

PATCHES: tuple[PatchPoint, ...] = (
    PatchPoint("os", "open", _wrap_os_open, "file"),
    PatchPoint("posix", "open", _wrap_os_open, "file"),
    PatchPoint("os", "mkfifo", _node_wrapper("os.mkfifo"), "file", optional=True),
    PatchPoint("posix", "mkfifo", _node_wrapper("os.mkfifo"), "file", optional=True),
    PatchPoint("os", "mknod", _node_wrapper("os.mknod"), "file", optional=True),
    PatchPoint("posix", "mknod", _node_wrapper("os.mknod"), "file", optional=True),
    PatchPoint("_sqlite3", "connect", _wrap_sqlite_connect, "file", optional=True),
    PatchPoint("sqlite3.dbapi2", "connect", _wrap_sqlite_connect, "file", optional=True),
    PatchPoint("sqlite3", "connect", _wrap_sqlite_connect, "file", optional=True),
    PatchPoint("shutil", "rmtree", _wrap_rmtree, "file", optional=True),
)


# An allowed change through a descriptor or by path, an allowed listing or SQLite connect,
# repeated (hooks/_file_cache.py): let through by the audit hook before the gate.
def compiled_hook_parts() -> dict[str, Any]:
    """What the compiled audit hook needs to answer the repeats of `FAST_PATHS` below
    itself: which events are listings, changes by path and SQLite connects (their checks
    here are `listing_repeat`, `change_repeat` and `sqlite_repeat`), and the memories they
    read (hooks/_file_cache.py)."""
    return {
        **_file_cache.compiled_hook_parts(),
        "listing_events": ("os.listdir", "os.scandir"),
        "path_change_events": PATH_CHANGE_EVENTS,
        "sqlite_event": SQLITE_CONNECT,
        # `_import_work_open`'s plainest case (the caller is importlib itself): what it reads.
        "import_machinery_globals": _IMPORTLIB_GLOBALS,
        "thread_state": _state,  # its `importing`
    }


FAST_PATHS = {
    **{event: change_repeat(event) for event in PATH_CHANGE_EVENTS},
    "os.listdir": listing_repeat,
    "os.scandir": listing_repeat,
    # The import system's own file work, which the handlers let through: before the gate.
    "open": _import_work_open,
    "os.rename": _import_work_rename,
    SQLITE_CONNECT: sqlite_repeat,
    "sqlite3.connect/handle": sqlite_handle_ours,
}

FAMILY = HookFamily("file", PATCHES, AUDIT_HANDLERS, FAST_PATHS)
