"""Remembered allowed opens: the hot path of `open()`.

An allowed open of the same absolute path with the same flags, under the same compiled
policy, is allowed again without building an operation or deciding:

- when the policy does not need symlinks resolved for the access, the decision depends on
  nothing but (path, flags): remembered as is;
- when it does (deny rules on paths), the decision also depends on where the path leads.
  That is remembered as the identity (device, inode) of the file it led to, and a hit costs
  one `os.stat(path)`, which follows symlinks exactly as the open will. If a symlink on the
  way now leads elsewhere, the identity differs and the open is decided afresh. (A full
  resolution through the kernel costs three system calls, about as much as the open itself;
  a `stat` costs one.) Races between this check and the open are the stated TOCTOU limit,
  with the same window as without the cache.

A clean relative path (`data/config.yaml`: no `.`, `..` or empty segment) depends on the
current folder, so it is remembered in a memory of its own (`relative`) with the folder it
was decided in and the identity of the file it led to. A hit asks the kernel for the current
folder (`getcwd`: the same folder, so the same absolute path as decided) and proves the
identity as `checked` does, by one `os.stat` of the relative path. Another folder, a moved
symlink, a replaced file: decided afresh. Only the events of `open()` and `io.FileIO` use it
(the event's mode is a str): an `os.open` event (mode None) may be relative to a `dir_fd` the
event does not carry, and is never answered from it. Not under per-distribution grants.

A folder listing (`os.listdir`, `os.scandir`) is a read of the folder, decided as an open
for reading is: it is remembered in the same memories under flags of its own, `LISTING`, a
str that no open's flags (always an exact int) can equal, so a remembered listing never lets
an open through, nor an open a listing. Neither call takes a `dir_fd`, so a relative folder
is answered from `relative`; the current folder (`os.listdir()`, `"."`) is remembered there
too, under `"."`, with the folder itself as the one it was decided in.

An allowed change by path (`os.chmod`, `os.chown`, `os.utime`, `os.truncate`, the xattr
calls, `os.mkdir`: gunicorn's and Path.touch's `os.utime(path)`, `os.makedirs(...,
exist_ok=True)` on every request) is remembered the same way under the event's name as its
flags, for a clean absolute path only (the events may carry a `dir_fd` for a relative one).
Their effect lands on the file the path leads to, which the identity proves (`os.mkdir`
fails with EEXIST while the remembered folder is there). Deletions never are: they take
away a name, and the same file can have another name in a protected folder.

An allowed `sqlite3.connect` of a plain file name (never a `file:` URI) is remembered the
same way under its event's name, absolute or clean relative (it takes no `dir_fd`): the
database file is opened for reading and writing, decided as such an open is.

Never remembered: denied or alerted opens (each must be reported), unclean paths,
policies with scoped file rules that could decide otherwise (the decision depends on the
caller). The memory is bounded and dropped whenever the policy changes.

Remembered allowed changes through a descriptor (`os.utime(fd)`, `os.chmod(fd)`, ...: the
heartbeat gunicorn's sync worker writes once a request): such a change is judged as a write
to the kernel's path for the descriptor (/proc/self/fd/N, every symlink already followed),
and the decision depends on nothing else. So what is remembered is that path, and a repeat
reads it again from the kernel (one `readlink`) and is let through only when it is the same:
a descriptor closed and its number reused for another file, `dup2` of another file onto it,
the file renamed (even to a denied name) all change what the kernel says, and the change is
decided in full. Neither the number nor the inode alone ever allows anything (a hard link
or a rename keeps the inode under another name); nothing outlives the policy; only exact
int descriptors are let through, and never under per-distribution grants.
"""

from __future__ import annotations

import os
import sys

from appshield.hooks._callers import granted_callers
from appshield.operations import FileOp

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

__all__ = [
    "LISTING",
    "allowed_again",
    "compiled_hook_parts",
    "lookup",
    "remember",
    "remember_descriptor",
    "same_file",
]

# The flags a folder listing is remembered under: a str, so that no open (whose flags the
# event always carries as an exact int) can ever be let through by a remembered listing.
# Changes by path are remembered under their event's name, another str ("os.chmod", ...).
LISTING = "list"

_LIMIT = 4096
_stat = os.stat
_getcwd = os.getcwd
_getframe = sys._getframe


class _Memory:
    """What one compiled policy allowed. Replaced whole, never emptied in place, when the
    policy changes: an open decided under the old policy on another thread then lands in the
    old memory, never in the new one.

    The compiled audit hook (appshield/_c_audit_hook.c) reads `owner`, `plain`, `checked`
    and `relative` at their slots' offsets, with the layout of their values below: a change
    here is a change there (`compiled_hook_parts`)."""

    __slots__ = (
        "changed",
        "checked",
        "granted",
        "granted_checked",
        "granting",
        "key",
        "owner",
        "plain",
        "relative",
        "usable",
    )

    def __init__(self, key: Any = None) -> None:
        self.key: Any = key  # the compiled policy this memory belongs to
        self.usable = key is not None
        # A policy with per-distribution grants (docs/packages.md): an open is remembered,
        # and let through again, only for a caller proven first-party (hooks/_callers.py).
        # Then `owner` stays None, so that the audit hook's test for a policy without grants
        # fails at once, and `granting` holds the check.
        self.granting = granted_callers(key)
        self.owner: Any = key if self.granting is None else None
        self.plain: dict[str | bytes, set[int | str]] = {}  # path -> open flags allowed before
        # path -> (inode, device, open flags allowed while the path led to that file, the
        # path as the kernel gets it). Keyed by the path alone so that a hit builds no tuple
        # before the lookup; the bytes spare `stat` encoding the path on every hit.
        self.checked: dict[str | bytes, tuple[int, int, set[int | str], bytes]] = {}
        # With grants, the same two memories under other names (`_dicts`): the audit hook's
        # path for a policy without grants then never finds an entry only the app may reuse.
        self.granted: dict[str | bytes, set[int | str]] = {}
        self.granted_checked: dict[str | bytes, tuple[int, int, set[int | str], bytes]] = {}
        # A clean relative path -> as `checked`, and the folder it was decided in (the
        # current folder must be that one again). Asked only for the events of open() and
        # io.FileIO (never os.open's, whose dir_fd the event does not carry), and never
        # under grants.
        self.relative: dict[str, tuple[int, int, set[int | str], bytes, str]] = {}
        # Descriptor number -> (its /proc/self/fd link, the kernel's path it had when a
        # write through it was allowed), both as bytes. The number only picks which path to
        # compare with: a repeat is let through only when the link, read again, says that
        # very path. Never filled under grants: the decision would depend on the caller.
        self.changed: dict[int, tuple[bytes, bytes]] = {}


# The memory of the policy last seen. The audit hook reads it (`_memory.owner`, `.granting`,
# `.plain`, `.checked`) for the hot path, before any bookkeeping: see hooks/_audit_hook.py.
_memory = _Memory()


def _for(compiled: Any) -> _Memory:
    global _memory
    memory = _memory
    if memory.key is not compiled:
        memory = _memory = _Memory(compiled)
    return memory


def same_file(seen: tuple[Any, ...]) -> bool:
    """The path of a `checked` entry (symlinks followed) still leads to the same file. The
    audit hook inlines this for the hot path: keep the two alike."""
    try:
        found = _stat(seen[3])
    except (OSError, ValueError):
        return False
    return bool(found[1] == seen[0] and found[2] == seen[1])  # st_ino, st_dev


def lookup(
    path: str | bytes, flags: int | str, compiled: Any, without_dir_fd: bool = False
) -> bool:
    """True: this open was allowed before and still leads to the same file. Only an exact
    str or bytes path and an exact int flags (or a str: `LISTING`, an event's name) are
    looked up: a subclass's `__hash__`/`__eq__` could claim to be a remembered path
    (`type()`, not `__class__`, which an object can fake).
    `without_dir_fd`: the open cannot be relative to a `dir_fd` (an event of open() or
    io.FileIO), so a remembered relative path may answer."""
    kind, flags_kind = type(path), type(flags)
    if (kind is not str and kind is not bytes) or (flags_kind is not int and flags_kind is not str):
        return False
    memory = _for(compiled)
    if memory.granting is None:
        return allowed_again(memory, path, flags, without_dir_fd)
    # Per-distribution grants: the memories under their other names, never `relative`.
    identity: tuple[Any, ...] | None = None  # (inode, device, flags, path)
    if flags not in memory.granted.get(path, ()):
        identity = memory.granted_checked.get(path)
        if identity is None or flags not in identity[2]:
            return False
    # Remembered: reused only when the app's own code asks (asked only now, so that an open
    # never seen before costs no walk of the stack).
    if not memory.granting.first_party(_getframe(1)):
        return False  # a distribution may be asking: decided in full
    return identity is None or same_file(identity)


def compiled_hook_parts() -> dict[str, Any]:
    """What the compiled audit hook reads of this module (appshield/runtime.py hands it
    over): the module's globals (`_memory`, replaced when the policy changes, is read on
    every event), the memory's class, and the flags a listing is remembered under."""
    return {
        "file_cache_globals": globals(),
        "memory_type": _Memory,
        "listing_flags": LISTING,
    }


def allowed_again(memory: _Memory, path: str | bytes, flags: int | str, relative_too: bool) -> bool:
    """`lookup` for a memory without grants and a path already known to be an exact str or
    bytes: the audit hook's repeat checks call it directly. `relative_too`: the call cannot
    be relative to a `dir_fd`, so a remembered relative str may answer (from the folder it
    was decided in)."""
    allowed = memory.plain.get(path)
    if allowed is not None and flags in allowed:
        return True
    seen: tuple[Any, ...] | None = memory.checked.get(path)
    if seen is None:
        if not relative_too or type(path) is not str:
            return False
        seen = _in_this_folder(memory.relative.get(path))
        if seen is None:
            return False
    return flags in seen[2] and same_file(seen)


def remember(
    path: Any, flags: int | str, ops: Sequence[FileOp], compiled: Any, without_dir_fd: bool = False
) -> None:
    """Note an allowed open of a clean absolute path (an exact str or bytes, with exact int
    flags: a bytes path is its own key, the spelling the event carries), or, for an open
    that cannot be relative to a `dir_fd` (`without_dir_fd`), of a clean relative str or
    `"."`. A folder listing is noted the same way, with the flags `LISTING`; an allowed
    change by path (`os.chmod`, `os.mkdir`, ...: hooks/file/describe.py
    `PATH_CHANGE_EVENTS`), of a clean absolute path only, with the event's name."""
    kind, flags_kind = type(path), type(flags)
    if (kind is not str and kind is not bytes) or (flags_kind is not int and flags_kind is not str):
        return
    memory = _for(compiled)
    if not memory.usable or not ops:
        return
    relative = ops[0].path != (path if kind is str else os.fsdecode(path))
    folder = None
    granting = memory.granting
    if granting is not None:
        # Under grants only opens of absolute paths, for the app's own code: a listing, a
        # change or a relative name is answered by the audit hook alone, never under grants.
        if flags_kind is str or relative or not granting.may_remember(ops, _getframe(1)):
            return
    else:
        if relative:
            folder = _decided_in(path, ops[0].path) if kind is str and without_dir_fd else None
            if folder is None:
                return
        if any(compiled.stack_matters(op) for op in ops):
            return  # a scoped rule is a candidate: another caller could be decided otherwise
    plain, checked = _dicts(memory)
    resolved = ops[0].resolved
    if folder is not None:
        # The file the decided path led to, and the folder it was decided in: a hit needs
        # both again.
        _remember_identity(memory.relative, path, resolved or ops[0].path, flags, folder)
        return
    if resolved is None:
        if len(plain) >= _LIMIT:
            plain.clear()
        plain.setdefault(path, set()).add(flags)
        return
    _remember_identity(checked, path, resolved, flags)


def _remember_identity(
    memory: dict[Any, Any],
    path: str | bytes,
    target: str,
    flags: int | str,
    folder: str | None = None,
) -> None:
    """Remember that `path` led to the file at `target` (its decided, absolute form); for a
    relative path, from `folder`."""
    try:
        found = _stat(target)
    except (OSError, ValueError):
        return  # not there (yet): nothing stable to remember
    known = memory.get(path)
    if (
        known is not None
        and known[0] == found.st_ino
        and known[1] == found.st_dev
        and (folder is None or known[4] == folder)
    ):
        known[2].add(flags)
        return
    if len(memory) >= _LIMIT:
        memory.clear()
    # Another file than before (a symlink moved, another folder): the flags allowed for the
    # old one no longer say anything about this one.
    entry = (found.st_ino, found.st_dev, {flags}, os.fsencode(path))
    memory[path] = entry if folder is None else (*entry, folder)


def _in_this_folder(
    seen: tuple[int, int, set[int | str], bytes, str] | None,
) -> tuple[int, int, set[int | str], bytes, str] | None:
    """A `relative` entry, when the current folder is the one it was decided in."""
    if seen is None:
        return None
    try:
        here = _getcwd()
    except OSError:  # the current folder was deleted: decided in full
        return None
    return seen if here == seen[4] else None


def _decided_in(path: str, decided: str) -> str | None:
    """The folder the relative `path` was decided in, as the absolute `decided`: the
    current folder itself for `"."`; for a clean relative path (no `.`, `..` or empty
    segment, no NUL), `decided` without it, when `path` names its end segment for segment
    (from another folder it means the same name there, nothing else). None for anything
    else: not remembered."""
    if path == ".":
        return decided if decided[:1] == "/" else None
    if not path or path[0] == "/" or "\0" in path or not decided.endswith("/" + path):
        return None
    if any(part in ("", ".", "..") for part in path.split("/")):
        return None
    return decided[: -len(path) - 1] or "/"


def _dicts(
    memory: _Memory,
) -> tuple[
    dict[str | bytes, set[int | str]], dict[str | bytes, tuple[int, int, set[int | str], bytes]]
]:
    if memory.granting is None:
        return memory.plain, memory.checked
    return memory.granted, memory.granted_checked


def remember_descriptor(fd: int, op: FileOp, compiled: Any) -> None:
    """Note an allowed write through the descriptor `fd`: `op.path` is the kernel's path for
    it, read by the caller just before deciding. The audit hook's check of a repeat, which
    reads it again, is hooks/file/describe.py `descriptor_repeat`."""
    memory = _for(compiled)
    if memory.owner is None or op.access != "write" or op.path[:1] != "/":
        return  # grants (or no policy): every repeat is decided; anything else is not ours
    if type(fd) is not int or compiled.stack_matters(op):
        return  # a scoped rule (or a shadow candidate that objects) could decide otherwise
    changed = memory.changed
    if len(changed) >= _LIMIT:
        changed.clear()
    changed[fd] = (os.fsencode(f"/proc/self/fd/{fd}"), os.fsencode(op.path))
