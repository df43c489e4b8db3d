"""The patching layer: one table of hook families, one audit hook.

Each category module (`process`, `file`, `network`, `imports`) contributes one row, its
`FAMILY` (`appshield.patching.HookFamily`): its patch points (wrapt wrappers on Python-level entry
points), its PEP 578 audit handlers (the backstop for C-level modules, captured aliases,
reloads and `__wrapped__`), the fast paths its audit events may take, and its install,
uninstall and after-fork steps. The runtime walks `FAMILIES` forwards to install and
backwards to uninstall; the one `os.register_at_fork` below walks their after-fork steps.
To add a hook: add a patch point or an audit handler to the right family (or a new family
module with its own `FAMILY`, listed here); nothing else registers anything.
"""

from __future__ import annotations

import os

from appshield.hooks import file, imports, network, process, threads
from appshield.patching import AuditHandler, FastPath, HookFamily, PatchPoint

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "FAMILIES",
    "all_audit_handlers",
    "all_fast_paths",
    "all_patch_points",
    "event_categories",
]

FAMILIES: tuple[HookFamily, ...] = (
    process.FAMILY,
    file.FAMILY,
    network.FAMILY,
    imports.FAMILY,
    threads.FAMILY,
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
