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
  in the audit hook, and wrapt is used only where the event lacks information:
  - `os.open(..., dir_fd=)` (and `posix.open`): the event carries the relative path without
    its `dir_fd`; the wrapper names the file through /proc/self/fd and marks the event as
    already decided;
  - `os.mkfifo` and `os.mknod` (and the `posix` twins): they raise no event at all;
  - `os.posix_spawn[p]`'s `file_actions` (in `hooks.process`).
- The other `os` calls raise events that carry `dir_fd` (`os.remove`, `os.rmdir`,
  `os.rename` for rename and replace, `os.link`, `os.symlink`, `os.mkdir`, `os.truncate`,
  `os.chmod`, `os.chown`, `os.utime`, `os.setxattr`, `os.removexattr`, `os.listdir`,
  `os.scandir`) and fire for `posix.*` and captured aliases too, so they are decided there.
  shutil's copy, move and rmtree, `os.makedirs`, `os.removedirs`, tempfile and glob are built
  on these and need nothing of their own; `shutil.rmtree` is also checked as a whole up front,
  so a denied tree is refused before anything in it is deleted.
- The hot path: an allowed open of a clean absolute path is remembered per compiled policy
  (`_file_cache`), and the audit hook itself lets a repeat through at its very top, before
  the per-thread bookkeeping and this handler: one dict lookup, plus one `stat` (to prove
  the path still leads to the same file) when the policy needs symlinks resolved. Measured
  with benchmarks/run.py and benchmarks/bench_hooks.py.
- `sqlite3.connect`: its event (SQLite opens the file in C, with no `open` event). It reads and
  may create and write, so both are checked.

Access: open flags give read and/or write; listing a folder reads it; remove, unlink, rmdir,
rmtree and the source of a rename delete; the target of a rename, link or symlink, mkdir,
mkfifo, truncate, chmod/chown/utime and xattr changes write. A hard link exposes its source
under a new name, so its source must also be readable and writable by the policy.

The import system's own reads of module files (and its `__pycache__` writes and folder
listings) belong to the import category: they are skipped while `thread_state.importing` is
set and the call comes from `<frozen importlib._bootstrap_external>`.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Mapping
from types import FrameType
from typing import Any

from appshield.hooks._file_cache import lookup as _cache_lookup
from appshield.hooks._file_cache import remember as _cache_remember
from appshield.hooks._convert import fspath_once, index_once
from appshield.hooks._file_describe import file_op, open_ops
from appshield.hooks._patching import PatchPoint
from appshield.hooks import _gate
from appshield.hooks._proc_screen import active, enforce_all, first_violation, screen
from appshield.hooks._state import thread_state
from appshield.normalize import fd_path
from appshield.operations import FileAccess, FileOp, Operation

__all__ = ["AUDIT_HANDLERS", "PATCHES", "on_install", "on_uninstall"]

_state = thread_state
Described = tuple[Operation, str]
_module_suffixes: tuple[str, ...] | None = None


class _NoShield:
    compiled = None


# The installed shield (set by on_install): the audit hook calls the handlers only while one
# is active, so they read its current compiled policy here without going through runtime.
_active: Any = _NoShield()


def on_install(shield: Any) -> None:
    global _active
    _active = shield


def on_uninstall() -> None:
    global _active
    _active = _NoShield()


# -- the import system's own file work ------------------------------------------------------


def _suffixes() -> tuple[str, ...]:
    global _module_suffixes
    if _module_suffixes is None:
        import importlib.machinery

        _module_suffixes = (*importlib.machinery.all_suffixes(), ".pyc")
    return _module_suffixes


# importlib's path machinery, known by its module globals. Frames are recognised by
# `f_globals`, never `f_code`: every `f_code` read raises the audit event
# `object.__getattr__`, one more call of every audit hook per frame walked (about a fifth of
# what the shield adds to a first import).
_IMPORTLIB_GLOBALS = sys.modules["_frozen_importlib_external"].__dict__


def _from_import_machinery() -> bool:
    """The Python caller (past appshield's own frames) is importlib's path machinery."""
    frame: FrameType | None = sys._getframe(2)
    for _ in range(4):
        if frame is None:
            return False
        namespace = frame.f_globals
        if namespace is _IMPORTLIB_GLOBALS:
            return True
        name = namespace.get("__name__")
        if not (isinstance(name, str) and name.startswith("appshield.")):
            return False
        frame = frame.f_back
    return False


def _import_file_work(path: Any) -> bool:
    if not isinstance(path, str):
        path = os.fsdecode(path) if isinstance(path, bytes) else str(path)
    if not (path.endswith(_suffixes()) or "__pycache__" in path):
        return False
    return _from_import_machinery()


# -- audit events ---------------------------------------------------------------------------


def _on_open(args: tuple[Any, ...]) -> Described | None:
    # A remembered allowed open never gets here: the audit hook lets it through first (see
    # runtime._make_audit_hook and _file_cache). The lookup below starts a fresh memory when
    # the policy changed since the last open.
    path = args[0]
    compiled = _gate.shield().compiled
    if path.__class__ is str:
        if _state.importing and _import_file_work(path):
            return None
        if _cache_lookup(path, args[2], compiled):
            return None
        if args[1] is None and path[:1] != "/" and not _wrapped.plain_os_open:
            return _unknown_dir_fd(path, args[2])
    elif path.__class__ is int:
        return None  # an already-open descriptor: its open was decided
    elif _state.importing and _import_file_work(path):
        return None
    if args[1] is None and not _wrapped.plain_os_open and _is_relative(path):
        return _unknown_dir_fd(path, args[2])
    ops = open_ops(path, args[2])
    found = screen([(op, "open") for op in ops])
    if found is None:
        _cache_remember(path, args[2], ops, compiled)
        return None
    return found[0], found[1]


def _is_relative(path: Any) -> bool:
    text = os.fsdecode(os.fspath(path))
    return not text.startswith("/")


def _open_folders() -> list[int]:
    """Descriptors of this process that name folders: what a `dir_fd` could be."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        target = fd_path(int(name))
        if target is not None and os.path.isdir(target):
            found.append(int(name))
    return found


def _unknown_dir_fd(path: Any, flags: int) -> Described | None:
    """An os.open of a relative path that bypassed the wrapper (a captured or `__wrapped__`
    original, a fresh `posix` module): its dir_fd may be any open folder, so the path is
    judged against the current folder and against every one of them."""
    described = [(op, "os.open") for op in open_ops(path, flags)]
    for fd in _open_folders():
        described.extend((op, "os.open") for op in open_ops(path, flags, dir_fd=fd))
    return first_violation(described)


def _listing(path: Any, api: str) -> Described | None:
    if path is None:
        path = "."
    if _state.importing and _from_import_machinery():
        return None  # FileFinder filling its cache
    return file_op(path, "read"), api


def _on_listdir(args: tuple[Any, ...]) -> Described | None:
    return _listing(args[0], "os.listdir")


def _on_scandir(args: tuple[Any, ...]) -> Described | None:
    return _listing(args[0], "os.scandir")


def _dir_fd(args: tuple[Any, ...], index: int) -> int | None:
    value = args[index] if len(args) > index else None
    # Some events spell "no dir_fd" as None, others as -1 (or AT_FDCWD).
    return value if isinstance(value, int) and value >= 0 else None


def _single(access: FileAccess, api: str, fd_index: int, follow: bool) -> Callable[..., Any]:
    def handler(args: tuple[Any, ...]) -> Described | None:
        if _state.importing and _from_import_machinery():
            return None  # __pycache__ folders and cache files
        op = file_op(args[0], access, dir_fd=_dir_fd(args, fd_index), follow=follow)
        return op, api

    return handler


def _on_rename(args: tuple[Any, ...]) -> Described | None:
    if _state.importing and _from_import_machinery():
        return None  # the atomic write of a bytecode cache file
    src, dst = args[0], args[1]
    return first_violation(
        [
            (file_op(src, "delete", dir_fd=_dir_fd(args, 2), follow=False), "os.rename"),
            (file_op(dst, "write", dir_fd=_dir_fd(args, 3), follow=False), "os.rename"),
        ]
    )


def _on_link(args: tuple[Any, ...]) -> Described | None:
    src, dst = args[0], args[1]
    src_fd, dst_fd = _dir_fd(args, 2), _dir_fd(args, 3)
    return first_violation(
        [
            (file_op(dst, "write", dir_fd=dst_fd, follow=False), "os.link"),
            (file_op(src, "read", dir_fd=src_fd), "os.link"),
            (file_op(src, "write", dir_fd=src_fd), "os.link"),
        ]
    )


def _on_symlink(args: tuple[Any, ...]) -> Described | None:
    return file_op(args[1], "write", dir_fd=_dir_fd(args, 2), follow=False), "os.symlink"


def _on_truncate(args: tuple[Any, ...]) -> Described | None:
    return file_op(args[0], "write"), "os.truncate"


def _sqlite_path(database: Any) -> str | None:
    """The file behind a sqlite3 database name, or None for an in-memory database."""
    if isinstance(database, bytes):
        database = os.fsdecode(database)
    database = os.fspath(database)
    if database in ("", ":memory:"):
        return None
    if database.startswith("file:"):
        from urllib.parse import parse_qs, unquote, urlsplit  # rare: kept out of start-up

        parts = urlsplit(database)
        query = parse_qs(parts.query)
        if query.get("mode", [""])[0] == "memory" or parts.path in ("", ":memory:"):
            return None
        return unquote(parts.path)
    return database  # type: ignore[no-any-return]


def _on_sqlite_connect(args: tuple[Any, ...]) -> Described | None:
    database = args[0]
    candidates = [database]
    path = _sqlite_path(database)
    if path is None:
        return None
    if path != database:
        candidates.append(path)  # uri=True is not in the event: judge both readings
    ops: list[Described] = []
    for candidate in candidates:
        for access in ("read", "write"):
            ops.append((file_op(candidate, access), "sqlite3.connect"))  # type: ignore[arg-type]
    return first_violation(ops)


def _on_rmtree(args: tuple[Any, ...]) -> Described | None:
    op = file_op(args[0], "delete", dir_fd=_dir_fd(args, 1), follow=False)
    return op, "shutil.rmtree"


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
}


# -- wrappers: where the event lacks what the decision needs --------------------------------


def _arg(args: tuple[Any, ...], kwargs: Mapping[str, Any], index: int, name: str) -> Any:
    return args[index] if len(args) > index else kwargs.get(name)


class _Wrapped(threading.local):
    # os.open's wrapper is running without dir_fd: a relative path in its `open` event is
    # relative to the current folder. Without this mark the event may come from an original
    # os.open reached around the wrapper, whose dir_fd the event does not show.
    plain_os_open: bool = False


_wrapped = _Wrapped()


def _converted(
    args: tuple[Any, ...], kwargs: Mapping[str, Any], index: int, name: str, convert: Any
) -> tuple[Any, tuple[Any, ...], dict[str, Any]]:
    """Convert one argument (positional `index` or keyword `name`) once, and the call's
    arguments with the converted value in its place (for the original to receive)."""
    if len(args) > index:
        value = convert(args[index])
        return value, (*args[:index], value, *args[index + 1 :]), dict(kwargs)
    value = convert(kwargs[name])
    return value, tuple(args), {**kwargs, name: value}


def _prepare_os_open(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[Any, Any]:
    # os.open(path, flags, mode=0o777, *, dir_fd=None), converted as posix.open converts:
    # path through os.fspath, flags and dir_fd through __index__.
    path, args, kwargs = _converted(args, kwargs, 0, "path", fspath_once)
    flags, args, kwargs = _converted(args, kwargs, 1, "flags", index_once)
    dir_fd, args, kwargs = _converted(args, kwargs, 99, "dir_fd", index_once)
    ops = open_ops(path, flags, dir_fd=dir_fd)
    return [(op, "os.open") for op in ops], (path, args, kwargs)


def _wrap_os_open(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    dir_fd = kwargs.get("dir_fd") if kwargs else None
    if dir_fd is None:
        path = args[0] if args else kwargs.get("path")
        if path.__class__ is str and path[:1] == "/":
            return wrapped(*args, **kwargs)  # absolute: the `open` event has all it needs
        _wrapped.plain_os_open = True  # relative to the current folder, not to a dir_fd
        try:
            return wrapped(*args, **kwargs)
        finally:
            _wrapped.plain_os_open = False
    shield = active()
    if shield is None:
        return wrapped(*args, **kwargs)
    path, args, kwargs = _gate.judge_call(shield, "file", "os.open", _prepare_os_open, args, kwargs)
    _state.expect = ("open", path)
    try:
        return wrapped(*args, **kwargs)
    finally:
        _state.expect = None


def _prepare_node(args: tuple[Any, ...], kwargs: Mapping[str, Any], api: str) -> tuple[Any, Any]:
    # mkfifo(path, mode=0o666, *, dir_fd=None) and mknod(path, mode=0o600, device=0, *,
    # dir_fd=None): they raise no audit event, so this is the only check.
    path, args, kwargs = _converted(args, kwargs, 0, "path", fspath_once)
    dir_fd = None
    if kwargs.get("dir_fd") is not None:
        dir_fd, args, kwargs = _converted(args, kwargs, 99, "dir_fd", index_once)
    op = file_op(path, "write", dir_fd=dir_fd, follow=False)
    return [(op, api)], (args, kwargs)


def _node_wrapper(api: str) -> Callable[..., Any]:
    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        shield = active()
        if shield is not None:
            args, kwargs = _gate.judge_call(shield, "file", api, _prepare_node, args, kwargs, api)
        return wrapped(*args, **kwargs)

    return wrapper


PATCHES: tuple[PatchPoint, ...] = (
    PatchPoint("os", "open", _wrap_os_open, "file"),
    PatchPoint("posix", "open", _wrap_os_open, "file"),
    PatchPoint("os", "mkfifo", _node_wrapper("os.mkfifo"), "file", optional=True),
    PatchPoint("posix", "mkfifo", _node_wrapper("os.mkfifo"), "file", optional=True),
    PatchPoint("os", "mknod", _node_wrapper("os.mknod"), "file", optional=True),
    PatchPoint("posix", "mknod", _node_wrapper("os.mknod"), "file", optional=True),
)
