"""One table of patch points; install and uninstall both walk it.

A `PatchPoint` names a module, a (possibly dotted) attribute and a wrapt-style wrapper
`(wrapped, instance, args, kwargs)`. Installing replaces the attribute with a
`wrapt.FunctionWrapper`; uninstalling restores the identical original object, but only where
our wrapper is still in place, so a patch someone else applied on top of ours is never
clobbered. Modules that are not imported yet are patched when they are imported (wrapt's
post-import hooks), so installing costs no extra imports.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import wrapt

__all__ = ["PatchPoint", "Patcher", "WrapperFn"]

WrapperFn = Callable[[Callable[..., Any], Any, tuple[Any, ...], dict[str, Any]], Any]


class PatchPoint(NamedTuple):
    module: str
    attribute: str  # "system", or "socket.connect" for a class attribute
    wrapper: WrapperFn
    category: str
    # Missing on this platform or Python version: skip it silently.
    optional: bool = False
    # Patch only if/when the module is imported; never import it just to patch it.
    lazy: bool = True


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
        self._lock = threading.RLock()
        self._active = False

    def install(self) -> None:
        with self._lock:
            self._active = True
            for point in self.points:
                module = sys.modules.get(point.module)
                if module is not None:
                    self._apply(point, module)
                elif point.lazy:
                    wrapt.register_post_import_hook(self._on_import(point), point.module)
                else:
                    self._apply(point, __import__(point.module, fromlist=["_"]))

    def _on_import(self, point: PatchPoint) -> Callable[[Any], None]:
        def apply_later(module: Any) -> None:
            with self._lock:
                if self._active:
                    self._apply(point, module)

        return apply_later

    def _apply(self, point: PatchPoint, module: Any) -> None:
        try:
            parent, name, original = wrapt.resolve_path(module, point.attribute)
        except AttributeError:
            if point.optional:
                return
            raise
        if getattr(original, "_self_appshield_point", None) is not None:
            return  # already ours (the module was patched through another alias)
        proxy = wrapt.FunctionWrapper(original, point.wrapper)
        proxy._self_appshield_point = point
        setattr(parent, name, proxy)
        self._applied.append(_Applied(point, parent, name, original, proxy))

    def uninstall(self) -> list[PatchPoint]:
        """Restore originals where our proxy is still in place. Returns the points that could
        not be restored because something else replaced our proxy since."""
        not_restored: list[PatchPoint] = []
        with self._lock:
            self._active = False
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


def _raw_attribute(parent: Any, name: str) -> Any:
    # Read the attribute without triggering descriptors, so a wrapped method on a class is
    # compared as the proxy we stored, not as a bound method.
    if isinstance(parent, type):
        for klass in parent.__mro__:
            if name in vars(klass):
                return vars(klass)[name]
        return None
    return getattr(parent, name, None)
