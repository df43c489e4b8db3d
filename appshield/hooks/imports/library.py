"""Where a native library named to `dlopen` lives, so that `library` path globs can match it.

`ctypes.CDLL("libc.so.6")` names no folder: the dynamic loader searches `LD_LIBRARY_PATH`,
its cache and the system folders. Running the loader's own search (or `ldconfig`, as
`ctypes.util.find_library` does) on every load would be slow and start processes, so this
looks in the folders the loader would, in order, and takes the first file that exists. A
name found nowhere is returned as given (a stated limit: a bare name a rule cannot see).
"""

from __future__ import annotations

import os
import sys

from appshield.policy.variables import loader_folders

__all__ = ["resolve_library"]


def _loader_dirs() -> tuple[str, ...]:
    """The system folders the loader searches, in its order. Made on the first bare name:
    two of them come from sysconfig (LIBDIR, MULTIARCH), asked once per process or proved by
    the policy cache (`appshield.policy.variables`), never imported at start-up for this."""
    global _SYSTEM_DIRS
    found = _SYSTEM_DIRS
    if found is None:
        libdir, multiarch = loader_folders()
        found = _SYSTEM_DIRS = tuple(
            d
            for d in (
                f"/lib/{multiarch}" if multiarch else "",
                f"/usr/lib/{multiarch}" if multiarch else "",
                "/lib64",
                "/usr/lib64",
                "/lib",
                "/usr/lib",
                "/usr/local/lib",
                libdir,
            )
            if d
        )
    return found


_SYSTEM_DIRS: tuple[str, ...] | None = None
# Read once: the loader itself only reads LD_LIBRARY_PATH at process start.
_LD_LIBRARY_PATH = tuple(p for p in os.environ.get("LD_LIBRARY_PATH", "").split(":") if p)


def resolve_library(name: object) -> str | None:
    """The absolute path (symlinks resolved) of the library `dlopen(name)` would load;
    the interpreter itself for `dlopen(NULL)`; the name as given when it cannot be found."""
    if name is None:
        return os.path.realpath(sys.executable)
    text = os.fsdecode(name)  # type: ignore[arg-type]  # callers hand exact str or bytes
    if "/" in text:
        return os.path.realpath(text)
    for folder in (*_LD_LIBRARY_PATH, *_loader_dirs()):
        candidate = os.path.join(folder, text)
        if os.path.exists(candidate):
            return os.path.realpath(candidate)
    return text
