"""Learning's own row of the hook table: the imports of modules appshield had already loaded.

Those imports are `sys.modules` hits while learning, which no import hook sees, yet the
shield that later enforces the learned policy may not have loaded them (learning loads more
than enforcing: the loader, json, tempfile, ...). There they are first imports, judged
against the policy, and so is every module their loading imports in turn. So while learning,
and only then, `builtins.__import__` is wrapped (a `PatchPoint` of the row that
`preloaded_import_family` builds) to record an import statement of the app that names one of
them, with what loading it had loaded.

The runtime applies this row before it imports the hook modules (`runtime.install(...,
observers=)`): what installing imports (the hooks' modules and theirs) is what an app's later
import of those modules would load with it. It is undone with the rest of the table.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from appshield import MODULES_BEFORE_APPSHIELD
from appshield._threadstate import thread_state
from appshield.operations import ImportOp
from appshield.patching import HookFamily, PatchPoint

if TYPE_CHECKING:
    from appshield.learn.recorder import Recorder

__all__ = ["preloaded_import_family"]

_IMPORT_PARAMETERS = ("name", "globals", "locals", "fromlist", "level")


def preloaded_import_family(recorder: Recorder) -> HookFamily:
    observer = _PreloadedImports(recorder)
    point = PatchPoint("builtins", "__import__", observer.wrapper, "import", lazy=False)
    return HookFamily(category="import", patches=(point,), audit_handlers={})


def _preloaded(name: str) -> bool:
    # Not a snapshot: appshield goes on loading modules while learning (the first recorded
    # operation loads the writer's), so every module the interpreter had not loaded before
    # appshield counts. An import the hooks also saw is recorded twice, which the generaliser
    # folds into the same rule.
    return (
        name not in MODULES_BEFORE_APPSHIELD
        and not name.startswith("appshield")
        and name in sys.modules
    )


def _targets(name: str, globals: Any, fromlist: Any, level: int) -> list[str]:
    """The modules an import statement names: the dotted name's parents, the name, and the
    `from ... import` items that may be submodules (relative names made absolute)."""
    if level:
        package = globals.get("__package__") if isinstance(globals, dict) else None
        if not isinstance(package, str) or not package:
            return []
        base = package.rsplit(".", level - 1)[0] if level > 1 else package
        name = f"{base}.{name}" if name else base
    found = [name[:i] for i, c in enumerate(name) if c == "."] + [name]
    found += [f"{name}.{item}" for item in fromlist or () if isinstance(item, str)]
    return found


def _arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any, Any, int]:
    """(name, globals, fromlist, level) of an `__import__` call, positional or by keyword;
    anything unusual reads as an import this observer does not record (the call itself goes
    to the original unchanged, which raises what it raises)."""
    values: dict[str, Any] = dict(zip(_IMPORT_PARAMETERS, args, strict=False))
    for key, value in kwargs.items():
        if key in _IMPORT_PARAMETERS:
            values.setdefault(key, value)
    level = values.get("level", 0)
    return (
        values.get("name"),
        values.get("globals"),
        values.get("fromlist", ()),
        level if type(level) is int else 0,
    )


class _PreloadedImports:
    def __init__(self, recorder: Recorder) -> None:
        self._recorder = recorder
        self._seen: set[tuple[str, str]] = set()
        # module -> the modules that its first import loaded (for the ones first imported
        # through this wrapper, appshield's own imports included: those are what matter).
        self._loaded_with: dict[str, frozenset[str]] = {}

    def wrapper(
        self,
        wrapped: Callable[..., Any],
        instance: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        name, globals, fromlist, level = _arguments(args, kwargs)
        wanted = _targets(name, globals, fromlist, level) if isinstance(name, str) else []
        # Decided before the import runs: a module this import loads is a first import,
        # which the hooks see (or, for appshield's own work, need not see).
        missing = [target for target in wanted if target not in sys.modules]
        before = frozenset(sys.modules) if missing else None
        module = wrapped(*args, **kwargs)
        if before is not None:
            new = frozenset(sys.modules) - before
            for target in missing:
                self._loaded_with.setdefault(target, new)
        if thread_state.busy:
            # appshield's own work, not the app's: what it loaded is never reported as the
            # app's import (the install-time report of loaded modules would).
            if before is not None:
                self._recorder.own_loaded.update(frozenset(sys.modules) - before)
            return module
        importer = globals.get("__name__") if isinstance(globals, dict) else None
        if isinstance(importer, str) and importer.startswith("appshield"):
            return module
        for target in wanted:
            if target in missing or not _preloaded(target):
                continue
            self._record(importer, target)
            for dependency in sorted(self._loaded_with.get(target, ())):
                if _preloaded(dependency):
                    self._record(target, dependency)
        return module

    def _record(self, importer: object, target: str) -> None:
        key = (str(importer), target)
        if key in self._seen:
            return
        self._seen.add(key)
        loaded = sys.modules.get(target)
        spec = getattr(loaded, "__spec__", None)
        origin = getattr(spec, "origin", None)
        if not (isinstance(origin, str) and os.path.isabs(origin)):
            origin = None
        stack = (importer,) if isinstance(importer, str) else ()
        self._recorder.saw(ImportOp(module=target, origin=origin), stack, "import")
