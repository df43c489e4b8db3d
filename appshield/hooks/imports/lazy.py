"""Modules that `importlib.util.LazyLoader` has not run yet.

`LazyLoader.exec_module` leaves an empty module whose class is `importlib.util._LazyModule`.
That class's `__getattribute__` runs the real loader on the first attribute read of any kind:
`__name__`, `__spec__` and `__dict__` included, and so `getattr`, `hasattr`, `vars()` and
`isinstance()` (which falls back to `__class__` when the type does not match). The import hooks
must never do that: libraries built on LazyLoader (scientific Python's `lazy_loader`) would pay
every import at start-up, and CPython's own `test_importlib.test_lazy` fails.

What stays safe to do with such a module is what the interpreter does without running Python
code: `type(module)`, and reading its namespace through `ModuleType`'s own `__dict__`
descriptor. The import itself is judged before anything runs, from its spec; the module's body
is judged again (and patched) when its real loader runs on first use.
"""

from __future__ import annotations

import sys
from types import ModuleType

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["is_lazy", "namespace"]

# `ModuleType`'s own `__dict__` entry is a C member descriptor: it hands back the module's own
# dict without looking anything up on the module's (possibly lazy) class.
_namespace_of = vars(ModuleType)["__dict__"].__get__


def is_lazy(module: object) -> bool:
    """True when `module` is a module LazyLoader has not run yet (its class is, or derives
    from, `_LazyModule`). Touches nothing on the module: only its type."""
    kind = type(module)
    if kind is ModuleType:
        return False  # the usual case
    # No LazyLoader module can exist before importlib.util is imported: nothing to import here.
    util = sys.modules.get("importlib.util")
    if type(util) is not ModuleType:
        return False
    lazy = _namespace_of(util).get("_LazyModule")
    return isinstance(lazy, type) and issubclass(kind, lazy)


def namespace(module: object) -> dict[str, Any] | None:
    """The namespace dict of a module object, read without running any of its class's
    attribute hooks; None for an object that is not a module."""
    if not issubclass(type(module), ModuleType):
        return None
    found = _namespace_of(module)
    return found if type(found) is dict else None
