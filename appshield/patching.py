"""One table of patch points; install and uninstall both walk it.

A `PatchPoint` names a module, a (possibly dotted) attribute and a wrapt-style wrapper
`(wrapped, instance, args, kwargs)`. Installing replaces the attribute with a
`wrapt.FunctionWrapper`; uninstalling restores the identical original object, but only where
our wrapper is still in place, so a patch someone else applied on top of ours is never
clobbered. Modules that are not imported yet are patched when they are imported, so
installing costs no extra imports.

Only wrapt's C `FunctionWrapper` is needed, so it is taken from wrapt's extension module
(`wrapt._wrappers`) without running `wrapt/__init__.py`: that imports `inspect` (and with it
ast, dis and tokenize) for its pure-Python fallback, about a fifth of appshield's start-up.
The extension is registered under its own name, so an app that imports wrapt later gets the
very same classes. Where the extension is not there (`WRAPT_DISABLE_EXTENSIONS`, a pure-Python
install, an import system that does not find wrapt on `sys.path`), wrapt is imported as usual.

Patching a module when it is imported is done by the import hooks (`loaded`, called by the
`_load_unlocked` and loader wrappers once a module has run), not by wrapt's post-import
hooks: those put a finder in front of `sys.meta_path`, which every first import then passes.
"""

from __future__ import annotations

import _thread
import os
import sys
from types import MappingProxyType

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from typing import Any, NamedTuple, TypeAlias
else:  # typing's own costs ~0.7 M instructions per class at start-up (appshield/_records.py)
    from appshield._records import NamedTuple

__all__ = [
    "WRAPT_DIR",
    "AuditHandler",
    "FastPath",
    "FunctionWrapper",
    "HookFamily",
    "PatchPoint",
    "Patcher",
    "WrapperFn",
    "compiled_hook_module",
    "loaded",
]


def _wrapt_extension() -> Any:
    """wrapt's C extension module, loaded on its own; None where it cannot be."""
    found = sys.modules.get("wrapt._wrappers")
    if found is not None:
        return found
    if os.environ.get("WRAPT_DISABLE_EXTENSIONS") or "wrapt" in sys.modules:
        return None
    # The import system's own path finder and loaders (always loaded: no importlib import).
    external = sys.modules["_frozen_importlib_external"]
    bootstrap = sys.modules["_frozen_importlib"]
    package = external.PathFinder.find_spec("wrapt")
    folders = getattr(package, "submodule_search_locations", None)
    if not folders:
        return None
    spec = external.PathFinder.find_spec("wrapt._wrappers", list(folders))
    if spec is None or not isinstance(spec.loader, external.ExtensionFileLoader):
        return None
    module = bootstrap.module_from_spec(spec)
    spec.loader.exec_module(module)
    return sys.modules.setdefault("wrapt._wrappers", module)


def _function_wrapper() -> tuple[type, str]:
    """(wrapt's FunctionWrapper class, wrapt's folder)."""
    try:
        extension = _wrapt_extension()
    except Exception:  # an unusual install: the ordinary import below decides
        extension = None
    if extension is not None:
        return extension.FunctionWrapper, os.path.dirname(os.path.abspath(extension.__file__))
    import wrapt

    return wrapt.FunctionWrapper, os.path.dirname(os.path.abspath(wrapt.__file__))


FunctionWrapper, WRAPT_DIR = _function_wrapper()


def compiled_hook_module() -> Any:
    """`appshield._c_audit_hook` (the compiled audit hook and the C fronts of some wrappers),
    or None where it was not built (no C compiler at install): the one place that asks."""
    try:
        from appshield import _c_audit_hook
    except ImportError:
        return None
    return _c_audit_hook


# module name -> (patcher, point) for each patch point waiting for that module to be imported
# (see `loaded`). Read without a lock on every first import: a dict lookup is atomic, and
# entries change only under a Patcher's lock.
_waiting: dict[str, list[tuple[Patcher, PatchPoint]]] = {}


def loaded(name: object, module: Any) -> None:
    """A module has just been imported (its body ran): apply the patch points waiting for it,
    when `module` is the one registered under `name` (a private copy run by hand is not, and
    the points keep waiting for the real import). The import hooks call this once a module
    has run, only when `_waiting` is not empty."""
    if type(name) is not str or sys.modules.get(name) is not module:
        return
    waiting = _waiting.pop(name, None)
    for patcher, point in waiting or ():
        patcher.apply_later(point, module)


WrapperFn: TypeAlias = "Callable[[Callable[..., Any], Any, tuple[Any, ...], dict[str, Any]], Any]"


class PatchPoint(NamedTuple):
    module: str
    attribute: str  # "system", or "socket.connect" for a class attribute
    wrapper: WrapperFn
    category: str
    # Missing on this platform or Python version: skip it silently.
    optional: bool = False
    # Patch only if/when the module is imported; never import it just to patch it.
    lazy: bool = True


AuditHandler: TypeAlias = "Callable[[tuple[Any, ...]], Any]"
FastPath: TypeAlias = "Callable[[tuple[Any, ...]], bool]"


def _nothing(*args: Any) -> None:
    return None


class HookFamily(NamedTuple):
    """Everything one category's hooks need, in one row: the runtime walks these rows to
    install (patch points, then `on_install`), to uninstall (`on_uninstall`, then the patches
    undone) and after a fork (`after_fork`, in the child). A hook module has no other way in."""

    category: str
    patches: tuple[PatchPoint, ...]
    # PEP 578 audit event -> a handler turning its arguments into (operation, api) or None
    audit_handlers: Mapping[str, AuditHandler]
    # audit event -> a check before the gate: True for a repeat the policy allowed
    fast_paths: Mapping[str, FastPath] = MappingProxyType({})
    on_install: Callable[[Any], None] = _nothing  # given the shield, once patched
    on_uninstall: Callable[[], None] = _nothing
    # Fresh locks and forgotten per-process state in a forked child (see os.register_at_fork)
    after_fork: tuple[Callable[[], None], ...] = ()


class _Applied(NamedTuple):
    point: PatchPoint
    parent: Any
    name: str
    original: Any
    proxy: Any


class Patcher:
    """Applies a table of patch points and undoes exactly what it applied."""

    def __init__(self, points: Iterable[PatchPoint]) -> None:
        self.points = tuple(points)
        self._applied: list[_Applied] = []
        self._lock = _thread.RLock()
        self._active = False

    def install(self) -> None:
        with self._lock:
            self._active = True
            for point in self.points:
                module = sys.modules.get(point.module)
                if module is not None:
                    self._apply(point, module)
                elif point.lazy:
                    _waiting.setdefault(point.module, []).append((self, point))
                else:
                    self._apply(point, __import__(point.module, fromlist=["_"]))
            # A module imported during this loop (by a point that is not lazy, before the
            # import hooks were in place) would otherwise wait for an import that is over.
            for name in [name for name in _waiting if name in sys.modules]:
                loaded(name, sys.modules[name])

    def apply_later(self, point: PatchPoint, module: Any) -> None:
        """A point that waited for its module (see `loaded`); nothing once uninstalled."""
        with self._lock:
            if self._active:
                self._apply(point, module)

    def _apply(self, point: PatchPoint, module: Any) -> None:
        try:
            parent, name, original = _resolve(module, point.attribute)
        except AttributeError:
            if point.optional:
                return
            raise
        if getattr(original, "_self_appshield_point", None) is not None:
            return  # already ours (the module was patched through another alias)
        proxy = FunctionWrapper(original, point.wrapper)
        proxy._self_appshield_point = point
        setattr(parent, name, proxy)
        self._applied.append(_Applied(point, parent, name, original, proxy))

    def uninstall(self) -> list[PatchPoint]:
        """Restore originals where our proxy is still in place. Returns the points that could
        not be restored because something else replaced our proxy since."""
        not_restored: list[PatchPoint] = []
        with self._lock:
            self._active = False
            for name, waiting in list(_waiting.items()):
                others = [entry for entry in waiting if entry[0] is not self]
                if others:
                    _waiting[name] = others
                else:
                    _waiting.pop(name, None)
            for applied in reversed(self._applied):
                current = _raw_attribute(applied.parent, applied.name)
                if current is applied.proxy:
                    setattr(applied.parent, applied.name, applied.original)
                else:
                    not_restored.append(applied.point)
            self._applied.clear()
        return not_restored

    def applied(self) -> list[tuple[PatchPoint, Any, Any]]:
        with self._lock:
            return [(a.point, a.original, a.proxy) for a in self._applied]


def _resolve(module: Any, dotted: str) -> tuple[Any, str, Any]:
    """(parent, last name, its current value) for `module.a.b`. On a class the value is read
    from the `__dict__` of the class in its MRO that defines it, so a method is the function
    (or staticmethod, classmethod) itself, not a bound method; missing: AttributeError."""
    parent: Any = None
    value = module
    name = ""
    for name in dotted.split("."):
        parent = value
        value = _class_attribute(parent, name) if isinstance(parent, type) else _MISSING
        if value is _MISSING:
            value = getattr(parent, name)
    return parent, name, value


_MISSING = object()


def _class_attribute(klass: type, name: str) -> Any:
    for base in klass.__mro__:
        found = vars(base)
        if name in found:
            return found[name]
    return _MISSING


def _raw_attribute(parent: Any, name: str) -> Any:
    # Read the attribute without triggering descriptors, so a wrapped method on a class is
    # compared as the proxy we stored, not as a bound method.
    if isinstance(parent, type):
        for klass in parent.__mro__:
            if name in vars(klass):
                return vars(klass)[name]
        return None
    return getattr(parent, name, None)
