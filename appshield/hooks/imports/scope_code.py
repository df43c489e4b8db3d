"""Which module a running frame belongs to, for `scope`: by its code object, not its globals.

A frame's `__name__` is whatever dictionary the code runs in (`exec(src, {"__name__":
"subprocess"})`), and a code object's `co_filename` is whatever `compile()` was told. Neither
proves anything. What does: the code object itself. A module's code objects are recorded
when the import system compiles (or unmarshals) that module's file, and, for the modules
already loaded when the shield starts, found through the functions and classes of their
namespace. `module_of(code)` is then one dict lookup plus an identity check.

Recorded only:
- for module names that some `scope` (or `unless.scope`) glob of the policy matches
  (`configure`); with no scoped rule nothing is recorded and nothing is looked up;
- when the module's file is that module's own file: its name under the import folders of
  start-up (`_imp_names.home_name`) is the module's name. A `subprocess.py` planted in
  another folder and put first on `sys.path` is not `subprocess`.

Not recorded, so never counted as any module: code compiled from a string (`exec`, `eval`,
`compile`, whatever file name it claims), code objects made with `CodeType`/`replace`, a
function whose `__code__` was swapped after the shield started, functions generated at run
time by the module itself through `exec` (dataclass and namedtuple methods), frozen modules.
"""

from __future__ import annotations

import _thread
import os
import sys

from appshield.hooks.imports.names import home_name, is_lazy

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = [
    "attributing",
    "configure",
    "configure_origins",
    "module_of",
    "origin_of",
    "record_code",
    "record_origin",
    "recording",
    "wanted_tops",
]

_CodeType = type(home_name.__code__)
_FunctionType = type(home_name)
_identity = object.__hash__  # a code object's own hash is by value: two equal codes collide

# identity of a code object -> (that code object, kept alive so its address is not reused;
# the module it belongs to)
_owners: dict[int, tuple[Any, str]] = {}
_lock = _thread.allocate_lock()
_wanted: Callable[[str], bool] | None = None
# Read by the import hooks before they call `record_code`: whether anything is recorded, and
# the top-level names a recorded module can have (None: any; `wanted` decides).
recording = False
wanted_tops: frozenset[str] | None = None

# For per-distribution grants (`packages`, docs/packages.md): the file every module's code
# was compiled from, whatever the module's name. identity -> (code, kept alive; its file).
_origins: dict[int, tuple[Any, str]] = {}
# Read by the import hooks: whether every compiled module's code is recorded with its file.
attributing = False


def configure(wanted: Callable[[str], bool] | None, tops: frozenset[str] | None = None) -> None:
    """Start recording the modules whose names `wanted` accepts (None: stop, forget all),
    beginning with those already loaded. `tops`, when given, holds every top-level name
    `wanted` can accept (a screen for the hooks). Call after `_imp_names.set_roots`."""
    global _wanted, recording, wanted_tops
    with _lock:
        _owners.clear()
        _wanted = wanted
        wanted_tops = tops if wanted is not None else None
        recording = wanted is not None
    if wanted is None:
        return
    for name, module in list(sys.modules.items()):
        if type(name) is not str or module is None:
            continue
        # `tops` holds every top-level name `wanted` accepts: most of the ~100 modules
        # loaded at start-up are turned away here, without a call each.
        if tops is not None and name.partition(".")[0] not in tops:
            continue
        if wanted(name):
            _record_loaded(name, module)


def configure_origins(on: bool) -> None:
    """Start (or stop, forgetting all) recording which file each module's code came from,
    beginning with the modules already loaded (read from their namespaces)."""
    global attributing
    with _lock:
        _origins.clear()
        attributing = on
    if not on:
        return
    for name, module in list(sys.modules.items()):
        if type(name) is not str or module is None:
            continue
        spec = module.__dict__.get("__spec__") if hasattr(module, "__dict__") else None
        origin = getattr(spec, "origin", None)
        if type(origin) is not str or not getattr(spec, "has_location", False):
            continue
        codes: list[Any] = []
        _collect(list(vars(module).values()), origin, name, codes, set(), 0)
        path = os.path.abspath(origin)
        for code in codes:
            _add_tree(code, path, _origins)
    frame: Any = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "<module>":
            _record_running_body(frame)
        frame = frame.f_back


def _record_running_body(frame: Any) -> None:
    """A module whose body is still running as the shield starts: on 3.10, where `site` is
    not frozen, `site.py` runs the bootstrap's sitecustomize from its body. Its namespace
    holds no code object for the body itself, so the frame gives it. The same trust as for
    the loaded modules' functions: only code that ran before the shield is on this stack.
    Without it, the body is code with no recorded file, and every operation with it below
    (the modules imported before install, reported at install) was judged unattributed."""
    namespace: dict[str, Any] = frame.f_globals
    name = namespace.get("__name__")
    module = sys.modules.get(name) if type(name) is str else None
    if module is None or getattr(module, "__dict__", None) is not namespace:
        return
    spec = namespace.get("__spec__")
    origin = getattr(spec, "origin", None)
    if type(origin) is not str or not getattr(spec, "has_location", False):
        return
    if frame.f_code.co_filename != origin:
        return
    _add_tree(frame.f_code, os.path.abspath(origin), _origins)


def origin_of(code: Any) -> str | None:
    """The file the import system compiled `code` from, if recorded."""
    entry = _origins.get(_identity(code))
    if entry is not None and entry[0] is code:
        return entry[1]
    return None


def record_origin(path: object, code: object) -> None:
    """A loader compiled `code` from the file `path`: every code object in it is that file's."""
    if not attributing or type(code) is not _CodeType or type(path) is not str:
        return
    _add_tree(code, os.path.abspath(path), _origins)


def module_of(code: Any) -> str | None:
    """The module whose file `code` was compiled from, if recorded."""
    entry = _owners.get(_identity(code))
    if entry is not None and entry[0] is code:
        return entry[1]
    return None


def record_code(name: object, path: object, code: object) -> None:
    """A loader compiled `code` for module `name` from `path` (its `get_code`)."""
    wanted = _wanted
    if wanted is None or type(name) is not str or type(code) is not _CodeType:
        return
    if type(path) is not str or not wanted(name):
        return
    if home_name(os.path.abspath(path)) != name:
        return
    _add_tree(code, name)


def _add_tree(code: Any, name: str, into: dict[int, tuple[Any, str]] | None = None) -> None:
    """`code` and every code object nested in its constants (functions, classes, lambdas,
    comprehensions): all of them run as that module's code."""
    found: list[Any] = []
    pending = [code]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        key = _identity(current)
        if key in seen:
            continue
        seen.add(key)
        found.append(current)
        pending.extend(c for c in current.co_consts if type(c) is _CodeType)
    table = _owners if into is None else into
    with _lock:
        if len(table) > 1_000_000:  # a bound against endless reloads
            table.clear()
        for current in found:
            table[_identity(current)] = (current, name)


def _record_loaded(name: str, module: Any) -> None:
    """A module loaded before the shield started: its functions and classes, read from its
    namespace now, while only code that ran before the shield has had a chance to change
    them. Only code objects compiled from the module's own file count."""
    if is_lazy(module):
        return  # imported lazily and not run yet: no code of its own (recorded on first use)
    spec = module.__dict__.get("__spec__") if hasattr(module, "__dict__") else None
    origin = getattr(spec, "origin", None)
    if type(origin) is not str or not getattr(spec, "has_location", False):
        return
    if home_name(os.path.abspath(origin)) != name:
        return
    codes: list[Any] = []
    _collect(list(vars(module).values()), origin, name, codes, set(), 0)
    for code in codes:
        _add_tree(code, name)


def _collect(
    values: list[Any], origin: str, name: str, out: list[Any], seen: set[int], depth: int
) -> None:
    if depth > 8:
        return
    for value in values:
        kind = type(value)
        if kind in (staticmethod, classmethod):
            value = value.__func__
            kind = type(value)
        elif kind is property:
            _collect([value.fget, value.fset, value.fdel], origin, name, out, seen, depth + 1)
            continue
        elif getattr(kind, "__module__", None) == "wrapt.wrappers" or kind.__name__ in (
            "FunctionWrapper",
            "BoundFunctionWrapper",
        ):
            # appshield's own patches (and other wrapt proxies) stand where the function was
            value = getattr(value, "__wrapped__", None)
            kind = type(value)
        if kind is _FunctionType:
            key = _identity(value)
            if key in seen:
                continue
            seen.add(key)
            code = value.__code__
            if code.co_filename == origin:
                out.append(code)
            inner = value.__dict__.get("__wrapped__")  # functools.wraps: the decorated one
            if inner is not None:
                _collect([inner], origin, name, out, seen, depth + 1)
        elif issubclass(kind, type) and value.__dict__.get("__module__") == name:
            key = _identity(value)
            if key in seen:
                continue
            seen.add(key)
            _collect(list(value.__dict__.values()), origin, name, out, seen, depth + 1)


def after_fork() -> None:
    """In a forked child (hooks.imports' FAMILY): another thread may have held the lock."""
    global _lock
    _lock = _thread.allocate_lock()
