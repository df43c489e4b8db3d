"""Per-thread state shared by the wrapt layer and the audit hook.

`busy`: appshield itself is working on this thread (deciding, reporting, exporting). Its own
I/O must not be checked, and the audit hook must never recurse into itself. Only code
inside appshield sets it, through `appshield_io()`.

`expect`: the audit event that the wrapt layer has just decided on this thread and is about
to trigger by calling the original function, as (event name, first argument). The audit hook
consumes it instead of deciding (and reporting) the same operation twice. It is cleared when
the wrapped call returns, so it never outlives the call that set it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["appshield_io", "thread_state"]


class _ThreadState(threading.local):
    busy: bool = False
    expect: tuple[str, Any] | None = None
    # Depth of imports in progress on this thread: the import system's own reads of module
    # files belong to the import category, not the file category.
    importing: int = 0


thread_state = _ThreadState()


@contextmanager
def appshield_io() -> Iterator[None]:
    """Mark this thread as doing appshield's own work: hooks let everything through."""
    state = thread_state
    previous = state.busy
    state.busy = True
    try:
        yield
    finally:
        state.busy = previous
