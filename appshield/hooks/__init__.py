"""The patching layer: one table of hook families, one audit hook.

Each category module (`process`, `file`, `network`, `imports`) contributes one row, its
`FAMILY` (`appshield.patching.HookFamily`): its patch points (wrapt wrappers on Python-level entry
points), its PEP 578 audit handlers (the backstop for C-level modules, captured aliases,
reloads and `__wrapped__`), the fast paths its audit events may take, and its install,
uninstall and after-fork steps. The runtime walks `FAMILIES` forwards to install and
backwards to uninstall; the one `os.register_at_fork` below walks their after-fork steps.
To add a hook: add a patch point or an audit handler to the right family (or a new family
module with its own `FAMILY`, listed here); nothing else registers anything.

The smallest family, who started a thread (`_THREAD_FAMILY`, for per-distribution grants), is
written here rather than in a module of its own: each module a start loads costs it about
0.3 M instructions of finding and loading alone (docs/performance.md, "Start-up, seventh
round").
"""

from __future__ import annotations

import os
import sys

from appshield.hooks import _gate, file, imports, network, process
from appshield.patching import AuditHandler, FastPath, HookFamily, PatchPoint

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

__all__ = [
    "FAMILIES",
    "STARTED_BY",
    "all_audit_handlers",
    "all_fast_paths",
    "all_patch_points",
    "event_categories",
]

# -- who started a thread --------------------------------------------------------------------
# For per-distribution grants (docs/packages.md, "Threads"). A thread's stack begins in
# `threading`'s bootstrap: when its target is code of the standard library or a builtin
# (`Thread(target=os.system, args=("sh",))`), no frame of whoever started it is on the stack
# any more. `Thread.start` is wrapped to remember, on the thread object, the distributions
# answerable where it was started; a decision in that thread whose walk reaches the bottom of
# the stack without a first-party frame holds them too. Only a decider that attributes
# packages (`GrantingDecider`) is asked; otherwise the wrapper only calls through.
# `_thread.start_new_thread` called directly has no such record: its walk holds only what is
# on its own stack (see docs/limits.md).

# The attribute set on a started `threading.Thread`: the answerable distributions, a tuple.
STARTED_BY = "_appshield_started_by"


def _thread_start(
    wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    active = _gate.for_wrapper()
    decider = getattr(active, "compiled", None) if active is not None else None
    if decider is not None and getattr(decider, "attributes_packages", False):
        try:
            object.__setattr__(instance, STARTED_BY, decider.answerable(sys._getframe(1)))
        except (AttributeError, TypeError):
            pass  # a thread object that refuses attributes: its walk holds its own stack only
    return wrapped(*args, **kwargs)


_THREAD_FAMILY = HookFamily(
    "thread",
    (PatchPoint("threading", "Thread.start", _thread_start, "process"),),
    {},
)

FAMILIES: tuple[HookFamily, ...] = (
    process.FAMILY,
    file.FAMILY,
    network.FAMILY,
    imports.FAMILY,
    _THREAD_FAMILY,
)


def all_patch_points() -> tuple[PatchPoint, ...]:
    return tuple(p for family in FAMILIES for p in family.patches)


def all_audit_handlers() -> Mapping[str, AuditHandler]:
    handlers: dict[str, AuditHandler] = {}
    for family in FAMILIES:
        for event, handler in family.audit_handlers.items():
            if event in handlers:
                raise RuntimeError(f"audit event {event!r} handled twice")
            handlers[event] = handler
    return handlers


def event_categories() -> Mapping[str, str]:
    """audit event -> the category of the hook that handles it (for undescribable reports)."""
    return {event: family.category for family in FAMILIES for event in family.audit_handlers}


def all_fast_paths() -> Mapping[str, FastPath]:
    """audit event -> a check the audit hook makes before the gate: True for a repeat the
    active policy already allowed (exact types only; any doubt is False)."""
    found: dict[str, FastPath] = {}
    for family in FAMILIES:
        found.update(family.fast_paths)
    return found


def _after_fork_in_child() -> None:
    for family in FAMILIES:
        for step in family.after_fork:
            step()


os.register_at_fork(after_in_child=_after_fork_in_child)
