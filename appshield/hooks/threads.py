"""Who started a thread, for per-distribution grants (docs/packages.md, "Threads").

A thread's stack begins in `threading`'s bootstrap: when its target is code of the standard
library or a builtin (`Thread(target=os.system, args=("sh",))`), no frame of whoever started
it is on the stack any more. `Thread.start` is wrapped to remember, on the thread object, the
distributions answerable where it was started; a decision in that thread whose walk reaches
the bottom of the stack without a first-party frame holds them too. Only a decider that
attributes packages (`GrantingDecider`) is asked; otherwise the wrapper only calls through.

`_thread.start_new_thread` called directly has no such record: its walk holds only what is
on its own stack (see docs/limits.md).
"""

from __future__ import annotations

import sys

from appshield.hooks import _gate
from appshield.patching import HookFamily, PatchPoint

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["FAMILY", "STARTED_BY"]

# The attribute set on a started `threading.Thread`: the answerable distributions, a tuple.
STARTED_BY = "_appshield_started_by"


def _start(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    active = _gate.for_wrapper()
    decider = getattr(active, "compiled", None) if active is not None else None
    if decider is not None and getattr(decider, "attributes_packages", False):
        try:
            object.__setattr__(instance, STARTED_BY, decider.answerable(sys._getframe(1)))
        except (AttributeError, TypeError):
            pass  # a thread object that refuses attributes: its walk holds its own stack only
    return wrapped(*args, **kwargs)


FAMILY = HookFamily(
    "thread",
    (PatchPoint("threading", "Thread.start", _start, "process"),),
    {},
)
