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

Never remembered: denied or alerted opens (each must be reported), relative or unclean
paths (they depend on the current folder), policies with scoped file rules (the decision
depends on the caller). The memory is bounded and dropped whenever the policy changes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from appshield.operations import FileOp

__all__ = ["lookup", "remember", "same_file"]

_LIMIT = 4096
_stat = os.stat


class _Memory:
    __slots__ = ("checked", "owner", "plain", "usable")

    def __init__(self) -> None:
        self.owner: Any = None
        self.usable = False
        self.plain: dict[str, set[int]] = {}  # path -> open flags allowed before
        self.checked: dict[tuple[str, int], tuple[int, int]] = {}


_memory = _Memory()


def _for(compiled: Any) -> _Memory:
    memory = _memory
    if memory.owner is not compiled:
        memory.plain = {}
        memory.checked = {}
        memory.usable = not compiled.needs_stack("file")
        memory.owner = compiled
    return memory


def same_file(path: str, identity: tuple[int, int]) -> bool:
    """`path` (symlinks followed) still leads to the file with this (device, inode)."""
    try:
        found = _stat(path)
    except (OSError, ValueError):
        return False
    return (found.st_dev, found.st_ino) == identity


def lookup(path: str, flags: int, compiled: Any) -> bool:
    """True: this open was allowed before and still leads to the same file."""
    memory = _for(compiled)
    if flags in memory.plain.get(path, ()):
        return True
    identity = memory.checked.get((path, flags))
    if identity is None:
        return False
    try:
        found = _stat(path)
    except (OSError, ValueError):
        return False
    return (found.st_dev, found.st_ino) == identity


def remember(path: Any, flags: int, ops: Sequence[FileOp], compiled: Any) -> None:
    """Note an allowed open of a clean absolute path."""
    memory = _for(compiled)
    if not memory.usable or not ops or path.__class__ is not str or ops[0].path != path:
        return
    resolved = ops[0].resolved
    if resolved is None:
        if len(memory.plain) >= _LIMIT:
            memory.plain.clear()
        memory.plain.setdefault(path, set()).add(flags)
        return
    try:
        found = _stat(resolved)
    except (OSError, ValueError):
        return  # not there (yet): nothing stable to remember
    if len(memory.checked) >= _LIMIT:
        memory.checked.clear()
    memory.checked[(path, flags)] = (found.st_dev, found.st_ino)
