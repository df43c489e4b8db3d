"""The names a module's code really has, besides the dotted name it is imported under.

A module's dotted name is the caller's choice (`spec_from_file_location("zz.ctypes", ...)`),
but two things about it are not:

- its file. `home_name` is the name that file has in the folders the import system searched
  when the shield started (`sys.path` then, with symlinks resolved too): ctypes' own
  `__init__.py` is `ctypes` whatever it is run as.
- for an extension module, the last component of the dotted name: CPython calls
  `PyInit_<last>` (`PyInitU_<punycode>` for a non-ASCII name, the same for single- and
  multi-phase init), so `_ctypes`' file loaded as `zz._ctypes` runs `_ctypes`' own code.

`names_of` gives both to the import hooks (`ImportOp.home` and `ImportOp.init`), only when the
dotted name does not agree with the file; the usual import (`a/b/c.py` for `a.b.c`) is
recognised by its path's tail, with no folder scan.

Modules that `importlib.util.LazyLoader` has not run yet (`is_lazy`, `namespace`, at the end)
are here too, rather than in a module of their own: each module a start loads costs it about
0.3 M instructions of finding and loading alone (docs/performance.md, "Start-up, seventh
round").
"""

from __future__ import annotations

import os
import sys
from types import ModuleType

from appshield.normalize import realpath as _realpath

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["home_name", "is_lazy", "names_of", "namespace", "set_roots"]

# The folders of `sys.path` at install (absolute and resolved), the deepest first: a file
# is named after the deepest of them that holds it (`lib-dynload` before the stdlib folder).
_roots: tuple[str, ...] = ()

_SOURCE = (".py", ".pyc", ".pyw")


def _extension_suffixes() -> tuple[str, ...]:
    # From the frozen import system, already loaded: no importlib.machinery import.
    external = sys.modules.get("_frozen_importlib_external")
    found = getattr(external, "EXTENSION_SUFFIXES", None) or [".so"]
    return tuple(sorted((s for s in found if isinstance(s, str)), key=len, reverse=True))


_EXTENSIONS = _extension_suffixes()


def set_roots(paths: list[object] | None) -> None:
    """Take the import folders (a copy of `sys.path`, at install). None: forget them."""
    global _roots
    if paths is None:
        _roots = ()
        return
    found: set[str] = set()
    plain: set[str] = set()
    for entry in paths:
        if type(entry) is not str:
            continue
        absolute = os.path.abspath(entry or os.curdir)
        found.add(absolute.rstrip("/") or "/")
        real = _realpath(absolute, plain)
        found.add(real.rstrip("/") or "/")
    _roots = tuple(sorted(found, key=len, reverse=True))


def home_name(path: str) -> str | None:
    """The dotted name the module file at `path` (absolute) has under the deepest import
    folder that holds it, or None (not under one, or not a module file name)."""
    suffixes = _SOURCE if path.endswith(_SOURCE) else _EXTENSIONS
    for root in _roots:
        if not (path.startswith(root) and path[len(root) : len(root) + 1] == "/"):
            continue
        rel = path[len(root) + 1 :]
        for suffix in suffixes:
            if rel.endswith(suffix):
                rel = rel[: -len(suffix)]
                break
        else:
            return None
        parts = rel.split("/")
        if parts[-1] == "__init__":
            parts.pop()
        if parts and all(part.isidentifier() for part in parts):
            return ".".join(parts)
    return None


def names_of(name: str, absolute: str) -> tuple[str | None, str | None]:
    """(home, init) for an import of `name` from the file `absolute`: (None, None) when the
    name agrees with the file, which is the usual case and costs a few string operations."""
    if absolute.endswith(_SOURCE):
        # `.../a/b/c.py` or `.../a/b/c/__init__.py` for `a.b.c`: nothing to add. A source
        # file has no identity beyond its text (a copy runs under any name): its home is
        # looked for only when the name and the path disagree.
        stem = absolute[: absolute.rindex(".")]
        tail = "/" + name.replace(".", "/")
        if stem.endswith(tail) or (stem.endswith("/__init__") and stem[:-9].endswith(tail)):
            return None, None
        home = home_name(absolute)
        return (home if home != name else None), None
    if not absolute.endswith(_EXTENSIONS):
        return None, None
    # The file itself, symlinks resolved: a link to `_ctypes`' file is `_ctypes` wherever the
    # link lives, even in an import folder under the name it claims. (One `realpath` per
    # extension loaded: small next to the `dlopen` that follows.)
    real = _realpath(absolute)
    home = home_name(real)
    if home is None and real != absolute:
        home = home_name(absolute)  # a link to a file outside the import folders
    if home == name:
        return None, None
    init = name.rpartition(".")[2] if "." in name else None
    return home, (init if init != home else None)


# -- modules LazyLoader has not run ------------------------------------------------------------
# `LazyLoader.exec_module` leaves an empty module whose class is `importlib.util._LazyModule`.
# That class's `__getattribute__` runs the real loader on the first attribute read of any kind:
# `__name__`, `__spec__` and `__dict__` included, and so `getattr`, `hasattr`, `vars()` and
# `isinstance()` (which falls back to `__class__` when the type does not match). The import
# hooks must never do that: libraries built on LazyLoader (scientific Python's `lazy_loader`)
# would pay every import at start-up, and CPython's own `test_importlib.test_lazy` fails.
#
# What stays safe to do with such a module is what the interpreter does without running Python
# code: `type(module)`, and reading its namespace through `ModuleType`'s own `__dict__`
# descriptor. The import itself is judged before anything runs, from its spec; the module's
# body is judged again (and patched) when its real loader runs on first use.

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
