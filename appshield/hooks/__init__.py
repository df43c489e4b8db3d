"""The patching layer: one table of patch points, one audit hook.

Each category module (`process`, `file`, `network`, `imports`) contributes:
- `PATCHES`: a tuple of `PatchPoint` (wrapt wrappers on Python-level entry points);
- `AUDIT_HANDLERS`: a mapping from PEP 578 audit event name to a function that turns the
  event's arguments into `(operation, api)` or None (the backstop for C-level modules,
  captured aliases, reloads and `__wrapped__`);
- optionally `on_install(shield)` / `on_uninstall()` for work that is neither.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

from appshield.hooks import file, imports, network, process
from appshield.hooks._patching import PatchPoint

__all__ = [
    "CATEGORY_MODULES",
    "all_audit_handlers",
    "all_fast_paths",
    "all_patch_points",
    "event_categories",
]

CATEGORY_MODULES: tuple[ModuleType, ...] = (process, file, network, imports)
_CATEGORY_OF_MODULE = {process: "process", file: "file", network: "network", imports: "import"}

AuditHandler = Callable[[tuple[Any, ...]], Any]


def all_patch_points() -> tuple[PatchPoint, ...]:
    return tuple(p for m in CATEGORY_MODULES for p in getattr(m, "PATCHES", ()))


def all_audit_handlers() -> Mapping[str, AuditHandler]:
    handlers: dict[str, AuditHandler] = {}
    for module in CATEGORY_MODULES:
        for event, handler in getattr(module, "AUDIT_HANDLERS", {}).items():
            if event in handlers:
                raise RuntimeError(f"audit event {event!r} handled twice")
            handlers[event] = handler
    return handlers


def event_categories() -> Mapping[str, str]:
    """audit event -> the category of the hook that handles it (for undescribable reports)."""
    return {
        event: _CATEGORY_OF_MODULE[module]
        for module in CATEGORY_MODULES
        for event in getattr(module, "AUDIT_HANDLERS", {})
    }


def all_fast_paths() -> Mapping[str, Callable[[tuple[Any, ...]], bool]]:
    """audit event -> a check the audit hook makes before the gate: True for a repeat the
    active policy already allowed (exact types only; any doubt is False)."""
    found: dict[str, Callable[[tuple[Any, ...]], bool]] = {}
    for module in CATEGORY_MODULES:
        found.update(getattr(module, "FAST_PATHS", {}))
    return found
